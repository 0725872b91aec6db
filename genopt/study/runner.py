"""Create or resume a study, run trials, keep the best checkpoints, and summarise.

Everything a user can get wrong is checked before the storage is written to: the spec, the
trial count, the data, the storage URL, and whether a resumed study was made with the same spec.
``run_study`` (``genopt study``) and ``run_worker`` (``genopt worker``) differ only in where the
study comes from: made or resumed here, or loaded as it is; both then run trials through
``_run_here``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard

from genopt.data import Dataset, load_dataset
from genopt.device import default_device
from genopt.errors import GenoptError
from genopt.files import plain
from genopt.metrics import FidEvaluator
from genopt.metrics.networks import feature_network
from genopt.metrics.scores import SCORES
from genopt.spec import StudySpec
from genopt.study.artifacts import stores
from genopt.study.artifacts.feature_net import network_line, store_network, study_network
from genopt.study.init_from import check_init, read_init, store_init, study_init
from genopt.study.objective import Objective
from genopt.study.optimize import optimize
from genopt.study.record import attrs as A
from genopt.study.record.facts import (
    dataset_record,
    stored_spec,
    study_artifact_location,
    study_dataset,
)
from genopt.study.record.note import study_note
from genopt.study.record.resume import check_resumable
from genopt.study.search.pruners import make_pruner
from genopt.study.search.samplers import make_sampler
from genopt.study.search.stopping import check_trials, trial_budget
from genopt.study.stop import Stop
from genopt.study.storage.creation import create_new, made_study
from genopt.study.storage.database import load_existing_study, open_storage, resolve_url
from genopt.study.workers import spawn_local_workers
from genopt.train import build_models
from genopt.warmstart import WarmStart


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
    retrain_feature_net: bool = False,
    stop: Stop | None = None,
) -> StudyResult:
    """Add ``trials`` trials to the study ``study_name`` (created on first use) and run them.

    Args:
        spec: the validated spec, command-line overrides applied.
        trials: how many trials to add (earlier trials of the study are kept), or ``"auto"``: until
            the spec's stopping rule says the study has converged, or it holds the rule's cap
            (``genopt.study.search.stopping``).
        study_name: the study to create or resume.
        storage_url: an Optuna storage URL (see ``genopt.study.storage.database.open_storage``);
            default ``sqlite:///storage/genopt.db``.
        data_dir: a folder of IDX files, or of images (``genopt.data.folder``), to use instead of
            the named dataset's sources; the spec's ``image_size`` and ``channels`` say how images are read.
        strict: refuse an image folder holding a file that does not decode, instead of skipping it.
        enqueue: parameter sets to try first, as baselines trained to the full budget (never pruned).
        progress: show a bar over trials (default: when stderr is a terminal); a line per
            trial is printed anyway.
        command: the command line that makes this study, written into the study note.
        workers: processes that share the ``trials`` (each gets its share of CPU threads, or a GPU).
        artifact_store: where trials keep their files: a folder or ``s3://BUCKET/PREFIX``
            (``genopt.study.artifacts.stores``); default the study's own, else ``storage/artifacts``.
        workers_per_gpu: local workers placed on each GPU, in order, the rest on the CPU (default:
            the workers share every GPU round-robin); see ``genopt.study.workers.worker_gpus``.
        init_from: a trial checkpoint or ensemble export whose weights every trial starts from
            (``genopt.study.init_from``); a resumed study uses the file it was made with.
        init_member: which member of an ensemble export (default: its best).
        retrain_feature_net: a new study on MNIST or Fashion-MNIST trains its feature network from
            the recipe here instead of using the shipped one (``genopt.metrics.networks``).
        stop: the run's time budget and its SIGINT/SIGTERM handling (``genopt.study.stop``): no trial
            starts once it says stop, and the running trials keep their best epoch so far; it says
            why afterwards (``Stop.why``). Default: no budget, signals handled all the same.

    Raises:
        GenoptError: bad input, found before anything is written; or a worker process that failed.
        KeyboardInterrupt: a second Ctrl-C or SIGTERM (or one before trials run); the running trials
            end as FAIL with user attribute reason "interrupted".
    """
    arguments = {name: value for name, value in locals().items() if name != "spec"}
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
    existing = made_study(study_name, storage)
    if existing is not None:
        if retrain_feature_net:
            raise GenoptError(
                f"study {study_name!r} has its feature network: --retrain-feature-net is for new studies"
            )
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
    init = _warm_start(existing, init, study_name=study_name, store=store, spec=spec, dataset=dataset)
    n_existing = len(existing.trials) if existing is not None else 0

    # A study is scored by one network, wherever its trials run: a resumed one by the network it
    # records, a new one by the shipped network for its data, else by one trained here and stored.
    device = default_device()
    if existing is not None:
        net = study_network(existing, dataset, location, store=store, device=device)
    else:
        net = feature_network(dataset, device=device, shipped=not retrain_feature_net)
    print(network_line(net), flush=True)
    evaluator = FidEvaluator(dataset, device=device, feature_net=net)
    floor = evaluator.floor()
    sampler, pruner = make_sampler(spec, n_existing=n_existing), make_pruner(spec)
    if existing is None:
        # Created here, once, before any worker starts: workers only ever load it.
        study = create_new(study_name, storage, sampler=sampler, pruner=pruner)
        if study is None:  # another process created it since made_study looked: join it as made
            print(f"study {study_name} was created by another process just now: joining it", flush=True)
            return run_study(spec, **(arguments | {"retrain_feature_net": False}))
        store_network(study, store, net)
        study.set_user_attr(A.DATASET_ATTR, dataset_record(dataset, data_dir))
        study.set_user_attr(A.ARTIFACT_STORE_ATTR, location.url)
        study.set_user_attr(A.FID_FLOOR_ATTR, floor)
        if init is not None:
            study.set_user_attr(A.INIT_ATTR, init.record() | store_init(init, store))
        study.set_user_attr(A.SPEC_ATTR, plain(spec.to_dict()))  # last: the study is made (made_study)
    else:
        study = optuna.create_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner, load_if_exists=True
        )
    name_metric(study, spec)
    if not optuna_dashboard.get_note(study):
        optuna_dashboard.save_note(study, study_note(study_name, study.user_attrs, command))
    for params in enqueue:
        study.enqueue_trial(params, user_attrs={A.BASELINE_ATTR: True})

    if workers == 1:
        _run_here(study, spec, dataset, evaluator, store, init, trials=trials, progress=progress, stop=stop)
    elif trial_budget(study, spec, trials)[0]:  # 0: an auto study that has converged
        spawn_local_workers(
            workers,
            study_name=study_name,
            storage_url=storage_url,
            trials=trials,
            data_dir=data_dir,
            artifact_store=location,
            per_gpu=workers_per_gpu,
            stop=stop,
        )
        study = optuna.load_study(study_name=study_name, storage=storage)
    return StudyResult(study, floor, evaluator.validation_accuracy)


def run_worker(
    *,
    study_name: str,
    storage_url: str | None,
    trials: int | str,
    data_dir: Path | None = None,
    artifact_store: str | Path | None = None,
    worker: int = 0,
    progress: bool | None = None,
    stop: Stop | None = None,
) -> StudyResult:
    """Join the existing study ``study_name`` and run ``trials`` of its trials in this process.

    The spec, data and budgets are the study's own; only the data folder and artifact store are
    this machine's. Several workers, on one machine or many, may join one study at once. ``stop``
    is as for ``run_study``.

    Raises:
        GenoptError: no such study, other data than the study's, or bad input.
    """
    check_trials(trials)
    study = load_existing_study(study_name, storage_url)
    location = study_artifact_location(study, artifact_store)
    store = stores.artifact_store(location)  # checked first
    spec = stored_spec(study)
    dataset = study_dataset(study, data_dir)
    check_resumable(study, spec, dataset.sha256)
    init = _warm_start(study, None, study_name=study_name, store=store, spec=spec, dataset=dataset)
    net = study_network(study, dataset, location, store=store, device=default_device())
    print(network_line(net), flush=True)
    evaluator = FidEvaluator(dataset, device=default_device(), feature_net=net)
    name_metric(study, spec)
    study.sampler = make_sampler(spec, n_existing=len(study.trials), worker=worker, distinct=True)
    study.pruner = make_pruner(spec)
    _run_here(study, spec, dataset, evaluator, store, init, trials=trials, progress=progress, stop=stop)
    return StudyResult(study, evaluator.floor(), evaluator.validation_accuracy)


def _warm_start(
    study: optuna.Study | None,
    init: WarmStart | None,
    *,
    study_name: str,
    store,
    spec: StudySpec,
    dataset: Dataset,
) -> WarmStart | None:
    """The warm start this run uses (``genopt.study.init_from.study_init``), checked to fit and said."""
    init = study_init(study, init, study_name=study_name, store=store)
    if init is not None:
        print(check_init(spec, dataset, init), flush=True)
    return init


def _run_here(
    study: optuna.Study,
    spec: StudySpec,
    dataset: Dataset,
    evaluator: FidEvaluator,
    store,
    init: WarmStart | None,
    *,
    trials: int | str,
    progress: bool | None,
    stop: Stop | None = None,
) -> None:
    """Run this process's trials of ``study``: ``trials`` of them, or what ``auto`` leaves."""
    budget, rule = trial_budget(study, spec, trials)  # 0: an auto study that has converged
    if budget:
        objective = Objective(spec, dataset, evaluator, store, evaluator.device, init=init, stop=stop)
        optimize(
            study,
            objective,
            trials=budget,
            store=store,
            keep=spec.keep_checkpoints,
            progress=progress,
            rule=rule,
            stop=stop,
        )
