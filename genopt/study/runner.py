"""Create or resume a study, run trials, keep the best checkpoints, and summarise.

Everything a user can get wrong is checked before the storage is written to: the spec, the
trial count, the data, the storage URL, and whether a resumed study was made with the same spec.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.data import load_dataset
from genopt.device import default_device
from genopt.errors import GenoptError
from genopt.files import plain
from genopt.metrics import FidEvaluator
from genopt.metrics.features import FEATURE_VERSION
from genopt.metrics.scores import SCORES
from genopt.spec import StudySpec
from genopt.study import stores
from genopt.study.artifacts import BASELINE_ATTR, ArtifactStoreUnavailable, retain_best
from genopt.study.note import study_note, with_stop
from genopt.study.objective import Objective
from genopt.study.progress import TrialProgress
from genopt.study.search import check_resumable, make_pruner, make_sampler
from genopt.study.stopping import AUTO, STOPPED_ATTR, Stagnation
from genopt.study.storage import load_existing_study, open_storage, resolve_url
from genopt.study.stored import (
    ARTIFACT_STORE_ATTR,
    DATASET_ATTR,
    FEATURE_ACCURACY_ATTR,
    FEATURE_VERSION_ATTR,
    FID_FLOOR_ATTR,
    INIT_ATTR,
    SPEC_ATTR,
    dataset_record,
    stored_spec,
    study_artifact_location,
    study_dataset,
    study_feature_version,
)
from genopt.study.warm import check_init, read_init, store_init, study_init
from genopt.study.workers import spawn_local_workers
from genopt.train import build_models


@dataclass(frozen=True)
class StudyResult:
    """What a run of ``run_study`` leaves for the summary table."""

    study: optuna.Study
    fid_floor: float
    feature_accuracy: float


def name_metric(study: optuna.Study, spec: StudySpec) -> None:
    """Name the objective (``intra-FID`` or ``FID``) so the dashboard's axes say what they plot;
    studies made before names were set get theirs when next resumed."""
    label = SCORES[spec.objective_name].label
    if study.metric_names != [label]:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([label])


def run_study(
    spec: StudySpec,
    *,
    trials: int | str,
    study_name: str,
    storage_url: str | None = None,
    data_dir: Path | None = None,
    strict: bool = False,
    enqueue: list[dict[str, Any]] = (),
    progress: bool | None = None,
    command: str | None = None,
    workers: int = 1,
    artifact_store: str | Path | None = None,
    workers_per_gpu: int | None = None,
    init_from: Path | None = None,
    init_member: int | None = None,
) -> StudyResult:
    """Add ``trials`` trials to the study ``study_name`` (created on first use) and run them.

    Args:
        spec: the validated spec, command-line overrides applied.
        trials: how many trials to add (earlier trials of the study are kept), or ``"auto"``: until
            the spec's stopping rule says the study has converged, or it holds the rule's cap
            (``genopt.study.stopping``).
        study_name: the study to create or resume.
        storage_url: an Optuna storage URL (see ``genopt.study.storage.open_storage``); default ``sqlite:///storage/genopt.db``.
        data_dir: a folder of IDX files, or of images (``genopt.data.folder``), to use instead of
            the named dataset's sources; the spec's ``image_size`` and ``channels`` say how images are read.
        strict: refuse an image folder holding a file that does not decode, instead of skipping it.
        enqueue: parameter sets to try first, as baselines trained to the full budget (never pruned).
        progress: show a bar over trials (default: when stderr is a terminal); a line per
            trial is printed anyway.
        command: the command line that makes this study, written into the study note.
        workers: processes that share the ``trials`` (each gets its share of CPU threads, or a GPU).
        artifact_store: where trials keep their files: a folder or ``s3://BUCKET/PREFIX``
            (``genopt.study.stores``); default the study's own, else ``storage/artifacts``.
        workers_per_gpu: local workers placed on each GPU, in order, the rest on the CPU (default:
            the workers share every GPU round-robin); see ``genopt.study.workers.worker_gpus``.
        init_from: a trial checkpoint or ensemble export whose weights every trial starts from
            (``genopt.study.warm``); a resumed study uses the file it was made with.
        init_member: which member of an ensemble export (default: its best).

    Raises:
        GenoptError: bad input, found before anything is written; or a worker process that failed.
        KeyboardInterrupt: Ctrl-C; the running trials end as FAIL with user attribute reason "interrupted".
    """
    per_gpu = 1 if workers_per_gpu is None else workers_per_gpu
    check_trials(trials)
    for name, value in (("workers", workers), ("workers per GPU", per_gpu)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GenoptError(f"the number of {name} must be a positive integer, got {value!r}")
    names = {p.name for p in spec.params}
    for params in enqueue:
        unknown = set(params) - names
        if unknown:
            raise GenoptError(f"enqueued parameter {sorted(unknown)[0]!r} is not in the search space")
    dataset = load_dataset(
        spec.dataset, data_dir=data_dir, image_size=spec.image_size, channels=spec.channels, strict=strict
    )
    if spec.model == "cgan" and not dataset.labelled:
        raise GenoptError(
            f"{dataset.source} has no classes (its images are not in subfolders): a cgan draws the class "
            "it is asked for, so it needs one subfolder per class; use --model gan"
        )
    storage_url = resolve_url(storage_url)
    storage = open_storage(storage_url)
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        check_resumable(existing, spec, dataset.sha256)
        location = study_artifact_location(existing, artifact_store)
    else:
        location = stores.ArtifactLocation.parse(artifact_store)
    # Checked (an S3 bucket: one bounded request) before anything is written.
    store = stores.artifact_store(location)
    if init_member is not None and init_from is None:
        raise GenoptError("--init-member picks a member of the ensemble that --init-from names: give both")
    for config in spec.architectures():  # a size the networks cannot take is refused here, in one line
        build_models(config, dataset)
    init = read_init(init_from, member=init_member) if init_from is not None else None
    init = study_init(existing, init, study_name=study_name, store=store)
    if init is not None:
        print(check_init(spec, dataset, init), flush=True)
    n_existing = len(existing.trials) if existing is not None else 0

    device = default_device()
    # A resumed study keeps scoring with the feature net it was made with, so its trials stay comparable.
    version = study_feature_version(existing) if existing is not None else FEATURE_VERSION
    evaluator = FidEvaluator(dataset, device=device, feature_version=version)
    floor = evaluator.floor()
    # Created here, once, before any worker starts: workers only ever load it.
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(spec, n_existing=n_existing),
        pruner=make_pruner(spec),
        direction="minimize",
        load_if_exists=True,
    )
    if existing is None:
        study.set_user_attr(SPEC_ATTR, plain(spec.to_dict()))
        study.set_user_attr(DATASET_ATTR, dataset_record(dataset, data_dir))
        study.set_user_attr(ARTIFACT_STORE_ATTR, location.url)
        study.set_user_attr(FID_FLOOR_ATTR, floor)
        study.set_user_attr(FEATURE_ACCURACY_ATTR, evaluator.validation_accuracy)
        study.set_user_attr(FEATURE_VERSION_ATTR, version)
        if init is not None:
            study.set_user_attr(INIT_ATTR, init.record() | store_init(init, store))
    name_metric(study, spec)
    if not optuna_dashboard.get_note(study):
        optuna_dashboard.save_note(study, study_note(study_name, study.user_attrs, command))
    for params in enqueue:
        study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True})

    budget, rule = trial_budget(study, spec, trials)  # 0: an auto study that has converged
    if budget and workers == 1:
        objective = Objective(spec, dataset, evaluator, store, device, init=init)
        optimize(
            study,
            objective,
            trials=budget,
            store=store,
            keep=spec.keep_checkpoints,
            progress=progress,
            rule=rule,
        )
    elif budget:
        spawn_local_workers(
            workers,
            study_name=study_name,
            storage_url=storage_url,
            trials=trials,
            data_dir=data_dir,
            artifact_store=location,
            per_gpu=workers_per_gpu,
        )
        study = optuna.load_study(study_name=study_name, storage=storage)
    return StudyResult(study, floor, evaluator.validation_accuracy)


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    trials: int,
    store,
    keep: int,
    progress: bool | None,
    rule: Stagnation | None = None,
) -> None:
    """Run ``trials`` trials of ``study`` in this process; a trial out of memory, or whose upload an
    object store failed (``ArtifactStoreUnavailable``, its ``reason`` in its line), fails alone.

    Any other ``GenoptError`` from a trial (the artifact store is full) ends that trial as FAIL and
    stops the run; the CLI prints it as one line, so Optuna's own warning with a traceback is dropped.

    A trial taken over while this process stalled (no heartbeat for the grace period, so another
    worker failed it as stale and queued it again) counts as one of the ``trials``: this says so in
    one line and goes on with the next trial (``_TrialWatch``).

    With a stopping ``rule`` (``--trials auto``), the run also ends once the rule says the study has
    converged or is at its cap; the study records why (``STOPPED_ATTR``) and its note says so.
    """
    # The per-trial lines below replace Optuna's own log line per trial.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handlers, quiet = logging.getLogger("optuna").handlers, _QuietUserErrors()
    for handler in handlers:
        handler.addFilter(quiet)
    watch = _TrialWatch(objective)
    callbacks = [watch.told, retain_best(store, keep)]
    if rule is not None:
        callbacks.append(_stop_when(rule, stored_spec(study).objective_name))
    try:
        with TrialProgress(trials, bar=progress) as progress_callback:
            while watch.done < trials:
                try:
                    study.optimize(
                        watch,
                        n_trials=trials - watch.done,
                        catch=(torch.OutOfMemoryError, ArtifactStoreUnavailable),
                        callbacks=[*callbacks, progress_callback],
                    )
                    return
                except Exception as exc:
                    lost = watch.taken_over(study, exc)
                    if lost is None:
                        raise
                    tqdm.write(lost, file=sys.stdout)
                    progress_callback.bar.update(1)
    finally:
        optuna.logging.set_verbosity(verbosity)
        for handler in handlers:
            handler.removeFilter(quiet)


def check_trials(trials: int | str) -> None:
    """``trials`` must be a positive integer or ``"auto"``.

    Raises:
        GenoptError: it is neither.
    """
    if trials == AUTO:
        return
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise GenoptError(f"the number of trials must be a positive integer or auto, got {trials!r}")


def trial_budget(study: optuna.Study, spec: StudySpec, trials: int | str) -> tuple[int, Stagnation | None]:
    """How many trials this run may add, and the stopping rule that may end it sooner (``auto``).

    With ``auto`` the budget is what the cap leaves, and 0 when the study has already converged;
    either way the reason is recorded and printed. A fixed number of trials clears an earlier
    run's reason, since the study goes on past it.
    """
    if study.user_attrs.get(STOPPED_ATTR):
        _record_stop(study, None)
    if trials != AUTO:
        return int(trials), None
    rule = Stagnation.of(spec)
    reason = rule.verdict(study, spec.objective_name)
    if reason is not None:
        _record_stop(study, reason)
        return 0, rule
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    return rule.max_trials - finished, rule


def _stop_when(rule: Stagnation, objective: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback that stops the run once ``rule`` has a verdict on the study."""

    def stop(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = rule.verdict(study, objective)
        if reason is not None:
            _record_stop(study, reason)
            study.stop()

    return stop


def _record_stop(study: optuna.Study, reason: str | None) -> None:
    """Record why the study stopped (None: it goes on after all) in its attributes and its note."""
    study.set_user_attr(STOPPED_ATTR, reason)
    optuna_dashboard.save_note(study, with_stop(optuna_dashboard.get_note(study), reason))
    if reason is not None:
        tqdm.write(f"study {study.study_name}: {reason}", file=sys.stdout)


class _TrialWatch:
    """The objective, watched: which trial it runs, how it ended, and whether this process told it.

    A worker that stalls longer than the heartbeat grace period (a machine suspended, swapping, a
    debugger) finds on waking that another worker has failed its trial as stale and queued it
    again. Its next write to the trial raises ``UpdateFinishedTrialError``, and Optuna's
    ``study.optimize`` then fails to record the trial ("Cannot tell a FAIL trial.") and ends the
    run with that error. Only this process's own tell finishes a trial it runs, so a trial finished
    without it was taken over, and ``optimize`` goes on.
    """

    def __init__(self, objective: Callable[[optuna.Trial], float]):
        self.objective = objective
        self.done = 0  # trials of this run that ended, told or taken over
        self.trial: optuna.Trial | None = None  # the trial running or ended, until told
        self.raised: BaseException | None = None  # what the objective raised for it

    def __call__(self, trial: optuna.Trial) -> float:
        self.trial, self.raised = trial, None
        try:
            return self.objective(trial)
        except BaseException as exc:
            self.raised = exc
            raise

    def told(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """The first callback: Optuna calls it once it has recorded the trial."""
        self.trial = None
        self.done += 1

    def taken_over(self, study: optuna.Study, exc: Exception) -> str | None:
        """The line to say when ``exc`` ended a trial another worker had failed, else None.

        Optuna re-raises the objective's own error once it has recorded the trial; any other error
        while a trial is untold, with the trial already FAIL in the storage, means it was not this
        process that finished it.
        """
        trial = self.trial
        if trial is None or exc is self.raised:
            return None
        trials = study.get_trials(deepcopy=False)
        if next(t for t in trials if t.number == trial.number).state != TrialState.FAIL:
            return None
        self.trial = None
        self.done += 1
        retries = [
            t.number
            for t in trials
            if RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] == [trial.number]
        ]
        queued = f" and queued it again as trial {retries[0]}" if retries else ""
        return (
            f"trial {trial.number:>3}  taken over: this worker stalled past the heartbeat grace period, "
            f"so another worker failed the trial{queued}; going on with the next trial"
        )


class _QuietUserErrors(logging.Filter):
    """Drops Optuna's two warnings about a trial that failed with a ``GenoptError``, or that another
    worker had failed while this one stalled (``UpdateFinishedTrialError``; ``_TrialWatch`` says so).

    The first ("Trial N failed with parameters ... because of the following error") carries the
    error and its traceback; the second ("Trial N failed with value None.") follows it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._followers: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and isinstance(record.exc_info[1], GenoptError | UpdateFinishedTrialError):
            self._followers.add(message.partition(" failed")[0] + " failed with value None.")
            return False
        if message in self._followers:
            self._followers.discard(message)
            return False
        return True


def run_worker(
    *,
    study_name: str,
    storage_url: str | None,
    trials: int | str,
    data_dir: Path | None = None,
    artifact_store: str | Path | None = None,
    worker: int = 0,
    progress: bool | None = None,
) -> StudyResult:
    """Join the existing study ``study_name`` and run ``trials`` of its trials in this process.

    The spec, data and budgets are the study's own; only the data folder and artifact store are
    this machine's. Several workers, on one machine or many, may join one study at once.

    Raises:
        GenoptError: no such study, other data than the study's, or bad input.
    """
    check_trials(trials)
    study = load_existing_study(study_name, storage_url)
    store = stores.artifact_store(study_artifact_location(study, artifact_store))  # checked first
    spec = stored_spec(study)
    dataset = study_dataset(study, data_dir)
    check_resumable(study, spec, dataset.sha256)
    init = study_init(study, None, study_name=study_name, store=store)
    if init is not None:
        print(check_init(spec, dataset, init), flush=True)
    device = default_device()
    evaluator = FidEvaluator(dataset, device=device, feature_version=study_feature_version(study))
    name_metric(study, spec)
    study.sampler = make_sampler(spec, n_existing=len(study.trials), worker=worker, distinct=True)
    study.pruner = make_pruner(spec)
    objective = Objective(spec, dataset, evaluator, store, device, init=init)
    budget, rule = trial_budget(study, spec, trials)
    if budget:
        optimize(
            study,
            objective,
            trials=budget,
            store=store,
            keep=spec.keep_checkpoints,
            progress=progress,
            rule=rule,
        )
    return StudyResult(study, evaluator.floor(), evaluator.validation_accuracy)
