"""Mixture weights by greedy forward selection with replacement (Caruana et al. 2004).

A mixture's feature statistics follow from its members' exactly, pooled and per class alike, so
every candidate mixture is scored without generating or featurizing a single new image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from genopt.metrics import SampleStatistics

Statistics = tuple[torch.Tensor, torch.Tensor]
S = TypeVar("S")


def _mix_moments(
    means: Sequence[torch.Tensor], covs: Sequence[torch.Tensor], weights: Sequence[float]
) -> Statistics:
    """Mixed mean (..., D) and covariance (..., D, D), batched over any leading dimensions.

    mean = sum w_i mu_i; cov = sum w_i (Sigma_i + mu_i mu_i^T) - mean mean^T, computed as
    sum w_i Sigma_i + sum w_i (mu_i - mean)(mu_i - mean)^T, which is the same and keeps a
    one-member mixture bit-identical to its member. Zero-weight members are left out altogether.
    """
    if len(means) != len(weights) or len(covs) != len(weights) or not weights:
        raise ValueError(f"need one weight per member, got {len(means)} members, {len(weights)} weights")
    used = [(w, mu.double(), sigma.double()) for mu, sigma, w in zip(means, covs, weights, strict=True) if w]
    if not used:
        raise ValueError("every weight is zero")
    mean = sum(w * mu for w, mu, _ in used)
    cov = sum(w * sigma for w, _, sigma in used)
    for w, mu, _ in used:
        d = mu - mean
        if d.any():
            cov = cov + w * (d.unsqueeze(-1) * d.unsqueeze(-2))
    return mean, cov


def mixture_statistics(statistics: Sequence[Statistics], weights: Sequence[float]) -> Statistics:
    """Mean and covariance of the mixture that draws from member i with probability ``weights[i]``.

    mean = sum w_i mu_i; cov = sum w_i (Sigma_i + mu_i mu_i^T) - mean mean^T (see ``_mix_moments``);
    exact for population (or biased sample) moments, a one-member mixture is its member bit for bit.

    Args:
        statistics: (mean (D,), covariance (D, D)) per member.
        weights: non-negative, summing to 1 (not renormalised here).
    """
    if len(statistics) != len(weights):
        raise ValueError(f"need one weight per member, got {len(statistics)} members, {len(weights)} weights")
    return _mix_moments([s[0] for s in statistics], [s[1] for s in statistics], weights)


def _rescaled(count: torch.Tensor, total: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``count`` as a rate of ``base``, times ``total``; exact (a factor of 1.0) when total == base."""
    return count * torch.where(base > 0, total / base, 0.0)


def mix_sample_statistics(stats: Sequence[SampleStatistics], weights: Sequence[float]) -> SampleStatistics:
    """``SampleStatistics`` of the mixture that draws from member i with probability ``weights[i]``.

    The mixture picks its member independently of the requested label, so given class c it draws
    member i with probability w_i too: per-class moments mix with the same weights as the pooled
    ones. Counts mix as rates: the mixture's ``class_counts`` are the weighted mean of the members',
    its ``correct[c]`` is ``sum_i w_i correct_i[c] / class_counts_i[c]`` times its ``class_counts[c]``,
    its ``predicted`` (and ``unsure``) counts are ``sum_i w_i predicted_i / n_i`` times its sample
    count, so label accuracy, class coverage and the unsure share are those of the mixture. A
    one-member mixture (or one whose other weights are zero) equals its member bit for bit.

    Args:
        stats: one per member, all conditional or all not, with the same classes and features.
        weights: non-negative, summing to 1 (not renormalised here).
    """
    if len(stats) != len(weights) or not stats:
        raise ValueError(f"need one weight per member, got {len(stats)} members, {len(weights)} weights")
    if len({s.conditional for s in stats}) != 1:
        raise ValueError("cannot mix conditional and unconditional statistics")
    mean, cov = _mix_moments([s.mean for s in stats], [s.cov for s in stats], weights)
    class_mean, class_cov = _mix_moments([s.class_mean for s in stats], [s.class_cov for s in stats], weights)
    used = [(w, s) for s, w in zip(stats, weights, strict=True) if w]
    class_counts = sum(w * s.class_counts.double() for w, s in used)
    total = class_counts.sum()
    correct = sum(w * _rescaled(s.correct.double(), class_counts, s.class_counts.double()) for w, s in used)
    predicted, unsure = (
        sum(w * _rescaled(getattr(s, name).double(), total, s.class_counts.double().sum()) for w, s in used)
        for name in ("predicted", "unsure")
    )
    return SampleStatistics(
        mean=mean,
        cov=cov,
        class_mean=class_mean,
        class_cov=class_cov,
        class_counts=class_counts,
        correct=correct,
        predicted=predicted,
        conditional=stats[0].conditional,
        unsure=unsure,
    )


@dataclass(frozen=True)
class Selection:
    """The outcome of greedy selection.

    Attributes:
        weights: one per candidate, summing to 1 (counts of picks over the number of picks).
        score: the objective's value for the mixture with these weights (lower is better).
        history: the best value after each round, in order.
    """

    weights: list[float]
    score: float
    history: list[float]

    @property
    def fid(self) -> float:
        """``score``, by the name it had when FID was the only objective."""
        return self.score


def greedy_mixture(
    statistics: Sequence[S],
    score: Callable[..., float],
    *,
    rounds: int = 25,
    mix: Callable[[Sequence[S], Sequence[float]], Any] | None = None,
) -> Selection:
    """Greedy forward selection with replacement: each round adds the member that lowers the score most.

    The first round picks the best single member; the mixture returned is the best seen over all
    rounds, so its score is never above the best single member's. NaN never wins a round; ties go
    to the lower index.

    Args:
        statistics: each candidate's statistics: ``SampleStatistics``, or (mean, covariance) tuples.
        score: the objective to minimise, called with the mixed statistics: ``score(stats)`` for
            ``SampleStatistics`` (e.g. ``lambda s: SCORES[name].loss(evaluator.scores_of(s).get(name))``,
            which negates a score where higher is better, ``genopt.metrics.scores.SCORES``), and
            ``score(mean, cov)`` for tuples (e.g. ``evaluator.fid_of_statistics``); in general a
            tuple that ``mix`` returns is unpacked into ``score``'s arguments.
        rounds: members added in all (repeats allowed); the weights are multiples of 1/picks.
        mix: combines statistics and weights; by default ``mix_sample_statistics`` for
            ``SampleStatistics`` and ``mixture_statistics`` for tuples.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not statistics:
        raise ValueError("no candidates")
    if mix is None:
        mix = mix_sample_statistics if isinstance(statistics[0], SampleStatistics) else mixture_statistics

    def value(weights: list[float]) -> float:
        mixed = mix(statistics, weights)
        return score(*mixed) if isinstance(mixed, tuple) else score(mixed)

    counts = [0] * len(statistics)
    best: tuple[float, list[int]] | None = None
    history = []
    for _ in range(rounds):
        total = sum(counts) + 1
        scores = [
            value([(c + (j == i)) / total for j, c in enumerate(counts)]) for i in range(len(statistics))
        ]
        pick = min(range(len(scores)), key=lambda i: (scores[i] != scores[i], scores[i]))
        counts[pick] += 1
        history.append(scores[pick])
        if best is None or best[0] != best[0] or scores[pick] < best[0]:
            best = (scores[pick], list(counts))
    value_, chosen = best
    return Selection([c / sum(chosen) for c in chosen], value_, history)
