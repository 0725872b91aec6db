"""A study that fits a person's time: a wall-clock budget, a stop that keeps the running trial (the
budget, a first Ctrl-C or SIGTERM), a second Ctrl-C that aborts, and what the bar and the last lines
say.

In this process where they can be (``run_study``, or the CLI's ``main`` as the console script runs
it), with the objective's pause hook holding trial 0 after its first scored epoch, so a budget or a
signal lands mid-trial without a long trial. ``--workers`` and SIGTERM to the console script run
real processes (tests/test_workers.py has the second)."""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from cli_runner import article_spec, genopt, pause_env, tiny_budget
from optuna.trial import TrialState
from tiny import tiny_config, tiny_spec

from genopt.checkpoints import load_trial_checkpoint
from genopt.cli import build_parser
from genopt.study.artifacts.retention import kept_checkpoints
from genopt.study.artifacts.stores import artifact_store
from genopt.study.progress import TrialProgress, next_steps
from genopt.study.stop import Stop, format_duration, parse_duration
from genopt.study.storage.database import open_storage
from genopt.train import train

# Two epochs, so that a stop in the second finds the first scored.
TWO_EPOCHS = [*article_spec(), *tiny_budget(), "--epochs", "2"]


def pause_trial(monkeypatch, tmp_path: Path, *, trial: int = 0, epoch: int = 1) -> Path:
    """Trial ``trial`` waits once ``epoch`` is scored, while the returned file exists and no stop is asked."""
    pause = tmp_path / "pause"
    for name, value in pause_env(pause, trial, epoch).items():
        monkeypatch.setenv(name, value)
    return pause


