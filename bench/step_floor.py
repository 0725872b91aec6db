"""Where genopt's step time goes on a CPU: its matrix products alone, its fixed cost, the rest.

Three figures per precision at one batch size, each the median of alternated rounds:

- the whole step: genopt's ``train`` on the seed's MLPs, as shipped (``seed_loop.genopt_epoch``);
- its GEMMs alone: the matrix products of genopt's step for those MLPs (G forward and backward; D
  forward and backward over real and fake with weight gradients; D forward and input gradients in
  G's step), timed back to back with nothing else, so a floor no loop over these layers can beat;
- its fixed cost: the same ``train`` with every hidden layer 8 wide, whose products are negligible:
  what a step costs whatever the layer sizes (Python, autograd, optimiser and EMA calls, kernel
  launches).

What is left (whole - GEMMs - fixed) grows with the layer sizes but is not matrix products: casts of
weights and gradients to and from bf16, the fused Adam update and the weight average over 2.0M
parameters, the activations' elementwise kernels.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import _common
import torch
from seed_loop import genopt_config

from genopt.train import train

G_WIDTHS = (100, 256, 512, 1024, 784)  # noise, the seed's G hidden widths, the image
D_WIDTHS = (784, 512, 256, 1)
TINY = 8


def step_gemms(batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product in genopt's step on the seed's MLPs (biases left out)."""
    gemms = []
    for i, (k, n) in enumerate(zip(G_WIDTHS, G_WIDTHS[1:], strict=False)):
        gemms += [(batch, k, n), (k, batch, n)]  # forward, weight gradient
        if i:
            gemms.append((batch, n, k))  # input gradient (the noise needs none)
    for rows, weights in ((2 * batch, True), (batch, False)):  # D's step, then G's through frozen D
        for i, (k, n) in enumerate(zip(D_WIDTHS, D_WIDTHS[1:], strict=False)):
            gemms.append((rows, k, n))
            if weights:
                gemms.append((k, rows, n))
            if i or not weights:  # D's step needs no gradient for the images
                gemms.append((rows, n, k))
    return gemms


def gemm_seconds(dtype: torch.dtype, batch: int, repeats: int = 50) -> float:
    """Seconds per step of the step's GEMMs alone, back to back."""
    pairs = [
        (torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for m, k, n in step_gemms(batch)
    ]
    for _ in range(5):
        for a, b in pairs:
            a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        for a, b in pairs:
            a @ b
    return (time.perf_counter() - start) / repeats


def step_seconds(dataset, n: int, batch: int, precision: str, tiny: bool = False) -> float:
    """Seconds per step of one epoch of genopt's ``train`` (8-wide hidden layers with ``tiny``)."""
    config = genopt_config(n, batch, precision)
    if tiny:
        config = dataclasses.replace(config, generator_widths=(TINY,) * 3, discriminator_widths=(TINY,) * 2)
    result = train(config, dataset, device=torch.device("cpu"))
    return result.epochs[0].seconds / -(-n // batch)


def floor_section(dataset, n: int, batch: int, rounds: int, seed_images_per_second: float) -> list[str]:
    """The section's lines: per precision, the whole step split into GEMMs, fixed cost and the rest."""
    parts = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        step_seconds(dataset, 512, batch, precision)  # warm-up
        step_seconds(dataset, 512, batch, precision, tiny=True)
        for _ in range(rounds):
            for name, fn in (
                ("whole", lambda p=precision: step_seconds(dataset, n, batch, p)),
                ("gemms", lambda d=dtype: gemm_seconds(d, batch)),
                ("fixed", lambda p=precision: step_seconds(dataset, n, batch, p, tiny=True)),
            ):
                parts.setdefault((precision, name), []).append(fn())
    rows = []
    for precision in ("fp32", "bf16"):
        whole, gemms, fixed = (statistics.median(parts[(precision, k)]) for k in ("whole", "gemms", "fixed"))
        rest = whole - gemms - fixed
        rows.append(
            [
                precision,
                f"{whole * 1e3:.2f}",
                f"{gemms * 1e3:.2f} ({gemms / whole:.0%})",
                f"{fixed * 1e3:.2f} ({fixed / whole:.0%})",
                f"{rest * 1e3:.2f} ({rest / whole:.0%})",
                f"{batch / whole / seed_images_per_second:.2f}x",
                f"{batch / (gemms + fixed) / seed_images_per_second:.2f}x",
                f"{batch / gemms / seed_images_per_second:.2f}x",
            ]
        )
    lines = [
        "",
        f"### Where the step's time goes (batch {batch})",
        "",
        f"Milliseconds per step, median of {rounds} alternated rounds (`bench/step_floor.py`): the "
        "whole shipped step; its matrix products alone, back to back; its fixed cost (the same "
        f"`train` with {TINY}-wide hidden layers); and the rest (casts, fused Adam and the weight "
        "average over 2.0M parameters, elementwise kernels). The speed-ups over the seed's loop "
        f"({seed_images_per_second:,.0f} img/s here) are the step's, the step's with the rest gone, and "
        "the GEMMs' alone: no loop over these layers can beat the last.",
        "",
    ]
    return lines + _common.table(
        [
            "precision",
            "whole ms",
            "GEMMs ms",
            "fixed ms",
            "rest ms",
            "over seed",
            "over seed without the rest",
            "over seed, GEMMs alone",
        ],
        rows,
    )
