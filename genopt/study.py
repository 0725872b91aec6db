"""Create or resume a study, run trials, keep the best checkpoints, and summarise.

Everything a user can get wrong is checked before the storage is written to: the spec, the
trial count, the data, the storage URL, and whether a resumed study was made with the same spec.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from genopt.data import load_dataset
from genopt.errors import GenoptError
from genopt.metrics import FidEvaluator
from genopt.note import study_note
from genopt.objective import BASELINE_ATTR, CHECKPOINT_ATTR, Objective
from genopt.progress import TrialProgress
from genopt.spec import StudySpec
from genopt.storage import artifact_store, load_existing_study, open_storage, resolve_url
from genopt.train import default_device
from genopt.workers import spawn_local_workers

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
    # A field added to genopt after the study was made has its default there.
    stored = _as_json(StudySpec().to_dict()) | stored
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


def _sampler(spec: StudySpec, n_existing: int, worker: int = 0) -> optuna.samplers.BaseSampler:
    # A resumed study must not replay the first run's random draws: offset the seed by its size,
    # and workers that start together must not draw the same parameters: offset by the worker too.
    seed = (spec.seed + n_existing + 1_000_003 * worker) % 2**32
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
        artifact_id = t.user_attrs.get(CHECKPOINT_ATTR)
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
            with contextlib.suppress(ArtifactNotFound):  # another worker removed it first
                store.remove(kept[number])

    return callback


def run_study(
    spec: StudySpec,
    *,
    trials: int,
    study_name: str,
    storage_url: str | None = None,
    data_dir: Path | None = None,
    enqueue: list[dict[str, Any]] = (),
    progress: bool = True,
    command: str | None = None,
    workers: int = 1,
    artifact_dir: Path | None = None,
) -> StudyResult:
    """Add ``trials`` trials to the study ``study_name`` (created on first use) and run them.

    Args:
        spec: the validated spec, command-line overrides applied.
        trials: how many trials to add; earlier trials of the study are kept.
        study_name: the study to create or resume.
        storage_url: an Optuna storage URL (see ``genopt.storage``); default ``sqlite:///storage/genopt.db``.
        data_dir: a folder of IDX files to use instead of the named dataset's sources.
        enqueue: parameter sets to try first, as baselines trained to the full budget (never pruned).
        progress: show a bar over trials with the best FID so far (a line per trial is printed anyway).
        command: the command line that makes this study, written into the study note.
        workers: processes that share the ``trials`` (each gets its share of CPU threads, or a GPU).
        artifact_dir: the artifact store's folder (default ``storage/artifacts``).

    Raises:
        GenoptError: bad input, found before anything is written; or a worker process that failed.
        KeyboardInterrupt: Ctrl-C; the running trials end as FAIL with user attribute reason "interrupted".
    """
    for name, value in (("trials", trials), ("workers", workers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GenoptError(f"the number of {name} must be a positive integer, got {value!r}")
    names = {p.name for p in spec.params}
    for params in enqueue:
        unknown = set(params) - names
        if unknown:
            raise GenoptError(f"enqueued parameter {sorted(unknown)[0]!r} is not in the search space")
    dataset = load_dataset(spec.dataset, data_dir=data_dir)
    storage_url = resolve_url(storage_url)
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
    # Created here, once, before any worker starts: workers only ever load it.
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
    if not optuna_dashboard.get_note(study):
        optuna_dashboard.save_note(study, study_note(study_name, study.user_attrs, command))
    for params in enqueue:
        study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True})

    if workers == 1:
        store = artifact_store(artifact_dir)
        objective = Objective(spec, dataset, evaluator, store, device)
        optimize(study, objective, trials=trials, store=store, keep=spec.keep_checkpoints, progress=progress)
    else:
        spawn_local_workers(
            workers,
            study_name=study_name,
            storage_url=storage_url,
            trials=trials,
            data_dir=data_dir,
            artifact_dir=artifact_dir,
        )
        study = optuna.load_study(study_name=study_name, storage=storage)
    return StudyResult(study, floor, evaluator.validation_accuracy)


def optimize(
    study: optuna.Study, objective: Objective, *, trials: int, store, keep: int, progress: bool
) -> None:
    """Run ``trials`` trials of ``study`` in this process; a trial out of memory fails alone."""
    # The per-trial lines below replace Optuna's own log line per trial.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with TrialProgress(trials, bar=progress) as progress_callback:
            study.optimize(
                objective,
                n_trials=trials,
                catch=(torch.OutOfMemoryError,),
                callbacks=[_retain_best(store, keep), progress_callback],
            )
    finally:
        optuna.logging.set_verbosity(verbosity)


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec a study was made with, read back from its user attributes."""
    raw = study.user_attrs.get("spec")
    if raw is None:
        raise GenoptError(f"study {study.study_name!r} was not made by genopt study: it has no stored spec")
    return StudySpec.from_dict(raw)


def run_worker(
    *,
    study_name: str,
    storage_url: str | None,
    trials: int,
    data_dir: Path | None = None,
    artifact_dir: Path | None = None,
    worker: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Join the existing study ``study_name`` and run ``trials`` of its trials in this process.

    The spec, data and budgets are the study's own; only the data folder and artifact store are
    this machine's. Several workers, on one machine or many, may join one study at once.

    Raises:
        GenoptError: no such study, other data than the study's, or bad input.
    """
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise GenoptError(f"the number of trials must be a positive integer, got {trials!r}")
    study = load_existing_study(study_name, storage_url)
    spec = stored_spec(study)
    dataset = load_dataset(spec.dataset, data_dir=data_dir)
    _check_resumable(study, spec, dataset.sha256)
    device = default_device()
    evaluator = FidEvaluator(dataset, device=device)
    study.sampler = _sampler(spec, len(study.trials), worker)
    study.pruner = _pruner(spec)
    store = artifact_store(artifact_dir)
    objective = Objective(spec, dataset, evaluator, store, device)
    optimize(study, objective, trials=trials, store=store, keep=spec.keep_checkpoints, progress=progress)
    return StudyResult(study, evaluator.floor(), evaluator.validation_accuracy)
