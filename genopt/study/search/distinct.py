"""How a study searches: the sampler and pruner a spec names, and whether a stored study may resume.

The samplers and pruners themselves are named in ``genopt.study.samplers.SAMPLERS`` and
``genopt.study.pruners.PRUNERS``; this module seeds and builds the spec's.

A resumed study must mean the same thing as the run that made it: its stored spec is compared field
by field with the current one, and only the fields below may differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from genopt.errors import GenoptError
from genopt.files import plain
from genopt.spec import FIELDS, StudySpec, load_spec
from genopt.study import optuna_private
from genopt.study.pruners import PRUNERS, BehindBestPruner, completes_stops
from genopt.study.samplers import SAMPLERS
from genopt.study.stored import DATASET_ATTR, SPEC_ATTR

__all__ = [
    "DRAWN_ATTR",
    "RESUMABLE_FIELDS",
    "BehindBestPruner",
    "DistinctSampler",
    "check_resumable",
    "completes_stops",
    "make_pruner",
    "make_sampler",
]

# Spec fields that may change between runs of one study: those of [search] (how it searches, its
# seed, the checkpoints it keeps), bar the search space; the rest define what its scores mean.
RESUMABLE_FIELDS = frozenset(f.name for f in FIELDS if f.section == "search")


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
    """The spec's pruner over epochs (``PRUNERS``; each trial reports its objective after every epoch)."""
    return PRUNERS[spec.pruner](spec)


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
        # A study made with a shipped spec that is no longer the default (the article's MLPs were,
        # until the DCGAN): name the file that resumes it.
        shipped = _shipped_spec_of(stored)
        hint = f" (the study's spec is {shipped}'s: it resumes with --spec {shipped})" if shipped else ""
        raise GenoptError(
            f"study {study.study_name!r} was made with a different {', '.join(changed)}: use the same "
            f"spec and options (genopt worker --study {study.study_name} resumes with the stored spec), "
            f"or a new --study name{hint}"
        )


def _shipped_spec_of(stored: dict) -> Path | None:
    """The spec file in this checkout's ``studies/`` whose non-resumable fields are ``stored``'s, if any."""
    for path in sorted(Path("studies").glob("*.toml")):
        try:
            shipped = plain(load_spec(path).to_dict())
        except GenoptError:
            continue
        if all(shipped.get(k) == v for k, v in stored.items() if k not in RESUMABLE_FIELDS):
            return path
    return None
