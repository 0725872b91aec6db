"""Training throughput: genopt's trainer against plain loops, the seed's MLP loop and a PyTorch DCGAN loop.

The seed's loop (``seed_loop.py``: DataLoader + ToTensor, Sigmoid + BCELoss, three discriminator
passes, for-loop Adam) and genopt's ``train`` as shipped (``studies/gan-article.toml``, in fp32 and bf16)
train the same MLPs on the same images, alternated in rounds. Speed-ups are per-round ratios,
median (min-max).

The convolutional part runs genopt's ``train`` on the DCGAN cGAN of ``studies/cgan.toml`` (its
channels and conditioning, ``kind = "dcgan"``), in fp32 and in the shipped precision, side by side
with a plain PyTorch DCGAN loop on the same networks (``dcgan_loop.py``), at batch 64, lr 2e-4,
noise 100; and times one evaluation (the spec's ``fid_samples`` through G and the feature network)
against one 50,000-image epoch.

Headlines: ``train_speedup_b64``, the shipped precision (``auto`` resolved for this CPU) over the
seed's loop at batch 64; ``train_roofline_b64``, its GFLOP/s (the seed step's FLOPs per image times
its images per second) over the measured ``torch.mm`` peak of that precision;
``dcgan_speedup_b64``, genopt's DCGAN step in the shipped precision over the plain loop;
``eval_share_of_epoch``, one evaluation's seconds over those of a 50,000-image epoch and the
evaluation after it. A CPU without native bf16 (``avx512_bf16`` or ``amx_bf16``) runs bf16 in
emulation, many times slower: its bf16 loops are skipped, and said so.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import torch

from bench import harness
from bench.dcgan_loop import plain_dcgan_epoch
from bench.seed_loop import (
    SHIPPED_SPEC,
    STEP_FLOP_PER_IMAGE,
    SeedMNIST,
    genopt_epoch,
    seed_epoch,
    shipped_spec,
)
from genopt.data import load_dataset
from genopt.device import resolve_precision
from genopt.metrics import FidEvaluator
from genopt.spec import load_spec
from genopt.study.objective import evaluate_generator
from genopt.train import train

BATCH_SIZES = (16, 64, 128)
CGAN_SPEC = SHIPPED_SPEC.parent / "cgan.toml"
EPOCH_IMAGES = 50_000  # MNIST's train split, less the validation images


def main() -> None:
    args = harness.parser(__doc__).parse_args()
    report = harness.Report("Training throughput: genopt's trainer against plain loops", args)
    rounds, n = (3, 2048) if args.quick else (4, 4096)
    cpu = torch.device("cpu")
    dataset = load_dataset("mnist")
    seed_data = SeedMNIST.first(dataset, n)
    shipped = shipped_spec().precision
    default = resolve_precision(shipped, cpu)
    precisions = ["fp32"]
    if harness.cpu_bf16_flags():
        precisions.append("bf16")
    else:
        report.skip("genopt bf16", "no avx512_bf16 or amx_bf16 flag: bf16 would run in emulation here")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peak = {p: harness.matmul_peak(dtypes[p]) for p in precisions}

    # Warm up allocators and oneDNN kernels of every loop once.
    seed_epoch(SeedMNIST.first(dataset, 512), 64, cpu)
    for p in precisions:
        genopt_epoch(dataset, 512, 64, cpu, p)
    loops = {}
    for bs in BATCH_SIZES:
        loops[f"seed {bs}"] = lambda bs=bs: n / seed_epoch(seed_data, bs, cpu)
        for p in precisions:
            loops[f"genopt {p} {bs}"] = lambda bs=bs, p=p: n / genopt_epoch(dataset, n, bs, cpu, p)
    speed = harness.alternate(loops, rounds)

    def cells(p: str, bs: int) -> list[str]:
        images = statistics.median(speed[f"genopt {p} {bs}"])
        gflops = images * STEP_FLOP_PER_IMAGE / 1e9
        ratio = harness.median_range(harness.ratios(speed[f"genopt {p} {bs}"], speed[f"seed {bs}"]))
        return [f"{images:,.0f}", ratio + "x", f"{gflops:.0f} ({gflops / peak[p]:.0%})"]

    report.add(
        f"MNIST, the seed's MLPs (G 100-256-512-1024-784, D 784-512-256-1), {n} images per epoch, "
        f"{rounds} rounds alternating the loops at each batch size; genopt runs as shipped "
        f"(`{SHIPPED_SPEC.parent.name}/{SHIPPED_SPEC.name}`) at the seed's lr and noise size. Speed-ups "
        "are per-round ratios, median (min-max). GFLOP/s "
        f"counts the seed step's {STEP_FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image for every loop, against "
        "the measured `torch.mm` 2048x2048 peak: "
        + ", ".join(f"{p} {peak[p]:.0f} GFLOP/s" for p in precisions)
        + f'. The shipped `precision = "{shipped}"` runs **{default}** here.',
        "",
    )
    head = ["batch", "seed img/s"]
    for p in precisions:
        head += [f"genopt {p} img/s", f"speed-up {p}", f"{p} GFLOP/s (of peak)"]
    rows = [
        [bs, f"{statistics.median(speed[f'seed {bs}']):,.0f}", *(c for p in precisions for c in cells(p, bs))]
        for bs in BATCH_SIZES
    ]
    report.table(head, rows)
    if args.png is not None:
        plot(args.png, speed, ["seed", *(f"genopt {p}" for p in precisions)])
    if default in precisions:
        b64 = speed[f"genopt {default} 64"]
        report.headline("train_speedup_b64", statistics.median(harness.ratios(b64, speed["seed 64"])))
        gflops = statistics.median(b64) * STEP_FLOP_PER_IMAGE / 1e9
        report.headline("train_roofline_b64", gflops / peak[default])
    else:
        report.skip("the headlines", f"they are of the shipped precision, {default}, which did not run")
    dcgan(report, args, dataset, precisions, default)
    report.finish()


def dcgan(report: harness.Report, args, dataset, precisions: list[str], default: str) -> None:
    """The DCGAN cGAN: genopt's step against the plain loop, and the evaluation's share of an epoch."""
    spec = dataclasses.replace(load_spec(CGAN_SPEC), kind="dcgan", model="cgan")
    rounds, n = (3, 1024) if args.quick else (4, 3072)

    def config(precision: str):
        s = dataclasses.replace(spec, train_limit=n, max_epochs=1, precision=precision)
        return s.run_config({"lr": 2e-4, "batch_size": 64, "noise_dim": 100}, seed=0)

    cpu = torch.device("cpu")
    plain_dcgan_epoch(config("fp32"), dataset, 256)  # warm-up
    loops = {"plain": lambda: n / plain_dcgan_epoch(config("fp32"), dataset, n)}
    warmed = {}  # each precision's warm-up run; its generator is what the evaluation times
    for p in precisions:
        warmed[p] = train(dataclasses.replace(config(p), train_limit=256), dataset, device=cpu)
        loops[f"genopt {p}"] = lambda p=p: n / train(config(p), dataset, device=cpu).epochs[0].seconds
    speed = harness.alternate(loops, rounds)
    evaluator = FidEvaluator(dataset, device=cpu)
    generator = warmed[precisions[0]].generator
    evaluate_generator(evaluator, generator, 500)  # warm-up
    evaluation = min(
        harness.timed(lambda: evaluate_generator(evaluator, generator, spec.fid_samples)) for _ in range(2)
    )
    epoch = EPOCH_IMAGES / statistics.median(speed[f"genopt {default}"]) if default in precisions else None
    report.add(
        f"DCGAN cGAN of `{CGAN_SPEC.parent.name}/{CGAN_SPEC.name}` (G channels "
        f"{list(spec.generator_channels)}, D channels {list(spec.discriminator_channels)}, "
        f"{spec.conditioning} conditioning, EMA {spec.ema_decay}), "
        f"batch 64, {n} images per epoch, {rounds} rounds alternating the loops; the plain loop is "
        "`bench/dcgan_loop.py` (the PyTorch examples' dcgan loop shape, fp32) on the same networks.",
        "",
    )
    report.table(
        ["loop", "img/s", "speed-up over plain"],
        [
            [
                name,
                harness.median_range(v, "{:,.0f}"),
                harness.median_range(harness.ratios(v, speed["plain"])) + "x",
            ]
            for name, v in speed.items()
        ],
    )
    if epoch is None:
        report.skip(
            "dcgan_speedup_b64 and eval_share_of_epoch", f"the shipped precision, {default}, did not run"
        )
        return
    share = evaluation / (epoch + evaluation)
    report.add(
        f"One evaluation ({spec.fid_samples:,} samples through G and the feature network, version "
        f"{evaluator.feature_version}): {evaluation:.1f} s, against {epoch:.0f} s for a "
        f"{EPOCH_IMAGES:,}-image epoch in {default}: {share:.1%} of an epoch with its evaluation.",
        "",
    )
    report.headline(
        "dcgan_speedup_b64", statistics.median(harness.ratios(speed[f"genopt {default}"], speed["plain"]))
    )
    report.headline("eval_share_of_epoch", share)


def plot(path, speed: dict[str, list[float]], loops: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(loops)
    x = np.arange(len(BATCH_SIZES))
    for i, loop in enumerate(loops):
        runs = [speed[f"{loop} {bs}"] for bs in BATCH_SIZES]
        med = np.array([statistics.median(r) for r in runs])
        spread = [med - [min(r) for r in runs], [max(r) for r in runs] - med]
        ax.bar(x + (i - (len(loops) - 1) / 2) * width, med, width, yerr=spread, label=loop, capsize=3)
    ax.set_xticks(x, [str(b) for b in BATCH_SIZES])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (median, range)")
    ax.set_title("Training throughput, MNIST MLP GAN, CPU")
    ax.legend()
    harness.save_figure(fig, path)


if __name__ == "__main__":
    main()
