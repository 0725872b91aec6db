"""Mixture weights by greedy forward selection with replacement (Caruana et al. 2004), on FID.

A mixture's Gaussian feature statistics follow from its members' exactly, so every candidate
mixture is scored without generating or featurizing a single new image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Statistics = tuple[torch.Tensor, torch.Tensor]


def mixture_statistics(statistics: Sequence[Statistics], weights: Sequence[float]) -> Statistics:
    """Mean and covariance of the mixture that draws from member i with probability ``weights[i]``.

    mean = sum w_i mu_i; cov = sum w_i (Sigma_i + mu_i mu_i^T) - mean mean^T, computed as
    sum w_i Sigma_i + sum w_i (mu_i - mean)(mu_i - mean)^T, which is the same and keeps a
    one-member mixture bit-identical to its member.

    Args:
        statistics: (mean (D,), covariance (D, D)) per member.
        weights: non-negative, summing to 1 (not renormalised here).
    """
    if len(statistics) != len(weights) or not statistics:
        raise ValueError(f"need one weight per member, got {len(statistics)} members, {len(weights)} weights")
    used = [(w, mu.double(), sigma.double()) for (mu, sigma), w in zip(statistics, weights, strict=True) if w]
    mean = sum(w * mu for w, mu, _ in used)
    cov = sum(w * sigma for w, _, sigma in used)
    for w, mu, _ in used:
        d = mu - mean
        if d.any():
            cov = cov + w * torch.outer(d, d)
    return mean, cov


@dataclass(frozen=True)
class Selection:
    """The outcome of greedy selection.

    Attributes:
        weights: one per candidate, summing to 1 (counts of picks over the number of picks).
        fid: validation FID of the mixture with these weights.
        history: the best FID after each round, in order.
    """

    weights: list[float]
    fid: float
    history: list[float]


def greedy_mixture(
    statistics: Sequence[Statistics], fid: Callable[[torch.Tensor, torch.Tensor], float], *, rounds: int = 25
) -> Selection:
    """Greedy forward selection with replacement: each round adds the member that lowers FID most.

    The first round picks the best single member; the mixture returned is the best seen over all
    rounds, so its FID is never above the best single member's.

    Args:
        statistics: (mean, covariance) of each candidate's generated features.
        fid: maps a (mean, covariance) to its validation FID.
        rounds: members added in all (repeats allowed); the weights are multiples of 1/picks.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    counts = [0] * len(statistics)
    best: tuple[float, list[int]] | None = None
    history = []
    for _ in range(rounds):
        total = sum(counts) + 1
        scores = []
        for i in range(len(statistics)):
            trial = [(c + (j == i)) / total for j, c in enumerate(counts)]
            scores.append(fid(*mixture_statistics(statistics, trial)))
        # NaN (a degenerate mixture) never wins; ties go to the lower index.
        pick = min(range(len(scores)), key=lambda i: (scores[i] != scores[i], scores[i]))
        counts[pick] += 1
        history.append(scores[pick])
        if best is None or scores[pick] < best[0]:
            best = (scores[pick], list(counts))
    value, chosen = best
    return Selection([c / sum(chosen) for c in chosen], value, history)
