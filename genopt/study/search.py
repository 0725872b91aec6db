"""How a study searches: the sampler and pruner a spec names, and whether a stored study may resume.

A resumed study must mean the same thing as the run that made it: its stored spec is compared field
by field with the current one, and only the fields below may differ.
"""

from __future__ import annotations

import optuna

from genopt.errors import GenoptError
from genopt.files import plain
from genopt.spec import StudySpec
from genopt.study.stored import DATASET_ATTR, SPEC_ATTR

# Spec fields that may change between runs of one study; the rest define what its scores mean.
RESUMABLE_FIELDS = frozenset(
    {"seed", "keep_checkpoints", "sampler", "multivariate", "startup_trials", "pruner", "min_resource"}
)


def make_sampler(spec: StudySpec, *, n_existing: int = 0, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler (TPE, GP or random), seeded apart from earlier runs and from other workers.

    Args:
        spec: the study's spec (``sampler``, ``seed``).
        n_existing: trials the study already holds: a resumed study must not replay the first run's
            random draws, so the seed is offset by the study's size.
        worker: the worker's index (or process id); workers that start together draw apart.
    """
    seed = (spec.seed + n_existing + 1_000_003 * worker) % 2**32
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.startup_trials)
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=spec.multivariate, n_startup_trials=spec.startup_trials
    )


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner over epochs (each trial reports its objective after every epoch).

    - ``hyperband``: Hyperband (Li et al. 2018) from ``min_resource`` epochs up to ``max_epochs``,
      reduction factor 3;
    - ``successive_halving``: asynchronous successive halving (Li et al. 2020), the same rungs;
    - ``median``: prune below the median of earlier trials at the same epoch (after 5 trials);
    - ``patient``: prune a trial whose score has not improved for 2 epochs;
    - ``none``: every trial runs its whole budget.
    """
    min_resource = min(spec.min_resource, spec.max_epochs)
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
