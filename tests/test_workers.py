"""Many workers, one study: local processes on SQLite, a real PostgreSQL server, SIGKILL and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import optuna
import pytest
import torch
from cli_runner import GENOPT, article_spec, genopt, pause_env, tiny_budget
from optuna.trial import TrialState

from genopt.study.artifacts.stores import artifact_store
from genopt.study.storage.database import open_storage
from genopt.study.workers import shares

TINY = [*article_spec(), *tiny_budget()]
# Short heartbeats, so a killed worker's trial is found stale within seconds.
FAST_HEARTBEAT = {"GENOPT_HEARTBEAT_INTERVAL": "1", "GENOPT_HEARTBEAT_GRACE": "4"}


def trials_of(url: str, name: str = "gan-mnist") -> list:
    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def running(url: str) -> list:
    try:
        return [t for t in trials_of(url) if t.state == TrialState.RUNNING]
    except Exception:  # the database or the study is not made yet
        return []


def test_trials_are_shared_not_multiplied():
    assert shares(12, 3) == [4, 4, 4]
    assert shares(10, 3) == [4, 3, 3]
    assert shares(2, 3) == [1, 1]


@pytest.mark.slow
def test_three_local_workers_on_one_sqlite_study_complete_all_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    result = genopt("study", "--storage", url, "--trials", "6", "--workers", "3", *TINY)
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr
    assert "study gan-mnist: 6 trials (6 complete)" in result.stdout
    trials = trials_of(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6, "two workers drew the same parameters"


@pytest.mark.slow
def test_a_worker_joins_an_existing_study_with_its_spec(tmp_path):
    url = f"journal:///{tmp_path / 'journal.log'}"
    made = genopt("study", "--storage", url, "--trials", "1", *TINY)
    assert made.returncode == 0, made.stderr
    joined = genopt("worker", "--study", "gan-mnist", "--storage", url, "--trials", "1", "--no-progress")
    assert joined.returncode == 0, joined.stderr
    trials = trials_of(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # The worker had no spec file: it trained with the study's own budgets.
    assert all(t.user_attrs["epochs"] == 1 for t in trials)


@pytest.mark.slow
def test_two_workers_on_a_real_postgresql_server_complete_their_trials(postgres_url):
    result = genopt("study", "--storage", postgres_url, "--trials", "4", "--workers", "2", *TINY)
    assert result.returncode == 0, result.stderr
    trials = trials_of(postgres_url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_retried_and_no_finished_trial_is_lost(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    budget = TINY
    # Trial 1 waits at the pause hook (running, beating) until it is killed: a kill mid-trial on any machine.
    pause = tmp_path / "pause"
    paused = pause_env(pause, trial=1)
    command = [GENOPT, "study", "--storage", url, "--trials", "3", *budget]
    log = tmp_path / "log"  # stdout to a file, as a scheduler keeps it: block-buffered unless flushed
    with log.open("w") as out:
        process = subprocess.Popen(command, env=os.environ | FAST_HEARTBEAT | paused, stdout=out)
    try:
        wait_for(pause.exists, timeout=300)
        wait_for(lambda: bool(running(url)))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = trials_of(url)
    killed = before[-1].number
    assert [t.state for t in before] == [TrialState.COMPLETE] * killed + [TrialState.RUNNING]
    # A SIGKILL flushes nothing: each finished trial's line was in the log as soon as it finished.
    assert re.findall(r"^trial +(\d+) +complete", log.read_text(), flags=re.M) == [
        str(n) for n in range(killed)
    ]

    time.sleep(5)  # past the grace period: the restarted study finds the trial stale at once
    again = genopt("study", "--storage", url, "--trials", str(3 - killed), *budget, env=FAST_HEARTBEAT)
    assert again.returncode == 0, again.stderr
    trials = trials_of(url)
    assert trials[killed].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[killed].params
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert all(trials[n].state == TrialState.COMPLETE for n in range(killed)), "a finished trial was lost"
    store = artifact_store()
    for t in complete:
        with store.open_reader(t.user_attrs["checkpoint"]) as f:
            assert torch.load(f, weights_only=True)["trial_number"] == t.number


@pytest.mark.slow
def test_sigterm_stops_the_console_script_which_keeps_the_running_trial_and_exits_75(tmp_path):
    url = f"sqlite:///{tmp_path / 'sigterm.db'}"
    # Trial 1 waits after its first epoch until the signal: a scheduler's stop mid-trial on any machine.
    pause = tmp_path / "pause"
    paused = pause_env(pause, trial=1, epoch=1)
    command = [GENOPT, "study", "--storage", url, "--trials", "3", *TINY, "--epochs", "2"]
    process = subprocess.Popen(
        command, env=os.environ | paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(pause.exists, timeout=300)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a no-op once it has exited; never leave a study running behind a failure
    assert process.returncode == 75, stderr
    assert "Traceback" not in stdout + stderr
    assert [line for line in stderr.splitlines() if not line.startswith("[I ")] == [
        "genopt study: stopped by SIGTERM: trial 1 kept its best epoch so far (1); "
        "no trial started after it; rerun the same command to continue"
    ]
    first, kept = trials_of(url)  # no trial started after the signal
    assert first.state == TrialState.COMPLETE
    assert kept.state == TrialState.COMPLETE and kept.user_attrs["best_epoch"] == 1
    assert kept.user_attrs["stop_reason"] == "stopped by SIGTERM during epoch 2"
    with artifact_store().open_reader(kept.user_attrs["checkpoint"]) as f:
        assert torch.load(f, weights_only=True)["epoch"] == 1
