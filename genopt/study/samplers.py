"""The samplers a spec may name (``[search] sampler``): name -> factory of an Optuna sampler.

A new sampler is one entry here and its name in ``genopt.spec.fields.SAMPLER_NAMES``
(tests/test_registries.py checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from genopt.spec import StudySpec


def tpe(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate unless ``spec.multivariate`` is false) after ``startup_trials`` random trials."""
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=spec.multivariate, n_startup_trials=spec.startup_trials
    )


def gp(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process Bayesian optimisation after ``startup_trials`` random trials."""
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.startup_trials)


def random(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Independent uniform draws."""
    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS: dict[str, Callable[[StudySpec, int], optuna.samplers.BaseSampler]] = {
    "tpe": tpe,
    "gp": gp,
    "random": random,
}