def once_paused(pause: Path, action) -> threading.Thread:
    """Run ``action`` in a thread as soon as the paused trial has made ``pause``."""

    def wait() -> None:
        deadline = time.monotonic() + 300
        while not pause.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        action()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def main_here(args: list[str], capfd) -> tuple[int, str, str]:
    """``genopt ARGS...`` in this process: exit status, stdout, stderr."""
    from genopt.cli import main

    capfd.readouterr()
    code = main(args)
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture
def ctrl_c():
    """Ctrl-C as a terminal gives it: a suite started in the background inherits SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="gan-mnist", storage=open_storage(url)).trials


def test_durations_read_as_a_person_writes_them():
    assert [parse_duration(t) for t in ("90s", "30m", "2h", "1h30m")] == [90, 1800, 7200, 5400]
    assert [format_duration(s) for s in (90, 1800, 5400, 0.2)] == ["1m30s", "30m", "1h30m", "1s"]
    for bad in ("-5m", "abc", "0", "0m", "5", "1.5h", "30m2h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_training_stops_between_two_steps_when_asked(mnist):
    asked = []

    def stop() -> str | None:
        asked.append(len(asked))
        return "stopped by SIGTERM" if len(asked) > 3 else None

    result = train(tiny_config(epochs=2), mnist, stop=stop)
    # 8 steps an epoch: the fourth question stops the first epoch, which is neither kept nor scored
    assert result.stopped and result.stop_reason == "stopped by SIGTERM during epoch 1"
    assert result.epochs == [] and len(asked) == 4


def test_the_bar_shows_the_running_trial_and_the_time_left(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    progress = TrialProgress(3, bar=False, stop=Stop(1800))
    progress.running(3, 0, 15, None)
    assert progress.postfix() == "trial 3 epoch 0/15 | budget 30m left"
    now[0] += 4 * 60  # four epochs of a minute each, scoring included
    progress.running(3, 4, 15, 45.123)
    assert progress.postfix() == "trial 3 epoch 4/15, best 45.12, ~11m left | budget 26m left"
    now[0] += 20 * 60  # the trial would need more than the budget leaves: it stops with the budget
    assert progress.postfix() == "trial 3 epoch 4/15, best 45.12, ~6m00s left | budget 6m00s left"


def test_the_last_lines_name_the_commands_to_browse_and_export_the_study():
    lines = next_steps("cgan-mnist", "sqlite:///my db.db", program=".venv/bin/genopt").splitlines()
    assert lines == [
        "next:",
        "  browse it             .venv/bin/genopt dashboard --storage 'sqlite:///my db.db'",
        "  export its best       .venv/bin/genopt ensemble --study cgan-mnist --storage 'sqlite:///my db.db'",
    ]
    for line in lines[1:]:  # each parses as pasted
        words = shlex.split(line)
        build_parser().parse_args(words[words.index(".venv/bin/genopt") + 1 :])


@pytest.mark.slow
def test_the_budget_stops_the_running_trial_which_keeps_its_best_epoch(tmp_path, monkeypatch):
    from genopt.study.runner import run_study

    pause = pause_trial(monkeypatch, tmp_path)
    stop = Stop(3600)
    spent = once_paused(pause, lambda: setattr(stop, "deadline", time.monotonic()))  # the clock, run out
    result = run_study(
        tiny_spec(max_epochs=2, fid_samples=200),
        trials=3,
        study_name="budget",
        storage_url=f"sqlite:///{tmp_path / 'budget.db'}",
        progress=False,
        artifact_store=tmp_path / "artifacts",
        stop=stop,
    )
    spent.join()
    (trial,) = result.study.trials  # no trial started after the budget
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["stop_reason"] == "stopped by the time budget (1h) during epoch 2"
    assert trial.user_attrs["best_epoch"] == 1 and trial.value == trial.intermediate_values[1]
    store = artifact_store(tmp_path / "artifacts")
    with store.open_reader(trial.user_attrs["checkpoint"]) as f:
        assert load_trial_checkpoint(f, name="checkpoint")[1]["epoch"] == 1
    assert set(kept_checkpoints(result.study, store)) == {0}  # an ensemble member like any other
    assert not stop.by_signal
    assert result.study.user_attrs["stopped"] == (
        "stopped by the time budget (1h): trial 0 kept its best epoch so far (1); no trial started after it"
    )


@pytest.mark.slow
def test_one_ctrl_c_stops_keeps_the_running_trial_and_exits_75_in_one_line(
    tmp_path, monkeypatch, capfd, ctrl_c
):
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    pause = pause_trial(monkeypatch, tmp_path)
    once_paused(pause, lambda: os.kill(os.getpid(), signal.SIGINT))
    code, out, err = main_here(
        ["study", *TWO_EPOCHS, "--storage", url, "--artifact-store", str(tmp_path / "a"), "--trials", "3"],
        capfd,
    )
    assert code == 75, err
    assert "Traceback" not in out + err
    assert [line for line in err.splitlines() if not line.startswith("[I ")] == [
        "genopt study: stopped by SIGINT: trial 0 kept its best epoch so far (1); no trial started after it; "
        "rerun the same command to continue"
    ]
    (trial,) = trials_of(url)
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["best_epoch"] == 1
    assert trial.user_attrs["stop_reason"] == "stopped by SIGINT during epoch 2"
    assert "checkpoint" in trial.user_attrs
    assert out.splitlines()[-2:] == [
        f"  browse it             genopt dashboard --storage {url}",
        f"  export its best       genopt ensemble --study gan-mnist --storage {url}",
    ]


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_and_the_trial_fails_in_one_line(tmp_path, monkeypatch, capfd, ctrl_c):
    from genopt.study import objective

    url = f"sqlite:///{tmp_path / 'abort.db'}"
    pause = pause_trial(monkeypatch, tmp_path)
    upload = objective.upload_checkpoint

    def ctrl_c_again(*args, **kwargs):  # while the first stop writes the kept trial's checkpoint
        signal.raise_signal(signal.SIGINT)
        return upload(*args, **kwargs)

    monkeypatch.setattr(objective, "upload_checkpoint", ctrl_c_again)
    once_paused(pause, lambda: os.kill(os.getpid(), signal.SIGINT))
    code, out, err = main_here(
        ["study", *TWO_EPOCHS, "--storage", url, "--artifact-store", str(tmp_path / "a"), "--trials", "3"],
        capfd,
    )
    assert code == 130, err
    assert "Traceback" not in out + err
    assert [line for line in err.splitlines() if not line.startswith("[I ")] == [
        "genopt study: interrupted: the running trial is marked FAIL; rerun to continue"
    ]
    (trial,) = trials_of(url)
    assert trial.state == TrialState.FAIL and trial.user_attrs["reason"] == "interrupted"


@pytest.mark.slow
def test_two_workers_under_a_budget_end_with_no_running_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    # Trial 1 waits after its first epoch until the budget ends the wait, as a long epoch would.
    pause = tmp_path / "pause"
    paused = pause_env(pause, trial=1, epoch=1)
    result = genopt(
        "study",
        *TWO_EPOCHS,
        "--storage",
        url,
        "--trials",
        "4",
        "--workers",
        "2",
        "--timeout",
        "30s",
        env=paused,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    trials = trials_of(url)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    study = optuna.load_study(study_name="gan-mnist", storage=open_storage(url))
    assert study.user_attrs["stopped"].startswith("stopped by the time budget (30s)"), result.stdout
    assert "  stopped               by the time budget (30s)" in result.stdout
    if pause.exists():  # trial 1 started within the budget (the workers started in time)
        held = trials[1]
        assert held.state == TrialState.COMPLETE and held.user_attrs["best_epoch"] == 1
        assert held.user_attrs["stop_reason"] == "stopped by the time budget (30s) during epoch 2"
