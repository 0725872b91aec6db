"""The samplers a spec may name (``[search] sampler``): name -> factory of an Optuna sampler.

A new sampler is one entry here and its name in ``genopt.spec.fields.SAMPLER_NAMES``
(tests/test_registries.py checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from genopt.spec import StudySpec
from genopt.study.search.distinct import DistinctSampler


def tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate unless ``spec.multivariate`` is false) after ``startup_trials`` random trials."""
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=spec.multivariate, n_startup_trials=spec.startup_trials
    )


def gp(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process Bayesian optimisation after ``startup_trials`` random trials, and from trial
    ``tpe_after`` on (when not 0) multivariate TPE over the same trials."""
    sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.startup_trials)
    if not spec.tpe_after:
        return sampler
    # TPE starts from the trials GP drew: no random trials of its own.
    refine = optuna.samplers.TPESampler(seed=(seed + 1) % 2**32, multivariate=True, n_startup_trials=0)
    return Handover(sampler, refine, spec.tpe_after)


def random(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Independent uniform draws."""
    return optuna.samplers.RandomSampler(seed=seed)


class Handover(optuna.samplers.BaseSampler):
    """One sampler for the study's first ``at`` trials, another from then on.

    GP finds the good region within a few dozen trials and then keeps proposing the point it
    believes best; multivariate TPE, fitted to the same trials, draws around the best ones with a
    spread and so keeps finding slightly better points (``[search] tpe_after``, docs/benchmarks.md).
    Which sampler draws follows from the trial's number in the study, so resumed studies and workers
    sharing one hand over at the same trial.
    """

    def __init__(self, first: optuna.samplers.BaseSampler, then: optuna.samplers.BaseSampler, at: int):
        self.first = first
        self.then = then
        self.at = at

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        return self.then if trial.number >= self.at else self.first

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.first.reseed_rng()
        self.then.reseed_rng()


SAMPLERS: dict[str, Callable[[StudySpec, int], optuna.samplers.BaseSampler]] = {
    "tpe": tpe,
    "gp": gp,
    "random": random,
}


def make_sampler(
    spec: StudySpec, *, n_existing: int = 0, worker: int = 0, distinct: bool = False
) -> optuna.samplers.BaseSampler:
    """The spec's sampler (``SAMPLERS``), seeded apart from earlier runs and from other workers.

    Args:
        spec: the study's spec (``sampler``, ``seed``).
        n_existing: trials the study already holds: a resumed study must not replay the first run's
            random draws, so the seed is offset by the study's size.
        worker: the worker's index (or process id); workers that start together draw apart.
        distinct: wrap it in ``DistinctSampler`` (a worker that shares the study with others).
    """
    seed = (spec.seed + n_existing + 1_000_003 * worker) % 2**32
    sampler = SAMPLERS[spec.sampler](spec, seed)
    return DistinctSampler(sampler) if distinct else sampler
