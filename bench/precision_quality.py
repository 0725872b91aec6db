"""bf16 autocast and FID: the cGAN trained in fp32 and in bf16 from the same seeds, scored alike.

The training speed of bf16 is ``train_throughput.py``'s; this asks whether it costs sample quality.
Each seed trains the seed's MLPs as a cGAN with genopt's ``train`` at a learning rate that draws
digits within a few epochs (FACTS.md), once per precision, and ``FidEvaluator.score`` scores both on
the fixed evaluation noise (``EVAL_NOISE_SEED``) against the validation split.
"""

from __future__ import annotations

import dataclasses
import statistics

import _common
import torch
from seed_loop import genopt_config

from genopt.data import load_dataset
from genopt.metrics import EVAL_NOISE_SEED, FidEvaluator
from genopt.train import train

FID_LR = 1.5e-3
PRECISIONS = ("fp32", "bf16")


def precision_fid(dataset, n: int, epochs: int, seeds: list[int], fid_samples: int, device) -> list[dict]:
    """Validation FID after training at ``FID_LR`` in fp32 and in bf16, same seeds; rows per seed."""
    evaluator = FidEvaluator(dataset, device=device)
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for precision in PRECISIONS:
            config = dataclasses.replace(
                genopt_config(n, 64, precision, epochs=epochs, lr=FID_LR), seed=seed, model="cgan"
            )
            result = train(config, dataset, device=device)
            noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # CPU noise, as the objective draws
            row[precision] = evaluator.score(
                lambda y, g=result.generator, noise=noise: g.sample(y, generator=noise), fid_samples
            )
            row[precision + "_ips"] = result.images_per_second
        rows.append(row)
        print(f"seed {seed}: FID fp32 {row['fp32']:.2f}, bf16 {row['bf16']:.2f}", flush=True)
    return rows


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    seeds = [0, 1] if args.quick else [0, 1, 2]
    n, epochs, fid_samples = (4096, 2, 2000) if args.quick else (30_000, 3, 10_000)
    dataset = load_dataset("mnist")
    rows = precision_fid(dataset, n, epochs, seeds, fid_samples, torch.device("cpu"))
    lines = _common.header("bf16 autocast and FID")
    lines += [
        f"cGAN (the seed's MLPs) trained at lr {FID_LR:g}, batch 64, {epochs} epochs of {n} "
        f"images, same seed in both precisions; validation FID of {fid_samples} samples (genopt's "
        "feature-net FID). Read a difference against the seed-to-seed spread at this budget.",
        "",
    ]
    lines += _common.table(
        ["seed", "FID fp32", "FID bf16", "bf16 - fp32", "img/s fp32", "img/s bf16"],
        [
            [
                r["seed"],
                f"{r['fp32']:.2f}",
                f"{r['bf16']:.2f}",
                f"{r['bf16'] - r['fp32']:+.2f}",
                f"{r['fp32_ips']:,.0f}",
                f"{r['bf16_ips']:,.0f}",
            ]
            for r in rows
        ],
    )
    delta = statistics.median(r["bf16"] - r["fp32"] for r in rows)
    _common.finish(args, lines, f"bf16_fid_delta={delta:+.2f}")


if __name__ == "__main__":
    main()
