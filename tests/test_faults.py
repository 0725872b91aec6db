"""Nothing lost under faults: a full artifact store, a reader racing retention, a killed journal worker.

Real parts throughout: a size-limited tmpfs that really fills, real SQLite and journal files, the
real ``genopt`` console script in subprocesses, and a real SIGKILL.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from cli_runner import GENOPT, article_spec, genopt, pause_env, tiny_budget
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from PIL import Image

from genopt.checkpoints import load_trial_checkpoint
from genopt.ensemble.build import load_members
from genopt.study.artifacts.retention import kept_checkpoints
from genopt.study.artifacts.stores import artifact_store
from genopt.study.record.attrs import HEARTBEAT_ATTR
from genopt.study.record.facts import study_artifact_location
from genopt.study.storage.database import open_storage
from genopt.study.storage.heartbeat import HeartbeatJournalStorage

# Fixed batch size and noise size, so every trial's files are the same size give or take the PNG's
# compression, and a store sized in trials fills at a known trial.
TINY_SPEC = """
[architecture]
generator_widths = [16]
discriminator_widths = [16]
[search.params.batch_size]
choices = [64]
[search.params.noise_dim]
choices = [64]
"""
TINY = tiny_budget()
FAST_HEARTBEAT = {"GENOPT_HEARTBEAT_INTERVAL": "1", "GENOPT_HEARTBEAT_GRACE": "4"}
PAGE = 4096  # tmpfs charges whole pages

pytestmark = pytest.mark.slow  # every test here runs studies in the genopt console script


def study_of(url: str, name: str = "gan-mnist") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@contextmanager
def small_tmpfs(folder: Path, kib: int):
    """A tmpfs of ``kib`` KiB mounted on ``folder``, always unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        message = mount.stderr.strip()
        if os.geteuid() != 0 or any(
            w in message.lower() for w in ("permission denied", "not permitted", "only root")
        ):
            pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {message}")
        raise AssertionError(f"mount failed: {message}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def charged_bytes(folder: Path, *, network: bool = False) -> int:
    """What the files of ``folder`` take on a tmpfs: the study's feature network (its
    ``feature-net-<sha256>.pt``) alone, or everything else."""
    files = [f for f in folder.iterdir() if f.name.startswith("feature-net-") == network]
    return sum(math.ceil(f.stat().st_size / PAGE) * PAGE for f in files)


def test_a_full_artifact_store_fails_one_trial_stops_cleanly_and_resumes(tmp_path, tiny_spec):
    store_dir = tmp_path / "store"
    url = f"sqlite:///{tmp_path / 'full.db'}"
    command = ["study", "--spec", str(tiny_spec), "--storage", url, "--artifact-dir", str(store_dir), *TINY]
    with small_tmpfs(store_dir, kib=64 * 1024):
        first = genopt(*command, "--trials", "1")
        assert first.returncode == 0, first.stderr
        # Trial 0's files, measured: a store of the study's feature network and 2.5 trials holds trials
        # 0 and 1, and the third trial's files run out of space (its sample grid, the largest, half-way).
        per_trial, network = charged_bytes(store_dir), charged_bytes(store_dir, network=True)
        size = (network + per_trial * 5 // 2) // 1024
        subprocess.run(["mount", "-o", f"remount,size={size}k", str(store_dir)], check=True)
        full = genopt(*command, "--trials", "4")

        # The run stops at the trial that found the store full, with one line saying what to free.
        assert full.returncode == 2, full.stderr
        assert "Traceback" not in full.stderr
        errors = [line for line in full.stderr.splitlines() if not line.startswith("[I ")]
        assert len(errors) == 1, full.stderr
        assert errors[0].startswith("genopt study: error: trial 2 failed: artifact store full: ")
        assert f"bytes free in {store_dir}" in errors[0] and "free space there" in errors[0]

        # The database is consistent: two whole trials, the third FAIL with the reason, none RUNNING.
        study = study_of(url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
        failed = study.trials[2]
        assert failed.user_attrs["reason"].startswith("artifact store full: ")
        assert "\n" not in failed.user_attrs["reason"] and failed.user_attrs["reason"] in errors[0]
        assert "checkpoint" not in failed.user_attrs

        # Every file a trial names is whole, and every file in the store is named by a trial: the
        # partial checkpoint is gone and nothing points at it.
        store = artifact_store(store_dir)
        listed = set()
        for t in study.trials:
            metas = {m.artifact_id: m for m in get_all_artifact_meta(t, storage=study._storage)}
            named = {t.user_attrs[a] for a in ("samples", "history_csv", "checkpoint") if a in t.user_attrs}
            assert set(metas) == named
            listed |= named
            for artifact_id, meta in metas.items():
                with store.open_reader(artifact_id) as f:
                    if meta.mimetype == "image/png":
                        Image.open(f).verify()
                    elif meta.mimetype == "text/csv":
                        assert list(csv.DictReader(line.decode() for line in f))[0]["epoch"] == "1"
                    else:
                        _, metadata = load_trial_checkpoint(f, name=f"trial {t.number}'s checkpoint")
                        assert metadata["trial_number"] == t.number
        assert {p.name for p in store_dir.iterdir() if not p.name.startswith("feature-net-")} == listed
        assert set(kept_checkpoints(study, store)) == {0, 1}

        # Free space (here: a larger store) and rerun the same command: the study goes on.
        size = (network + 4 * per_trial) // 1024
        subprocess.run(["mount", "-o", f"remount,size={size}k", str(store_dir)], check=True)
        again = genopt(*command, "--trials", "1")
        assert again.returncode == 0, again.stderr
        states = [t.state for t in study_of(url).trials]
        assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL, TrialState.COMPLETE]


class RetentionRace(FileSystemArtifactStore):
    """The real store, with a worker's retention removing ``victim`` just after the listing.

    ``kept_checkpoints`` opens each kept checkpoint once to list it; the first open after that is
    ``load_members`` reading its first member, and the victim is removed right then.
    """

    def __init__(self, base: Path, victim: str, listed: int):
        super().__init__(base)
        self.victim, self.opens_to_list, self.opens = victim, listed, 0

    def open_reader(self, artifact_id: str):
        self.opens += 1
        if self.opens == self.opens_to_list + 1:
            self.remove(self.victim)
        return super().open_reader(artifact_id)


def test_the_ensemble_skips_a_checkpoint_removed_while_it_reads(tiny_study, tmp_path, capsys):
    # The shared study's checkpoints, copied into a store of this test's own, which the race empties.
    study = study_of(tiny_study.url, tiny_study.name)
    for t in study.trials:
        shutil.copy(study_artifact_location(study).folder / t.user_attrs["checkpoint"], tmp_path)
    kept = kept_checkpoints(study, artifact_store(tmp_path))
    ranked = sorted(kept, key=lambda n: (study.trials[n].value, n))
    assert len(ranked) == 4

    # The second best goes while the best is read: the third best takes its place.
    store = RetentionRace(tmp_path, victim=kept[ranked[1]], listed=len(kept))
    members = load_members(study, store, top_k=2)
    assert [m.trial_number for m in members] == [ranked[0], ranked[2]]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"genopt ensemble: skipped trial {ranked[1]}: checkpoint removed by a worker's retention "
        f"while reading; members are trials {ranked[0]}, {ranked[2]}"
    ]


def test_a_journal_worker_killed_mid_trial_is_retried_and_no_finished_trial_is_lost(tmp_path):
    log = tmp_path / "kill.log"
    url = f"journal:///{log}"
    store_dir = tmp_path / "store"
    study = ["study", *article_spec(), "--storage", url, "--artifact-dir", str(store_dir), *TINY]
    command = [GENOPT, *study, "--trials", "2"]
    # The test hook in genopt/study/objective.py holds trial 1, running, until the kill.
    pause = tmp_path / "trial-1-running"
    paused = pause_env(pause, trial=1)
    process = subprocess.Popen(command, env=os.environ | FAST_HEARTBEAT | paused, stdout=subprocess.DEVNULL)
    # Judges staleness as a worker would, with the shortest grace there is (2 s against beats every 1 s).
    observer = HeartbeatJournalStorage(JournalFileBackend(str(log)), interval=1, grace=2, max_retry=3)

    def running_past_the_grace() -> bool:
        trial = study_of(url).trials[1]
        return trial.state == TrialState.RUNNING and time.time() - trial.datetime_start.timestamp() > 2.5

    try:
        wait_for(pause.exists)
        wait_for(running_past_the_grace)
        # Alive and beating: not stale, though it has run past the grace period.
        live = study_of(url).trials[1]
        assert HEARTBEAT_ATTR in live.system_attrs
        assert observer._get_stale_trial_ids(study_of(url)._study_id) == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = study_of(url).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]

    time.sleep(5)  # past the grace period: the killed worker's trial is stale, and the restart retries it
    assert observer._get_stale_trial_ids(study_of(url)._study_id) == [live._trial_id]
    again = genopt(*study, "--trials", "1", env=FAST_HEARTBEAT)
    assert again.returncode == 0, again.stderr
    trials = study_of(url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].system_attrs["failed_trial"] == 1 and trials[2].params == trials[1].params
    assert trials[0].datetime_complete == before[0].datetime_complete, "a finished trial was rewritten"
    store = artifact_store(store_dir)
    for t in (trials[0], trials[2]):
        with store.open_reader(t.user_attrs["checkpoint"]) as f:
            assert load_trial_checkpoint(f, name="checkpoint")[1]["trial_number"] == t.number
