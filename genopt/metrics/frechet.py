"""The Fréchet distance between two Gaussians: the math behind FID and intra-FID.

Kept apart from the evaluator so that pure score functions (``genopt.metrics.class_aware``) and the
evaluator share one implementation without importing each other.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``Tr(sqrt(sigma1 @ sigma2))`` is the sum of the square roots of the product's eigenvalues, as in
    torchmetrics, which avoids scipy's ``sqrtm``.

    Args:
        mu1: mean, shape (D,); a tensor or anything ``torch.as_tensor`` takes.
        sigma1: covariance, shape (D, D).
        mu2: mean, shape (D,).
        sigma2: covariance, shape (D, D).

    Returns:
        ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.
    """
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a).double() for a in (mu1, sigma1, mu2, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"sigma {tuple(sigma1.shape)}, {tuple(sigma2.shape)}"
        )
    mean_term = (mu1 - mu2).square().sum()
    sqrt_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float(mean_term + sigma1.trace() + sigma2.trace() - 2 * sqrt_trace)


def finite_or_nan(value: float) -> float:
    """``value`` when finite, else NaN: every score reports divergence one way, as NaN."""
    return value if math.isfinite(value) else float("nan")


def safe_frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """``frechet_distance``, or NaN when an input or the result is not finite.

    Moments of a class with fewer than two samples are NaN; the eigensolver is not even asked
    about them, since some LAPACK builds raise rather than return NaN on such input.
    """
    tensors = [torch.as_tensor(a) for a in (mu1, sigma1, mu2, sigma2)]
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        return float("nan")
    return finite_or_nan(frechet_distance(*tensors))
