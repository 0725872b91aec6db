"""The pruners a spec may name (``[search] pruner``): name -> factory of an Optuna pruner over epochs.

Each trial reports its objective after every epoch. A new pruner is one entry here and its name in
``genopt.spec.fields.PRUNER_NAMES`` (tests/test_registries.py checks that the two agree).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from genopt.spec import StudySpec


def _min_resource(spec: StudySpec) -> int:
    return min(spec.min_resource, spec.max_epochs)


def behind_best(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Stop a trial whose score is more than ``behind_factor`` times the best any earlier trial had at
    the same epoch, from ``min_resource`` epochs; it completes with its best epoch's score."""
    return BehindBestPruner(spec.behind_factor, _min_resource(spec))


def hyperband(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Hyperband (Li et al. 2018) from ``min_resource`` epochs up to ``max_epochs``, reduction factor 3."""
    return optuna.pruners.HyperbandPruner(
        min_resource=_min_resource(spec), max_resource=spec.max_epochs, reduction_factor=3
    )


def successive_halving(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Asynchronous successive halving (Li et al. 2020), Hyperband's rungs."""
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=_min_resource(spec), reduction_factor=3)


def median(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Prune below the median of earlier trials at the same epoch (after 5 trials)."""
    return optuna.pruners.MedianPruner(n_startup_trials=5)


def patient(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Prune a trial whose score has not improved for 2 epochs."""
    return optuna.pruners.PatientPruner(None, patience=2)


def none(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Every trial runs its whole budget."""
    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[StudySpec], optuna.pruners.BasePruner]] = {
    "behind_best": behind_best,
    "hyperband": hyperband,
    "successive_halving": successive_halving,
    "median": median,
    "patient": patient,
    "none": none,
}


def completes_stops(pruner: optuna.pruners.BasePruner) -> bool:
    """Whether a trial this pruner stops completes with its best epoch's score rather than ending as
    PRUNED: a pruner says so with a true ``completes_stops`` attribute, as ``BehindBestPruner`` does,
    so that the GP sampler, which learns from complete trials only, sees the trials it stopped."""
    return bool(getattr(pruner, "completes_stops", False))


class BehindBestPruner(optuna.pruners.BasePruner):
    """Stop a trial that is hopelessly behind: from epoch ``min_resource`` on, its score (lower is
    better, and positive, as FIDs are) more than ``factor`` times the best score any finished trial
    had at the same epoch.

    Unlike the median or a percentile, the bar does not rise as the sampler concentrates its draws
    on good regions, and scores early in GAN training predict the final ones poorly (docs/
    benchmarks.md), so only the trials far behind are stopped: on the learning-curve table, those
    that have not started to learn while others have. A stopped trial completes (``completes_stops``).
    """

    completes_stops = True

    def __init__(self, factor: float, min_resource: int):
        if factor < 1.0:
            raise ValueError(f"factor must be at least 1, got {factor}")
        self.factor = factor
        self.min_resource = min_resource

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.min_resource:
            return False
        value = trial.intermediate_values[step]
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        best = min(
            (t.intermediate_values[step] for t in finished if step in t.intermediate_values),
            default=math.inf,
        )
        return math.isfinite(best) and value > self.factor * best


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner over epochs (``PRUNERS``; each trial reports its objective after every epoch)."""
    return PRUNERS[spec.pruner](spec)
