"""Training throughput: genopt's trainer against a faithful re-implementation of the seed's loop.

Both loops (``seed_loop.py``: the seed's DataLoader + ToTensor, Sigmoid + BCELoss, three
discriminator passes and for-loop Adam; genopt's ``train`` as shipped in ``studies/gan.toml``, in
fp32 and bf16) train the same MLPs on the same images; they run alternately in one process so that
drift of a shared machine falls on both. A lever ladder (``ladder.py``) then adds genopt's changes
one at a time. Whether bf16 costs sample quality is ``precision_quality.py``'s question.

The headline ``train_speedup_b64`` is the shipped default (its ``precision`` resolved for this CPU,
so ``auto`` is whichever of the two columns it picks here) over the seed's loop at batch 64, the
median of the per-round ratios; ``train_roofline_b64`` is the default's achieved share of the
roofline of the precision it ran in: the seed step's FLOPs per image times its images per second,
over the measured ``torch.mm`` peak of that precision. ``step_floor.py`` then splits the step's
time into its matrix products, its fixed cost and the rest.
"""

from __future__ import annotations

import statistics

import _common
import numpy as np
import torch
from ladder import ladder_section
from seed_loop import SHIPPED_SPEC, STEP_FLOP_PER_IMAGE, SeedMNIST, genopt_epoch, seed_epoch, shipped_spec
from step_floor import floor_section

from genopt.data import load_dataset
from genopt.device import resolve_precision


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    quick = args.quick
    rounds = 3 if quick else 4
    n = 2048 if quick else 4096
    batch_sizes = (16, 64, 128)
    device = torch.device("cpu")
    dataset = load_dataset("mnist")
    seed_data = SeedMNIST.first(dataset, n)

    peak32 = _common.matmul_peak(torch.float32)
    peak16 = _common.matmul_peak(torch.bfloat16)
    shipped = shipped_spec().precision
    default = resolve_precision(shipped, device)
    auto = resolve_precision("auto", device)
    print(
        f"{_common.cpu_name()} ({_common.bf16_flags()}): matmul peak fp32 {peak32:.0f} GFLOP/s, "
        f"bf16 {peak16:.0f} GFLOP/s; auto picks {auto}; shipped precision {shipped!r} runs {default}",
        flush=True,
    )

    # warm up allocators and oneDNN/MKL kernels of every path once
    seed_epoch(SeedMNIST.first(dataset, 512), 64, device)
    genopt_epoch(dataset, 512, 64, device)
    genopt_epoch(dataset, 512, 64, device, "bf16")

    speed: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for bs in batch_sizes:
            for name, fn in (
                ("seed", lambda bs=bs, r=r: seed_epoch(seed_data, bs, device, seed=r)),
                ("genopt", lambda bs=bs: genopt_epoch(dataset, n, bs, device)),
                ("genopt-bf16", lambda bs=bs: genopt_epoch(dataset, n, bs, device, "bf16")),
            ):
                speed.setdefault((name, bs), []).append(n / fn())
        print(f"round {r + 1}/{rounds} done", flush=True)

    def ratios(name, bs):
        return [a / b for a, b in zip(speed[(name, bs)], speed[("seed", bs)], strict=True)]

    rows = []
    for bs in batch_sizes:
        g, s, h = (statistics.median(speed[(k, bs)]) for k in ("genopt", "seed", "genopt-bf16"))
        rows.append(
            [
                bs,
                f"{s:,.0f}",
                f"{g:,.0f}",
                _common.median_range(ratios("genopt", bs)) + "x",
                f"{g * STEP_FLOP_PER_IMAGE / 1e9:.0f} ({g * STEP_FLOP_PER_IMAGE / 1e9 / peak32:.0%})",
                f"{h:,.0f}",
                _common.median_range(ratios("genopt-bf16", bs)) + "x",
                f"{h * STEP_FLOP_PER_IMAGE / 1e9:.0f} ({h * STEP_FLOP_PER_IMAGE / 1e9 / peak16:.0%})",
            ]
        )
    lines = _common.header("Training throughput: genopt's trainer against the seed's loop")
    lines += [
        f"MNIST, the seed's MLPs (G 100-256-512-1024-784, D 784-512-256-1), {n} images per epoch, "
        f"{rounds} rounds alternating seed / genopt fp32 / genopt bf16 at each batch size; genopt runs "
        f"as shipped (`{SHIPPED_SPEC.parent.name}/{SHIPPED_SPEC.name}`) at the seed's lr and noise size. "
        "Speed-ups are per-round ratios, median (min-max). GFLOP/s counts the seed step's "
        f"{STEP_FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image for every loop, against the measured "
        f"`torch.mm` 2048x2048 peak: fp32 {peak32:.0f}, bf16 {peak16:.0f} GFLOP/s.",
        "",
        f'This CPU: {_common.cpu_name()}, {_common.bf16_flags()}; `precision = "auto"` picks '
        f'**{auto}** here. The shipped default is `precision = "{shipped}"`, so the headline '
        f"speed-up is the genopt {default} column at batch 64, and the roofline line its share of the "
        f"{default} matmul peak.",
        "",
    ]
    lines += _common.table(
        [
            "batch",
            "seed img/s",
            "genopt fp32 img/s",
            "speed-up fp32",
            "fp32 GFLOP/s (of peak)",
            "genopt bf16 img/s",
            "speed-up bf16",
            "bf16 GFLOP/s (of bf16 peak)",
        ],
        rows,
    )

    lines += ladder_section(dataset, n, rounds, device, quick)
    lines += floor_section(dataset, n, 64, rounds, statistics.median(speed[("seed", 64)]))

    if args.png is not None:
        plot(args.png, batch_sizes, speed)
    key = "genopt" if default == "fp32" else "genopt-bf16"
    peak = peak32 if default == "fp32" else peak16
    b64 = ratios(key, 64)
    roofline = statistics.median(speed[(key, 64)]) * STEP_FLOP_PER_IMAGE / 1e9 / peak
    print(f"bf16 speed-up at batch 64: {_common.median_range(ratios('genopt-bf16', 64))}x")
    print(f"fp32 speed-up at batch 64: {_common.median_range(ratios('genopt', 64))}x")
    _common.finish(
        args,
        lines,
        f"train_speedup_b64={statistics.median(b64):.2f}",
        f"train_roofline_b64={roofline:.2f}",
    )


def plot(path, batch_sizes, speed) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.27
    x = np.arange(len(batch_sizes))
    for i, (key, label) in enumerate(
        (("seed", "seed loop"), ("genopt", "genopt fp32"), ("genopt-bf16", "genopt bf16"))
    ):
        med = [statistics.median(speed[(key, bs)]) for bs in batch_sizes]
        lo = [med[j] - min(speed[(key, bs)]) for j, bs in enumerate(batch_sizes)]
        hi = [max(speed[(key, bs)]) - med[j] for j, bs in enumerate(batch_sizes)]
        ax.bar(x + (i - 1) * width, med, width, yerr=[lo, hi], label=label, capsize=3)
    ax.set_xticks(x, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (median, range)")
    ax.set_title("Training throughput, MNIST MLP GAN, CPU")
    ax.legend()
    _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
