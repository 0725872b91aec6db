"""How a study searches: the sampler and pruner a spec names, and whether a stored study may resume.

A resumed study must mean the same thing as the run that made it: its stored spec is compared field
by field with the current one, and only the fields below may differ.
"""

from __future__ import annotations

import json
import math

import optuna
from optuna.trial import TrialState

from genopt.errors import GenoptError
from genopt.files import plain
from genopt.spec import StudySpec
from genopt.study import optuna_private
from genopt.study.stored import DATASET_ATTR, SPEC_ATTR

# Spec fields that may change between runs of one study; the rest define what its scores mean.
RESUMABLE_FIELDS = frozenset(
    {
        "seed",
        "keep_checkpoints",
        "sampler",
        "multivariate",
        "startup_trials",
        "pruner",
        "min_resource",
        "behind_factor",
    }
)


def make_sampler(
    spec: StudySpec, *, n_existing: int = 0, worker: int = 0, distinct: bool = False
) -> optuna.samplers.BaseSampler:
    """The spec's sampler (TPE, GP or random), seeded apart from earlier runs and from other workers.

    Args:
        spec: the study's spec (``sampler``, ``seed``).
        n_existing: trials the study already holds: a resumed study must not replay the first run's
            random draws, so the seed is offset by the study's size.
        worker: the worker's index (or process id); workers that start together draw apart.
        distinct: wrap it in ``DistinctSampler`` (a worker that shares the study with others).
    """
    seed = (spec.seed + n_existing + 1_000_003 * worker) % 2**32
    if spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif spec.sampler == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.startup_trials)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=spec.multivariate, n_startup_trials=spec.startup_trials
        )
    return DistinctSampler(sampler) if distinct else sampler


# Where a worker's trial records the parameters its sampler drew, before it stores them as its own.
DRAWN_ATTR = "genopt:drawn"


class DistinctSampler(optuna.samplers.BaseSampler):
    """A worker's sampler: the spec's, but never parameters that another trial holds or has just drawn.

    Workers that ask at the same moment see the same finished trials and not each other's draws
    (stored only once drawn), and GP then proposes the very same point to both: its optimum often
    sits on a corner of the space, whatever the seed. So each model-based draw is first written to
    the trial (system attribute ``genopt:drawn``) and then compared with every other trial's
    parameters and draws; on a match this trial draws at random instead. Each worker writes before it
    reads, so of two equal draws the one read last sees the other. A retried trial keeps its own
    parameters and draws nothing.

    The random draws are unseeded: seeded like the worker's own startup draws they would repeat them,
    and they happen only when two draws meet, which no seed makes reproducible anyway.
    """

    def __init__(self, sampler: optuna.samplers.BaseSampler):
        self._sampler = sampler
        self._random = optuna.samplers.RandomSampler()
        self._at_random: set[int] = set()  # trial numbers whose model-based draw another trial had

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        params = self._sampler.sample_relative(study, trial, search_space)
        if not params:
            return params
        drawn = json.dumps(
            {k: v.item() if hasattr(v, "item") else v for k, v in params.items()}, sort_keys=True
        )
        optuna_private.set_trial_system_attr(study, trial, DRAWN_ATTR, drawn)
        for other in study.get_trials(deepcopy=False):
            if other.number != trial.number and (
                other.params == params or other.system_attrs.get(DRAWN_ATTR) == drawn
            ):
                self._at_random.add(trial.number)
                return {}
        return params

    def sample_independent(self, study, trial, param_name, param_distribution):
        sampler = self._random if trial.number in self._at_random else self._sampler
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._at_random.discard(trial.number)
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
        self._random.reseed_rng()


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner over epochs (each trial reports its objective after every epoch).

    - ``hyperband``: Hyperband (Li et al. 2018) from ``min_resource`` epochs up to ``max_epochs``,
      reduction factor 3;
    - ``successive_halving``: asynchronous successive halving (Li et al. 2020), the same rungs;
    - ``median``: prune below the median of earlier trials at the same epoch (after 5 trials);
    - ``patient``: prune a trial whose score has not improved for 2 epochs;
    - ``behind_best``: stop a trial whose score is more than ``behind_factor`` times the best any
      earlier trial had at the same epoch, from ``min_resource`` epochs (``BehindBestPruner``); such
      a trial completes with its best epoch's score (``completes_stops``);
    - ``none``: every trial runs its whole budget.
    """
    min_resource = min(spec.min_resource, spec.max_epochs)
    if spec.pruner == "behind_best":
        return BehindBestPruner(spec.behind_factor, min_resource)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min_resource, max_resource=spec.max_epochs, reduction_factor=3
        )
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=3)
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if spec.pruner == "patient":
        return optuna.pruners.PatientPruner(None, patience=2)
    return optuna.pruners.NopPruner()


def check_resumable(study: optuna.Study, spec: StudySpec, dataset_sha256: str) -> None:
    """Refuse to add trials that would mean something else than the study's stored ones.

    Raises:
        GenoptError: other data (sha256), or a spec field outside ``RESUMABLE_FIELDS`` changed.
    """
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return
    if study.user_attrs.get(DATASET_ATTR, {}).get("sha256") not in (None, dataset_sha256):
        raise GenoptError(
            f"study {study.study_name!r} was made on other data (sha256 differs): use a new --study name"
        )
    current = plain(spec.to_dict())
    # A field added to genopt after the study was made meant what the study did then.
    stored = plain(StudySpec.from_dict(stored).to_dict())
    changed = sorted(k for k in current if k not in RESUMABLE_FIELDS and stored.get(k) != current[k])
    if changed:
        raise GenoptError(
            f"study {study.study_name!r} was made with a different {', '.join(changed)}: use the same "
            f"spec and options (genopt worker --study {study.study_name} resumes with the stored spec), "
            "or a new --study name"
        )


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
