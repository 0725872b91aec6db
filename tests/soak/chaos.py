"""Nothing lost under faults: a soak of several workers on one study, SIGKILLed at random moments,
while readers run ``genopt ensemble``, ``genopt report`` and the dashboard's HTTP API against it.

Run by ``make soak`` (``make soak SOAK_ARGS=--quick``: the three storages in about 7 minutes on 2
cores); plain pytest does not collect it. For each storage, SQLite, PostgreSQL (a server of our own,
started by tests/pg_server.py exactly as the tests start it), and that PostgreSQL behind a
``genopt proxy`` (``proxy``: the workers, readers and dashboard use ``grpc://``; the proxy is
SIGKILLed halfway through the soak and started again on its port a few seconds later):

1. ``genopt study`` makes a study of tiny trials (1 epoch on 1,000 images, FID on 500 samples) and
   runs its first trial;
2. ``--workers`` ``genopt worker --threads 1`` processes run its trials; once their first trial is
   done, a killer SIGKILLs a random one at a random moment (every 15-40 s; ``--quick``: 10-15 s)
   and starts a new one in its place (a worker that exits by itself is started again too, and
   counted);
3. a reader runs, over and over, the dashboard's API (``genopt dashboard --port 0``: the study list,
   the study's detail, one trial's sample grid), ``genopt ensemble`` and ``genopt report``;
4. after ``--minutes`` and at least ``--trials`` COMPLETE trials, every worker is SIGKILLed, the
   heartbeat grace period passes, one fresh ``genopt worker --trials 1`` starts (it fails the stale
   trials and queues them again) and finishes; then everything is counted.

Heartbeats are shortened (every 2 s, stale after 10 s; ``--quick``: 1 s and 6 s) so a killed worker's
trial is found stale soon. Each kill is logged (time, pid, how long the worker ran, trials it had done);
it "landed mid-trial" when a trial RUNNING just after it (and not stale then) stopped beating within a
grace period and ended FAIL.

It prints ``name=value`` lines per storage (trials by state, kills, reader runs, the counters) and
ends with the five counters summed over the storages, each with target 0:

- ``lost_complete``: COMPLETE trials whose history CSV or sample grid is missing or unreadable, which
  name no checkpoint, or which are among the study's ``keep_checkpoints`` best (the ones retention
  never removes) and whose checkpoint is missing, unreadable or another trial's;
- ``zombie_running``: trials still RUNNING at the end, when no worker is alive and the fresh one reaped;
- ``reader_errors``: reader runs that failed other than with one clean "not yet" line (exit status 2
  and a single ``genopt ...: error:`` line saying no checkpoint is stored yet), e.g. a traceback, a
  timeout, an HTTP error or a dashboard that stopped answering;
- ``duplicate_params``: trials that ran parameters an earlier trial ran, without being its retry
  (Optuna's retry marks the new trial with the system attribute ``failed_trial``); a failed trial
  queued again more than once; a worker that exited with "Cannot tell a COMPLETE trial." (it ran a
  trial another worker had taken too);
- ``dangling_artifacts``: artifacts that a trial of any state names (in its user attributes or as
  Optuna's artifact metadata, which the dashboard lists) but the store does not hold whole, leaving
  out the checkpoints that retention removes by design (those outside the ``keep_checkpoints`` best).

``--artifact-store s3`` keeps the artifacts in S3 instead of a folder: moto's server on 127.0.0.1
(tests/s3_server.py, as the tests start it), one bucket prefix per storage.

The exit status is 1 when any counter is not 0. Every file lives in a temporary folder (``--keep DIR``
keeps the studies' databases, artifacts, logs and reader outputs there instead).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL server of the tests, one copy of its start

from cli_runner import tiny_budget  # noqa: E402
from pg_server import PostgresUnavailable, postgres_server  # noqa: E402
from s3_server import s3_server  # noqa: E402

GENOPT = str(Path(sys.executable).parent / "genopt")
STUDY = "chaos"
TINY = tiny_budget(train_limit=1000, fid_samples=500)
# Heartbeat interval and grace period in seconds (genopt's own are 5 and 15): a soak, and --quick.
BEATS, QUICK_BEATS = (2, 10), (1, 6)
# The clean one-line refusals a reader may meet while the study is young or retention races it.
NOT_YET = ("has no COMPLETE trial with a stored checkpoint", "was removed while reading it")
READER_TIMEOUT_S = 600


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Kill:
    at: float  # seconds into the soak
    pid: int
    running_after: list[int]  # trial ids RUNNING just after the kill, but not stale yet
    age: float  # seconds the worker had run
    finished: int  # trials it had finished (lines it printed)
    trials: list[int] = field(default_factory=list)  # of those, the ones that stopped beating
    mid_trial: bool | None = None  # one of them ended FAIL: the kill caught the worker in a trial


@dataclass
class ReaderRun:
    what: str
    outcome: str  # "ok", "not_yet" or "error"
    note: str = ""


@dataclass
class Result:
    storage: str
    soak_seconds: float = 0.0
    states: Counter = field(default_factory=Counter)
    kills: list[Kill] = field(default_factory=list)
    worker_starts: int = 0
    worker_exits: list[str] = field(default_factory=list)  # workers that ended without being killed
    reader_runs: list[ReaderRun] = field(default_factory=list)
    reader_skips: int = 0  # ensemble runs that skipped a member removed by retention while reading
    retried: int = 0
    redrawn: int = 0  # trials whose sampler's draw another trial had (genopt.study.search.DistinctSampler)
    fresh_worker_exit: int | None = None
    proxy_restarts: int = 0  # the proxy run: times the proxy was SIGKILLed and started again
    lost_complete: list[str] = field(default_factory=list)
    zombies: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)

    @property
    def reader_errors(self) -> list[ReaderRun]:
        return [r for r in self.reader_runs if r.outcome == "error"]

    def counters(self) -> dict[str, int]:
        return {
            "lost_complete": len(self.lost_complete),
            "zombie_running": len(self.zombies),
            "reader_errors": len(self.reader_errors),
            "duplicate_params": len(self.duplicates),
            "dangling_artifacts": len(self.dangling),
        }

    def lines(self) -> list[str]:
        states = {s: self.states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
        outcomes = Counter(r.outcome for r in self.reader_runs)
        return [
            f"storage={self.storage}",
            f"soak_minutes={self.soak_seconds / 60:.1f}",
            f"trials_total={sum(self.states.values())}",
            *(f"trials_{s.lower()}={n}" for s, n in states.items()),
            f"trials_retried={self.retried}",
            f"draws_redrawn={self.redrawn}",
            f"kills={len(self.kills)}",
            f"kills_mid_trial={sum(1 for k in self.kills if k.mid_trial)}",
            f"worker_starts={self.worker_starts}",
            f"worker_exits_unkilled={len(self.worker_exits)}",
            f"fresh_worker_exit={self.fresh_worker_exit}",
            *([f"proxy_restarts={self.proxy_restarts}"] if self.storage == "proxy" else []),
            f"reader_runs={len(self.reader_runs)}",
            f"reader_not_yet={outcomes.get('not_yet', 0)}",
            f"reader_skipped_members={self.reader_skips}",
            *(f"{k}={v}" for k, v in self.counters().items()),
        ]


# -- workers -----------------------------------------------------------------------------------------


class Workers:
    """``genopt worker`` processes in numbered slots, each logging to files of its own."""

    def __init__(self, url: str, env: dict, logs: Path, threads: int, result: Result):
        self.url, self.env, self.logs, self.threads, self.result = url, env, logs, threads, result
        self.slots: list[subprocess.Popen | None] = []
        self.files: dict[int, Path] = {}
        self.started: dict[int, float] = {}

    def command(self, trials: int) -> list[str]:
        return [GENOPT, "worker", "--study", STUDY, "--storage", self.url, "--trials", str(trials),
                "--threads", str(self.threads), "--no-progress"]  # fmt: skip

    def start(self, slot: int) -> None:
        n = self.result.worker_starts
        out, err = self.logs / f"worker{n}.out", self.logs / f"worker{n}.err"
        with open(out, "w") as o, open(err, "w") as e:
            process = subprocess.Popen(
                self.command(100_000), cwd=ROOT, env=self.env, stdout=o, stderr=e, start_new_session=True
            )
        self.result.worker_starts += 1
        self.files[process.pid] = err
        self.started[process.pid] = time.monotonic()
        if slot == len(self.slots):
            self.slots.append(process)
        else:
            self.slots[slot] = process

    def restart_exited(self) -> None:
        """Start again every worker that ended by itself (its exit is recorded with its last line)."""
        for slot, process in enumerate(self.slots):
            if process is not None and process.poll() is not None:
                lines = self.files[process.pid].read_text(errors="replace").strip().splitlines()
                last = lines[-1] if lines else ""
                self.result.worker_exits.append(f"pid {process.pid} exit {process.returncode}: {last}")
                log(f"worker pid {process.pid} exited by itself with {process.returncode}: {last}")
                self.start(slot)

    def kill(self, slot: int) -> tuple[int, float, int]:
        """SIGKILL the worker in ``slot``: its pid, seconds it ran, trials it had finished."""
        process = self.slots[slot]
        process.send_signal(signal.SIGKILL)
        process.wait()
        out = self.files[process.pid].with_suffix(".out").read_text(errors="replace")
        finished = sum(1 for line in out.splitlines() if line.startswith("trial "))
        return process.pid, time.monotonic() - self.started[process.pid], finished

    def kill_all(self) -> None:
        for process in self.slots:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.slots:
            if process is not None:
                process.wait()


# -- the proxy run's proxy ---------------------------------------------------------------------------


class ProxyServer:
    """``genopt proxy`` in front of the database ``db``: started on a free port, then SIGKILLed and
    started again on that port; its lines go to files of its own."""

    def __init__(self, db: str, env: dict, logs: Path):
        self.db, self.env, self.logs, self.port, self.process, self.starts = db, env, logs, 0, None, 0

    def start(self) -> str:
        self.starts += 1
        out = open(self.logs / f"proxy{self.starts}.out", "w")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(
            [GENOPT, "proxy", "--storage", self.db, "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=out, text=True, start_new_session=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        match = re.search(r"at grpc://127\.0\.0\.1:(\d+);", line)
        if not match:
            raise RuntimeError(f"genopt proxy printed no address: {line!r}")
        self.port = int(match.group(1))
        threading.Thread(target=lambda: out.writelines(self.process.stdout), daemon=True).start()
        return f"grpc://127.0.0.1:{self.port}"

    def kill_and_restart(self, pause: float) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        time.sleep(pause)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


# -- the study as the storage holds it ---------------------------------------------------------------


class Inspector:
    """Reads the study straight from its storage, as a worker would see it (no trial is changed)."""

    def __init__(self, url: str):
        from genopt.study.storage.database import open_storage

        self.url = url
        self.storage = open_storage(url)
        self.study_id = self.storage.get_study_id_from_name(STUDY)

    def trials(self):
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def running_ids(self) -> list[int]:
        from optuna.trial import TrialState

        return [t._trial_id for t in self.trials() if t.state == TrialState.RUNNING]

    def complete(self) -> int:
        from optuna.trial import TrialState

        return sum(1 for t in self.trials() if t.state == TrialState.COMPLETE)

    def has_heartbeat(self, trial_id: int) -> bool:
        from optuna.storages._rdb import models

        session = self.storage.scoped_session()
        try:
            return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None
        finally:
            self.storage.scoped_session.remove()

    def stale_ids(self) -> set[int]:
        return set(self.storage._get_stale_trial_ids(self.study_id))

    def stopped_beating(self, kill: Kill) -> list[int]:
        """The trials running at the kill that stopped beating since: stale now, or already FAIL."""
        from optuna.trial import TrialState

        stale = self.stale_ids()
        stopped = []
        for trial_id in kill.running_after:
            trial = self.storage.get_trial(trial_id)
            if trial.state == TrialState.FAIL or trial_id in stale:
                stopped.append(trial_id)
            elif trial.state == TrialState.RUNNING and not self.has_heartbeat(trial_id):
                stopped.append(trial_id)  # killed before its first beat
        return stopped


# -- readers -----------------------------------------------------------------------------------------


def judge(command: str, result: subprocess.CompletedProcess) -> ReaderRun:
    """ok (exit 0, no traceback), not_yet (exit 2, one clean "not yet" line) or error."""
    stderr = result.stderr or ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    tail = lines[-1] if lines else ""
    if "Traceback" in stderr:
        return ReaderRun(command, "error", f"exit {result.returncode}, traceback: {tail}")
    if result.returncode == 0:
        return ReaderRun(command, "ok")
    clean = (
        result.returncode == 2
        and len(lines) == 1
        and tail.startswith(f"genopt {command}: error:")
        and any(reason in tail for reason in NOT_YET)
    )
    return ReaderRun(command, "not_yet" if clean else "error", f"exit {result.returncode}: {tail}")


class Dashboard:
    """``genopt dashboard --port 0`` as a user starts it; the base URL it printed."""

    def __init__(self, url: str, artifacts: str, env: dict, logs: Path):
        self.args = [GENOPT, "dashboard", "--storage", url, "--port", "0", "--artifact-store", artifacts]
        self.env, self.logs, self.process, self.base = env, logs, None, None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        err = open(self.logs / f"dashboard{self.starts}.err", "w")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=err, text=True,
            start_new_session=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard", line)
        if not match:
            raise RuntimeError(f"genopt dashboard printed no URL: {line!r}")
        self.base = f"http://127.0.0.1:{match.group(1)}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=120) as response:
            return response.read()

    def round(self) -> ReaderRun:
        """The study list, the study's detail, and the sample grid of its newest COMPLETE trial."""
        try:
            studies = json.loads(self.get("/api/studies"))["study_summaries"]
            (study_id,) = [s["study_id"] for s in studies if s["study_name"] == STUDY]
            detail = json.loads(self.get(f"/api/studies/{study_id}?after=0"))
            complete = [t for t in detail["trials"] if t["state"] == "Complete"]
            if complete:
                trial = complete[-1]
                grids = [a for a in trial["artifacts"] if a["mimetype"] == "image/png"]
                if not grids:
                    return ReaderRun("dashboard", "error", f"trial {trial['number']} lists no sample grid")
                png = self.get(f"/artifacts/{study_id}/{trial['trial_id']}/{grids[0]['artifact_id']}")
                if not png.startswith(b"\x89PNG"):
                    return ReaderRun("dashboard", "error", f"trial {trial['number']}'s grid is no PNG")
            return ReaderRun("dashboard", "ok")
        except urllib.error.HTTPError as exc:
            return ReaderRun("dashboard", "error", f"HTTP {exc.code} on {exc.url}")
        except Exception as exc:  # refused, reset, timed out, bad JSON: all errors of the reader
            alive = self.process.poll() is None
            if not alive:
                log("the dashboard stopped; starting it again")
                self.start()
            return ReaderRun("dashboard", "error", f"{type(exc).__name__}: {exc} (alive: {alive})")


