"""GPU: epoch time of genopt's trainer and of the seed's loop on the GPU, and the FID cost there.

Runs only where ``torch.cuda.is_available()``. Both loops are those of ``seed_loop.py``
(the seed's DataLoader + ToTensor loop, genopt's ``train`` in fp32 and bf16) over the whole
50,000-image train split at batch 64, alternated in rounds; the FID evaluation is the one of
``fid_eval.py``. Without a GPU it writes nothing, so the section of the last GPU run stays in
docs/benchmarks.md with its machine and date.
"""

from __future__ import annotations

import statistics

import _common
import torch
from seed_loop import SeedMNIST, genopt_config, genopt_epoch, seed_epoch

from genopt.data import load_dataset
from genopt.metrics import EVAL_NOISE_SEED, FidEvaluator
from genopt.train import build_models

FID_SAMPLES = 10_000


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    if not torch.cuda.is_available():
        kept = f"; {args.md} keeps the last GPU run's figures" if args.md is not None else ""
        print(f"no GPU on this machine: nothing measured{kept}")
        return
    cuda = torch.device("cuda")
    rounds = 1 if args.quick else 3
    dataset = load_dataset("mnist")
    n = len(dataset.train)
    seed_data = SeedMNIST(dataset.train.images, dataset.train.labels)
    evaluator = FidEvaluator(dataset, device=cuda)
    generator, _ = build_models(genopt_config(n, 64), dataset)
    generator.to(cuda).eval()

    def fid() -> float:
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # CPU noise, as the objective draws
        seconds, _ = _common.timed(
            lambda: evaluator.score(lambda y: generator.sample(y, generator=noise), FID_SAMPLES)
        )
        return seconds

    # warm up CUDA contexts, cuBLAS handles and kernels of every path
    seed_epoch(SeedMNIST.first(dataset, 2048), 64, cuda)
    genopt_epoch(dataset, 2048, 64, cuda)
    genopt_epoch(dataset, 2048, 64, cuda, "bf16")
    fid()

    loops = {
        "seed loop (DataLoader + ToTensor)": lambda r: seed_epoch(seed_data, 64, cuda, seed=r),
        "genopt fp32": lambda r: genopt_epoch(dataset, n, 64, cuda),
        "genopt bf16": lambda r: genopt_epoch(dataset, n, 64, cuda, "bf16"),
    }
    times: dict[str, list[float]] = {name: [] for name in [*loops, "fid"]}
    for r in range(rounds):
        for name, fn in loops.items():
            times[name].append(fn(r))
        times["fid"].append(fid())
        print(f"round {r + 1}/{rounds} done", flush=True)

    seed_times = times["seed loop (DataLoader + ToTensor)"]
    device = torch.cuda.get_device_name(0)
    rows = []
    for name in loops:
        speedup = [s / t for s, t in zip(seed_times, times[name], strict=True)]
        rows.append(
            [
                device,
                name,
                _common.median_range(times[name]),
                f"{n / statistics.median(times[name]):,.0f}",
                _common.median_range(speedup) + "x",
            ]
        )
    fid_share = [f / e for f, e in zip(times["fid"], times["genopt fp32"], strict=True)]
    lines = _common.header(f"GPU: the seed's loop and genopt's trainer on {device}")
    lines += [
        f"MNIST, the seed's MLP GAN, one epoch over the {n:,}-image train split at batch 64; "
        f"{rounds} rounds alternating the loops; median (min-max). The seed loop feeds the GPU from a "
        "DataLoader with ToTensor as the seed does; genopt keeps the uint8 images on the GPU.",
        "",
    ]
    lines += _common.table(["device", "loop", "epoch (s)", "img/s", "over the seed loop"], rows)
    lines += [
        "",
        f"One FID evaluation of {FID_SAMPLES:,} generated images on the same GPU: "
        f"{_common.median_range(times['fid'], '{:.3f}')} s, "
        f"{_common.median_range(fid_share, '{:.3f}')} of a genopt fp32 epoch.",
    ]
    speedup = statistics.median(s / t for s, t in zip(seed_times, times["genopt fp32"], strict=True))
    _common.finish(args, lines, f"gpu_epoch_speedup_b64={speedup:.2f}")


if __name__ == "__main__":
    main()
