"""A worker's sampler that never proposes parameters another trial holds or has just drawn.

Workers that share a study ask for parameters at the same moment; ``DistinctSampler`` (built by
``genopt.study.search.samplers.make_sampler``) keeps their draws apart.
"""

from __future__ import annotations

import json

import optuna

from genopt.study.record.attrs import DRAWN_ATTR
from genopt.study.storage import optuna_private


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
