"""Create or resume a study, run trials, keep the best checkpoints, and summarise.

Everything a user can get wrong is checked before the storage is written to: the spec, the
trial count, the data, the storage URL, and whether a resumed study was made with the same spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from genopt.data import load_dataset
from genopt.errors import GenoptError
from genopt.metrics import FidEvaluator
from genopt.objective import BASELINE_ATTR, Objective
from genopt.spec import StudySpec
from genopt.storage import artifact_store, open_storage
from genopt.train import default_device

# Spec fields that may change between runs of one study; the rest define what its FIDs mean.
_RESUMABLE_FIELDS = {"seed", "keep_checkpoints", "sampler", "pruner"}


@dataclass(frozen=True)
class StudyResult:
    """What a run of ``run_study`` leaves for the summary table."""

    study: optuna.Study
    fid_floor: float
    feature_accuracy: float


def _check_resumable(study: optuna.Study, spec: StudySpec, dataset_sha256: str) -> None:
    stored = study.user_attrs.get("spec")
    if stored is None:
        return
    if study.user_attrs.get("dataset", {}).get("sha256") not in (None, dataset_sha256):
        raise GenoptError(
            f"study {study.study_name!r} was made on other data (sha256 differs): use a new --study name"
        )
    current = _as_json(spec.to_dict())
    changed = sorted(k for k in current if k not in _RESUMABLE_FIELDS and stored.get(k) != current[k])
    if changed:
        raise GenoptError(
            f"study {study.study_name!r} was made with a different {', '.join(changed)}: "
            "use the same spec and options, or a new --study name"
        )


def _as_json(value: Any) -> Any:
    # Optuna stores attributes as JSON, where tuples come back as lists.
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    return value


def _sampler(spec: StudySpec, n_existing: int) -> optuna.samplers.BaseSampler:
    # A resumed study must not replay the first run's random draws: offset the seed by its size.
    seed = spec.seed + n_existing
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.max_epochs, reduction_factor=3)


def kept_checkpoints(study: optuna.Study, store) -> dict[int, str]:
    """Trial number -> artifact id of every COMPLETE trial whose checkpoint is still stored."""
    kept = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = t.user_attrs.get("checkpoint")
        if artifact_id is None:
            continue
        try:
            store.open_reader(artifact_id).close()
        except Exception:  # removed by retention, or the store moved
            continue
        kept[t.number] = artifact_id
    return kept


def _retain_best(store, keep: int):
    def callback(study: optuna.Study, _: FrozenTrial) -> None:
        kept = kept_checkpoints(study, store)
        ranked = sorted(kept, key=lambda number: study.trials[number].value)
        for number in ranked[keep:]:
            store.remove(kept[number])

    return callback


def run_study(
    spec: StudySpec,
    *,
    trials: int,
    study_name: str,
    storage_url: str | None = None,
    data_dir=None,
    enqueue: list[dict[str, Any]] = (),
    progress: bool = True,
) -> StudyResult:
    """Add ``trials`` trials to the study ``study_name`` (created on first use) and run them.

    Args:
        spec: the validated spec, command-line overrides applied.
        trials: how many trials to add; earlier trials of the study are kept.
        study_name: the study to create or resume.
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        data_dir: a folder of IDX files to use instead of the named dataset's sources.
        enqueue: parameter sets to try first, as baselines trained to the full budget (never pruned).
        progress: show Optuna's progress bar over trials.

    Raises:
        GenoptError: bad input, found before anything is written.
    """
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise GenoptError(f"the number of trials must be a positive integer, got {trials!r}")
    names = {p.name for p in spec.params}
    for params in enqueue:
        unknown = set(params) - names
        if unknown:
            raise GenoptError(f"enqueued parameter {sorted(unknown)[0]!r} is not in the search space")
    dataset = load_dataset(spec.dataset, data_dir=data_dir)
    storage = open_storage(storage_url)
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        _check_resumable(existing, spec, dataset.sha256)
    n_existing = len(existing.trials) if existing is not None else 0

    device = default_device()
    evaluator = FidEvaluator(dataset, device=device)
    floor = evaluator.floor()
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(spec, n_existing),
        pruner=_pruner(spec),
        direction="minimize",
        load_if_exists=True,
    )
    if existing is None:
        study.set_user_attr("spec", _as_json(spec.to_dict()))
        study.set_user_attr(
            "dataset", {"name": dataset.name, "source": dataset.source, "sha256": dataset.sha256}
        )
        study.set_user_attr("fid_floor", floor)
        study.set_user_attr("feature_net_validation_accuracy", evaluator.validation_accuracy)
    for params in enqueue:
        study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True})

    store = artifact_store()
    objective = Objective(spec, dataset, evaluator, store, device)
    study.optimize(
        objective,
        n_trials=trials,
        callbacks=[_retain_best(store, spec.keep_checkpoints)],
        show_progress_bar=progress,
    )
    return StudyResult(study, floor, evaluator.validation_accuracy)
