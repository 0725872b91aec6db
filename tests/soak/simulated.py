"""Simulated workers for the load test (git show d75cb9a:bench/load_test.py, retired): genopt's real
study loop, its real trial attributes, heartbeats and artifact uploads, with the training replaced by
a sleep.

A simulated worker is a thread with a storage of its own (its own database connections, or its own
gRPC channel to the proxy, as a worker process has) that runs ``genopt.study.optimize.optimize``:
Optuna's loop as genopt runs it, with heartbeats, the stale-trial check before each trial, the
``DistinctSampler``, the pruner and checkpoint retention. Its objective is ``Objective``'s with each
epoch's training and scoring replaced by a sleep and a made-up score: it suggests the spec's
parameters, reports and judges every epoch (``EpochJudge``), records the trial's attributes
(``Objective._record``) and uploads a sample grid, a history and a checkpoint of one tiny generator.

Threads, not processes: 256 worker processes, each importing torch, would not fit 2 cores and the
memory; threads share one interpreter (its GIL), so each figure includes the wait for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import optuna
import torch

from genopt.files import plain
from genopt.metrics import Scores
from genopt.spec import StudySpec
from genopt.study.artifacts.stores import artifact_store
from genopt.study.artifacts.upload import upload_checkpoint, upload_trial_artifacts
from genopt.study.objective import EpochJudge, Objective, _history_row, suggest, trial_seed
from genopt.study.optimize import optimize
from genopt.study.record import attrs as A
from genopt.study.search.pruners import make_pruner
from genopt.study.search.samplers import make_sampler
from genopt.study.stop import Stop
from genopt.study.storage import optuna_private
from genopt.study.storage.creation import create_new
from genopt.study.storage.database import open_storage
from genopt.train import EpochStats, TrainResult, build_models

# The article's MLP generator at width 16 on MNIST's shape: its grid and checkpoint are real files of a
# few kilobytes. The random sampler keeps the sampler's own arithmetic (GP's fit grows with the study)
# out of figures about the storage; DistinctSampler, the pruner and retention run as in a study.
SPEC = StudySpec(
    model="gan",
    sampler="random",
    generator_widths=(16,),
    discriminator_widths=(16,),
    max_epochs=2,
)
GENOPT = str(Path(sys.executable).parent / "genopt")
_SHAPE = SimpleNamespace(num_classes=10, image_shape=(1, 28, 28))
_EVALUATOR = SimpleNamespace(feature_version=1, feature_net=SimpleNamespace(sha256="0" * 64))


@dataclass
class Stats:
    """What every worker of a run saw, appended from their threads."""

    suggest: list[float] = field(default_factory=list)  # seconds per suggest_* call
    tell: list[float] = field(default_factory=list)  # seconds per storage write that finishes a trial
    told: list[tuple[float, int, int]] = field(default_factory=list)  # (monotonic, trial id, worker)
    errors: list[str] = field(default_factory=list)  # workers that ended with an exception


def make_study(url: str, name: str, artifacts: str) -> None:
    """The study ``name`` as ``genopt study`` records it: its spec and its artifact store."""
    storage = open_storage(url)
    study = create_new(name, storage, sampler=make_sampler(SPEC), pruner=make_pruner(SPEC))
    study.set_user_attr(A.ARTIFACT_STORE_ATTR, artifacts)
    study.set_user_attr(A.SPEC_ATTR, plain(SPEC.to_dict()))
    storage.remove_session()
    storage.engine.dispose()


class _TimedSuggest:
    """A trial whose ``suggest_*`` calls are timed into ``times``."""

    def __init__(self, trial: optuna.Trial, times: list[float]):
        self._trial, self._times = trial, times

    def __getattr__(self, name: str):
        method = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return method

        def timed(*args, **kwargs):
            began = time.perf_counter()
            value = method(*args, **kwargs)
            self._times.append(time.perf_counter() - began)
            return value

        return timed


class SimulatedObjective:
    """``Objective._run`` with training and scoring replaced by ``epoch_s`` of sleep per epoch."""

    def __init__(self, store, epoch_s: float, stats: Stats):
        config = SPEC.run_config({"lr": 1e-3, "batch_size": 16, "noise_dim": 8}, seed=0)
        self.generator, self.discriminator = build_models(config, _SHAPE)
        self.store, self.epoch_s, self.stats = store, epoch_s, stats
        self.recorder = Objective(SPEC, None, _EVALUATOR, store, torch.device("cpu"))

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        seed = trial_seed(SPEC, trial.number)
        config = SPEC.run_config(suggest(_TimedSuggest(trial, self.stats.suggest), SPEC), seed=seed)
        judge = EpochJudge(trial, SPEC, config.epochs)
        rng, history, epochs, verdict = random.Random(seed), [], [], None
        for epoch in range(1, config.epochs + 1):
            time.sleep(self.epoch_s)
            stats = EpochStats(epoch, rng.random(), rng.random(), self.epoch_s, 1000.0)
            scores = Scores(fid=100.0 * rng.random() / epoch, class_coverage=rng.random())
            epochs.append(stats)
            history.append(_history_row(stats, scores))
            verdict = judge(epoch, scores, dict)
            if verdict is not None:
                break
        result = TrainResult(self.generator, epochs, stop_reason=verdict, discriminator=self.discriminator)
        self.recorder._record(trial, seed, start, result, history, judge.chosen)
        upload_trial_artifacts(trial, self.store, self.generator, history)
        if verdict is not None:
            trial.set_user_attr(A.STOP_REASON_ATTR, verdict)
            if not judge.stopped_early:
                raise optuna.TrialPruned(verdict)
        chosen = judge.chosen
        upload_checkpoint(
            trial, self.store, self.generator, run_config=dataclasses.asdict(config), epoch=chosen.epoch,
            scores=chosen.scores.as_dict(), fid_validation=chosen.scores.fid, trial_number=trial.number,
            study=trial.study.study_name, dataset="mnist", dataset_sha256="0" * 64,
            discriminator=self.discriminator,
        )  # fmt: skip
        return chosen.value


def _time_tells(storage, stats: Stats, worker: int) -> None:
    """Time the storage's writes that finish a trial (Optuna's tell), and note who made each."""
    write = storage.set_trial_state_values

    def timed(trial_id, state, values=None):
        began = time.perf_counter()
        changed = write(trial_id, state, values)
        if state.is_finished():
            stats.tell.append(time.perf_counter() - began)
            if changed:
                stats.told.append((time.monotonic(), trial_id, worker))
        return changed

    storage.set_trial_state_values = timed


class Worker(threading.Thread):
    """One simulated ``genopt worker`` on the study ``name`` at ``url`` for ``seconds``."""

    def __init__(
        self, index: int, url: str, name: str, artifacts: str, seconds: float, epoch_s: float, stats
    ):
        super().__init__(name=f"worker-{index}", daemon=True)
        self.index, self.url, self.name, self.artifacts = index, url, name, artifacts
        self.seconds, self.epoch_s, self.stats = seconds, epoch_s, stats
        self.storage = None

    def run(self) -> None:
        try:
            self.storage = open_storage(self.url)
            study = optuna.load_study(study_name=self.name, storage=self.storage)
            study.sampler = make_sampler(SPEC, worker=self.index, distinct=True)
            study.pruner = make_pruner(SPEC)
            _time_tells(optuna_private.study_storage(study), self.stats, self.index)
            store = artifact_store(self.artifacts)
            objective = SimulatedObjective(store, self.epoch_s, self.stats)
            optimize(study, objective, trials=10**9, store=store, keep=SPEC.keep_checkpoints, progress=False,
                     stop=Stop(self.seconds))  # fmt: skip
        except Exception as exc:  # counted: a worker the storage refused or failed
            text = str(exc).strip()
            self.stats.errors.append(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")

    def close(self) -> None:
        """Let go of the storage's connections (or channel)."""
        if hasattr(self.storage, "engine"):
            self.storage.remove_session()
            self.storage.engine.dispose()
        elif self.storage is not None:
            self.storage.close()