class Reader(threading.Thread):
    """Loops over the dashboard's API, ``genopt ensemble`` and ``genopt report`` until told to stop."""

    def __init__(self, url: str, work: Path, dashboard: Dashboard, env: dict, top_k: int, result: Result):
        super().__init__(daemon=True)
        self.url, self.work, self.dashboard, self.env = url, work, dashboard, env
        self.top_k, self.result = top_k, result
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None

    def cli(self, command: str, *args: str) -> ReaderRun | None:
        words = [GENOPT, command, "--study", STUDY, "--storage", self.url, *args]
        self.process = subprocess.Popen(
            words, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            stdout, stderr = self.process.communicate(timeout=READER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return ReaderRun(command, "error", f"no answer in {READER_TIMEOUT_S} s")
        if self.stopping.is_set():
            return None  # ended by the end of the soak, not by itself: not counted
        result = subprocess.CompletedProcess(words, self.process.returncode, stdout, stderr)
        if "removed by a worker's retention" in stderr:
            self.result.reader_skips += 1
        return judge(command, result)

    def run(self) -> None:
        export = self.work / "export.pt"
        steps = (
            self.dashboard.round,
            lambda: self.cli("ensemble", "--top-k", str(self.top_k), "--out", str(export)),
            self.dashboard.round,
            lambda: self.cli("report", "--out", str(self.work / "report"), "--export", str(export)),
        )
        while not self.stopping.is_set():
            for step in steps:
                if self.stopping.is_set():
                    return
                run = step()
                if run is None or self.stopping.is_set():
                    return
                self.result.reader_runs.append(run)
                if run.outcome != "ok":
                    log(f"reader {run.what}: {run.outcome}: {run.note}")

    def stop(self) -> None:
        self.stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.join(timeout=180)


# -- the counts --------------------------------------------------------------------------------------


def count(url: str, artifacts: str, result: Result, inspector: Inspector) -> None:
    """States, retries, and the five counters, from the storage and the artifact store."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from genopt.spec import StudySpec
    from genopt.study.artifacts.stores import artifact_store
    from genopt.study.record import attrs as trial_attrs
    from genopt.study.record.attrs import DRAWN_ATTR, SPEC_ATTR
    from genopt.study.record.records import TrialRecord

    trials = list(inspector.trials())
    result.states = Counter(t.state.name for t in trials)
    result.retried = sum(1 for t in trials if "failed_trial" in t.system_attrs)
    result.redrawn = sum(
        1
        for t in trials
        if t.params and json.loads(t.system_attrs.get(DRAWN_ATTR, "null")) not in (None, t.params)
    )
    store = artifact_store(artifacts)

    def readable(artifact_id: str | None) -> bytes | None:
        if artifact_id is None:
            return None
        try:
            with store.open_reader(artifact_id) as f:
                return f.read()
        except Exception:
            return None

    spec_attrs = inspector.storage.get_study_user_attrs(inspector.study_id)[SPEC_ATTR]
    keep = StudySpec.from_dict(spec_attrs).keep_checkpoints
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    ranked = sorted((t for t in complete if TrialRecord.of(t).feasible), key=lambda t: (t.value, t.number))
    kept = {t.number for t in ranked[:keep]}
    for t in complete:
        history = readable(t.user_attrs.get(trial_attrs.HISTORY_ATTR))
        if history is None or not history.startswith(b"epoch,"):
            result.lost_complete.append(f"trial {t.number}: history CSV missing or unreadable")
        grid = readable(t.user_attrs.get(trial_attrs.SAMPLES_ATTR))
        if grid is None or not grid.startswith(b"\x89PNG"):
            result.lost_complete.append(f"trial {t.number}: sample grid missing or unreadable")
        if TrialRecord.of(t).feasible and trial_attrs.CHECKPOINT_ATTR not in t.user_attrs:
            result.lost_complete.append(f"trial {t.number}: no checkpoint was ever named")
        if t.number in kept:
            checkpoint = readable(t.user_attrs.get(trial_attrs.CHECKPOINT_ATTR))
            if checkpoint is None:
                result.lost_complete.append(f"trial {t.number}: among the {keep} best, checkpoint gone")
                continue
            number = torch.load(io.BytesIO(checkpoint), weights_only=True).get("trial_number")
            if number != t.number:
                result.lost_complete.append(f"trial {t.number}: its checkpoint is trial {number}'s")

    removable = {t.user_attrs.get(trial_attrs.CHECKPOINT_ATTR) for t in trials if t.number not in kept}
    for t in trials:
        named = {m.artifact_id for m in optuna.artifacts.get_all_artifact_meta(t, storage=inspector.storage)}
        named |= {t.user_attrs[a] for a in trial_attrs.ARTIFACT_ATTRS if a in t.user_attrs}
        for artifact_id in sorted(named - removable):
            if readable(artifact_id) is None:
                result.dangling.append(
                    f"trial {t.number} ({t.state.name}) names {artifact_id}, not in the store"
                )

    for t in trials:
        if t.state == TrialState.RUNNING:
            beat = "beat" if inspector.has_heartbeat(t._trial_id) else "never beat"
            result.zombies.append(f"trial {t.number} RUNNING since {t.datetime_start} ({beat})")

    first: dict[tuple, int] = {}
    for t in trials:
        if not t.params or "failed_trial" in t.system_attrs:
            continue
        key = tuple(sorted(t.params.items()))
        if key in first:
            result.duplicates.append(f"trial {t.number} ran trial {first[key]}'s parameters {dict(key)}")
        else:
            first[key] = t.number
    # One failure is retried once: a trial queued again twice ran its parameters twice.
    parents = Counter(
        t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")
    )
    for parent, n in parents.items():
        result.duplicates += [f"trial {parent} was queued again {n} times"] * (n - 1)
    # Two workers that took one queued trial both run it; the one that tells second finds it finished
    # and exits with Optuna's "Cannot tell a COMPLETE trial." (as does one whose live trial was failed).
    result.duplicates += [f"worker {line}" for line in result.worker_exits if "Cannot tell a" in line]
    # A kill caught a worker in a trial when a trial that stopped beating after it ended FAIL.
    failed = {t._trial_id for t in trials if t.state == TrialState.FAIL}
    for kill in result.kills:
        kill.mid_trial = any(i in failed for i in kill.trials)


# -- one soak ----------------------------------------------------------------------------------------


def soak(
    storage: str, url: str, work: Path, args, rng: random.Random, proxy: ProxyServer | None = None
) -> Result:
    """One soak on the storage at ``url``; with ``proxy``, ``url`` is the proxy's, which is SIGKILLed and
    started again halfway through, and the counts read its database directly."""
    result = Result(storage)
    artifacts = f"{args.s3_url}/{storage}" if args.s3_url else str(work / "artifacts")
    logs, reader_dir = work / "logs", work / "reader"
    for folder in (logs, reader_dir):
        folder.mkdir(parents=True, exist_ok=True)
    interval, grace = args.beats
    heartbeat = {"GENOPT_HEARTBEAT_INTERVAL": str(interval), "GENOPT_HEARTBEAT_GRACE": str(grace)}
    # By then a killed worker's trial has missed its beats for longer than the grace period.
    check_after = grace + 2 * interval + 1
    env = os.environ | heartbeat | {"PYTHONUNBUFFERED": "1"}  # a killed worker's lines are in its log
    reader_env = env | {"OMP_NUM_THREADS": "1"}  # the reader's torch on one thread too

    log(f"{storage}: genopt study makes the study and runs its first trial")
    made = subprocess.run(
        [GENOPT, "study", "--model", "gan", "--study", STUDY, "--storage", url, "--artifact-store",
         artifacts, "--trials", "1", "--seed", str(args.seed), *TINY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if made.returncode != 0:
        raise SystemExit(f"genopt study failed ({made.returncode}): {made.stderr.strip()[-2000:]}")
    inspector = Inspector(proxy.db if proxy is not None else url)
    dashboard = Dashboard(url, artifacts, reader_env, logs)
    workers = Workers(url, env, logs, args.threads or 1, result)
    reader = Reader(url, reader_dir, dashboard, reader_env, args.top_k, result)
    lo, hi = args.kill_every
    try:
        dashboard.start()
        for slot in range(args.workers):
            workers.start(slot)
        reader.start()
        start = time.monotonic()
        deadline, cap = start + args.minutes * 60, start + max(args.minutes * 3, args.minutes + 10) * 60
        # The killer's clock starts once the workers are past their start-up (a trial of theirs is done).
        initial, next_kill, pending = inspector.complete(), None, None
        proxy_kill = start + args.minutes * 30 if proxy is not None else None  # halfway
        attributed: set[int] = set()  # trial ids found to have stopped beating after a kill
        last_report = start
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            workers.restart_exited()
            if next_kill is None and inspector.complete() > initial:
                next_kill = now + rng.uniform(lo, hi)
            if pending is not None and now >= pending.at + start + check_after:
                pending.trials = [i for i in inspector.stopped_beating(pending) if i not in attributed]
                attributed.update(pending.trials)
                log(f"  kill of pid {pending.pid}: trial ids that stopped beating since: {pending.trials}")
                pending = None
            if proxy_kill is not None and now >= proxy_kill:
                log(f"{storage}: SIGKILL the proxy (pid {proxy.process.pid}); start it again in 3 s")
                proxy.kill_and_restart(pause=3.0)
                result.proxy_restarts += 1
                log(f"{storage}: the proxy is back on port {proxy.port} (pid {proxy.process.pid})")
                proxy_kill = None
            if now - last_report >= 60:
                last_report = now
                done = inspector.complete()
                log(f"{storage}: {now - start:.0f} s, {done} complete, {len(result.kills)} kills")
            if now >= deadline and pending is None:
                done = inspector.complete()
                if done >= args.trials or now >= cap:
                    if done < args.trials:
                        log(f"only {done} complete trials after {(now - start) / 60:.0f} minutes; stopping")
                    break
            # No kill so close to the end that its check would be cut off, nor before the last is judged.
            if (
                pending is None
                and next_kill is not None
                and now >= next_kill
                and now + check_after < deadline
            ):
                slot = rng.randrange(len(workers.slots))
                at = time.monotonic() - start
                pid, age, finished = workers.kill(slot)
                # After the kill (the dead worker starts nothing more), leaving out trials already
                # stale: those an earlier kill left that no worker has failed yet.
                stale = inspector.stale_ids() | attributed
                running = [i for i in inspector.running_ids() if i not in stale]
                pending = Kill(round(at, 1), pid, running, round(age, 1), finished)
                result.kills.append(pending)
                log(
                    f"kill {len(result.kills)}: SIGKILL worker pid {pid} (slot {slot}) at {pending.at:.0f} s "
                    f"after {age:.0f} s and {finished} finished trials"
                )
                workers.start(slot)
                next_kill = now + rng.uniform(lo, hi)
        result.soak_seconds = time.monotonic() - start
        log(f"{storage}: soak over after {result.soak_seconds:.0f} s; stopping the reader and every worker")
        reader.stop()
        workers.kill_all()
        log(f"waiting {check_after} s (past the {grace} s grace); then a fresh worker reaps stale trials")
        time.sleep(check_after)
        fresh = subprocess.run(
            workers.command(1), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        result.fresh_worker_exit = fresh.returncode
        if fresh.returncode != 0:
            log(f"the fresh worker exited {fresh.returncode}: {fresh.stderr.strip()[-1000:]}")
        count(inspector.url, artifacts, result, inspector)
    finally:
        reader.stopping.set()
        workers.kill_all()
        dashboard.stop()
        inspector.storage.remove_session()
        inspector.storage.engine.dispose()
    for n, kill in enumerate(result.kills, 1):
        log(
            f"kill {n}: at {kill.at:.0f} s, pid {kill.pid} (up {kill.age:.0f} s, {kill.finished} done) "
            f"mid-trial: {kill.mid_trial}"
        )
    for note in result.lost_complete + result.zombies + result.duplicates + result.dangling:
        log(f"  {note}")
    for run in result.reader_errors:
        log(f"  reader error: {run.what}: {run.note}")
    return result


def run_storage(storage: str, root: Path, args, rng: random.Random) -> Result | None:
    work = root / storage
    work.mkdir(parents=True, exist_ok=True)
    if storage == "sqlite":
        return soak(storage, f"sqlite:///{work / 'chaos.db'}", work, args, rng)
    try:
        with postgres_server() as url:
            if storage == "postgresql":
                return soak(storage, url, work, args, rng)
            interval, grace = args.beats  # the proxy's heartbeat settings are its workers'
            env = os.environ | {
                "GENOPT_HEARTBEAT_INTERVAL": str(interval),
                "GENOPT_HEARTBEAT_GRACE": str(grace),
            }
            (work / "logs").mkdir(parents=True, exist_ok=True)
            proxy = ProxyServer(url, env, work / "logs")
            try:
                return soak(storage, proxy.start(), work, args, rng, proxy=proxy)
            finally:
                proxy.stop()
    except PostgresUnavailable as exc:
        log(f"{storage}: skipped: {exc}")
        return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="the three storages in about 7 minutes on 2 cores (1.3-minute soaks)",
    )
    p.add_argument("--threads", type=int, help="torch threads of each worker (default 1)")
    p.add_argument("--md", type=Path, help="write the result table here (markdown)")
    p.add_argument(
        "--storage",
        choices=("sqlite", "postgresql", "proxy", "all"),
        default="all",
        help="proxy: the PostgreSQL server behind a genopt proxy, killed and restarted once (default: all)",
    )
    p.add_argument("--minutes", type=float, help="soak length per storage (default 30; --quick 1.3)")
    p.add_argument(
        "--trials", type=int, help="COMPLETE trials to reach before stopping (default 60; --quick 6)"
    )
    p.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    p.add_argument(
        "--seed", type=int, default=0, help="the killer's choices and the study's seed (default 0)"
    )
    p.add_argument(
        "--keep", type=Path, help="keep databases, artifacts, logs and reader outputs in this folder"
    )
    p.add_argument(
        "--artifact-store",
        choices=("folder", "s3"),
        default="folder",
        help="where trials keep their files: a folder, or S3 (moto's server on 127.0.0.1)",
    )
    args = p.parse_args()
    args.minutes = args.minutes if args.minutes is not None else (1.3 if args.quick else 30)
    args.trials = args.trials if args.trials is not None else (6 if args.quick else 60)
    args.beats = QUICK_BEATS if args.quick else BEATS
    args.kill_every = (10, 15) if args.quick else (15, 40)
    args.top_k = 2 if args.quick else 5
    rng = random.Random(args.seed)
    storages = ("sqlite", "postgresql", "proxy") if args.storage == "all" else (args.storage,)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        args.s3_url = None
        if args.artifact_store == "s3":
            s3 = stack.enter_context(s3_server(bucket="genopt-chaos"))
            os.environ.update(s3.env)  # the workers, readers and the counts here reach it alike
            args.s3_url = f"s3://{s3.bucket}"
        if args.keep is not None:
            root = args.keep.resolve()
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="genopt-chaos-")))
        results = [r for r in (run_storage(s, root, args, rng) for s in storages) if r is not None]
    wall = time.monotonic() - began

    for r in results:
        print("\n".join(r.lines()), flush=True)
    totals = Counter()
    for r in results:
        totals.update(r.counters())
    head = ["storage", "soak min", "complete / pruned / fail / running / waiting", "kills (mid-trial)",
            "reader runs", "lost", "zombie", "reader err", "dup", "dangling"]  # fmt: skip
    rows = [
        [r.storage, f"{r.soak_seconds / 60:.1f}",
         " / ".join(str(r.states.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")),
         f"{len(r.kills)} ({sum(1 for k in r.kills if k.mid_trial)})", len(r.reader_runs),
         *r.counters().values()]
        for r in results
    ]  # fmt: skip
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "## Chaos soak: workers SIGKILLed under readers",
        "",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; date {now}",
        f"- Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        f"{args.workers} workers (--threads {args.threads or 1}), artifacts in "
        f"{'S3' if args.s3_url else 'a folder'}, kills every {args.kill_every[0]}-"
        f"{args.kill_every[1]} s, heartbeat {args.beats[0]} s, grace {args.beats[1]} s; "
        f"wall {wall / 60:.1f} minutes.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]
    headlines = [f"{k}={totals.get(k, 0)}" for k in Result(storage="").counters()]
    text = "\n".join([*lines, "", *(f"Headline: `{h}`" for h in headlines)]) + "\n"
    print(text)
    if args.md is not None:
        args.md.write_text(text)
    print("\n".join(headlines), flush=True)
    return 1 if any(totals.values()) or not results else 0


if __name__ == "__main__":
    sys.exit(main())