# -- one run of the load test ------------------------------------------------------------------------


class Connections(threading.Thread):
    """Samples the server's client connections (``pg_stat_activity``, its own left out) twice a second."""

    def __init__(self, url: str):
        import psycopg

        super().__init__(daemon=True)
        self.connection = psycopg.connect(url, autocommit=True)
        self.peak, self.stopping = 0, threading.Event()

    def now(self) -> int:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return self.connection.execute(query).fetchone()[0]

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.peak = max(self.peak, self.now())

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        self.connection.close()
        return self.peak


def start_proxy(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``genopt proxy`` on a free port in front of ``url``: the process and its ``grpc://`` URL."""
    out = log.open("w")
    process = subprocess.Popen([GENOPT, "proxy", "--storage", url, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=out, text=True)  # fmt: skip
    first = process.stdout.readline()
    match = re.search(r"at (grpc://\S+);", first)
    if match is None:
        process.kill()
        raise RuntimeError(f"genopt proxy did not start: {first!r} {log.read_text()[-500:]}")
    threading.Thread(target=lambda: out.writelines(process.stdout), daemon=True).start()
    return process, match.group(1)


def run(url: str, *, proxied: bool, workers: int, seconds: float, epoch_s: float, work: Path):
    """``workers`` simulated workers on a new study at the database ``url``, through a genopt proxy of
    their own or not, starting trials for ``seconds``; the figures and counts of the run (trials per
    second: trials finished over the time until the last worker's last trial ended)."""
    name = f"load-{'proxy' if proxied else 'direct'}-{workers}"
    artifacts = str(work / name)
    make_study(url, name, artifacts)
    counter = Connections(url)
    baseline = counter.now()
    counter.start()
    proxy, target = start_proxy(url, work / f"{name}.log") if proxied else (None, url)
    stats = Stats()
    threads = [Worker(i, target, name, artifacts, seconds, epoch_s, stats) for i in range(workers)]
    began = time.monotonic()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # a line per trial
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wall = time.monotonic() - began  # until the last worker's last trial ended
    peak = counter.stop() - baseline
    for thread in threads:
        thread.close()
    if proxy is not None:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=60)
    counts = count(url, name, artifacts, stats)
    p95 = lambda xs: statistics.quantiles(xs, n=20)[-1] * 1000 if len(xs) >= 2 else float("nan")  # noqa: E731
    return {
        "trials_per_s": len(stats.told) / wall,
        "wall_s": wall,
        "suggest_p95_ms": p95(stats.suggest),
        "tell_p95_ms": p95(stats.tell),
        "connections": peak,
        "errors": stats.errors,
        **counts,
    }


def count(url: str, name: str, artifacts: str, stats: Stats) -> dict:
    """Trials by state, and the lost, duplicated and zombie trials (each should be 0), as the soak counts
    them (tests/soak/chaos.py), once any trial a failed worker left RUNNING has been reaped."""
    from optuna.trial import TrialState

    from genopt.study.record.records import TrialRecord
    from genopt.study.storage.database import heartbeat_settings

    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
        interval, grace = heartbeat_settings()
        time.sleep(grace + interval + 1)  # then their heartbeats are stale
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    by_id = {optuna_private.trial_id(t): t for t in trials}
    store = artifact_store(artifacts)

    def readable(artifact_id: str | None, head: bytes) -> bool:
        try:
            with store.open_reader(artifact_id) as f:
                return f.read(len(head)) == head
        except Exception:
            return False

    lost = [f"trial id {i} told finished, stored {by_id[i].state.name}" for _, i, _ in stats.told
            if not by_id[i].state.is_finished()]  # fmt: skip
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = {t.number for t in sorted(complete, key=lambda t: t.value)[: SPEC.keep_checkpoints]}
    for t in complete:
        if not readable(t.user_attrs.get(A.HISTORY_ATTR), b"epoch,"):
            lost.append(f"trial {t.number}: history missing")
        if not readable(t.user_attrs.get(A.SAMPLES_ATTR), b"\x89PNG"):
            lost.append(f"trial {t.number}: sample grid missing")
        if A.CHECKPOINT_ATTR not in t.user_attrs or (
            t.number in best and not readable(t.user_attrs[A.CHECKPOINT_ATTR], b"PK")
        ):
            lost.append(f"trial {t.number}: checkpoint missing")
    tellers = Counter(i for _, i, _ in stats.told)
    duplicates = [f"trial id {i} finished {n} times" for i, n in tellers.items() if n > 1]
    first: dict[tuple, int] = {}
    for t in trials:
        key = tuple(sorted(t.params.items()))
        if t.params and "failed_trial" not in t.system_attrs:
            if key in first:
                duplicates.append(f"trial {t.number} ran trial {first[key]}'s parameters")
            first.setdefault(key, t.number)
    parents = Counter(t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs)
    duplicates += [f"trial {p} queued again {n} times" for p, n in parents.items() if n > 1]
    zombies = [f"trial {t.number} RUNNING" for t in trials if t.state == TrialState.RUNNING]
    # Live trials found stale (a beat later than the grace period) or killed ones: failed and queued again.
    reaped = [f"trial {p} failed as stale, queued again" for p in parents]
    states = Counter(t.state.name for t in trials)
    storage.remove_session()
    storage.engine.dispose()
    return {"states": states, "lost": lost, "duplicates": duplicates, "zombies": zombies, "reaped": reaped,
            "infeasible": sum(1 for t in complete if TrialRecord.of(t).infeasible)}  # fmt: skip
