"""The race fixes of docs/reliability.md, each in a unit test of a second or so: no training.

Real SQLite files in tmp_path and real Optuna throughout. Where two workers race, two storage
handles (two ``RDBStorage`` objects, as two processes would hold) share one file, and the race is
made deterministic rather than waited for: a hook on one handle's engine runs the other worker's
whole step just before the first handle's ``UPDATE`` of the trial, the moment SQLite's ignored
``SELECT ... FOR UPDATE`` left open. Staleness is made by moving a trial's start or last heartbeat
a day back in the file, not by sleeping through a grace period.
"""

from __future__ import annotations

import sqlite3
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy import event

from genopt.study.artifacts.stores import artifact_store
from genopt.study.optimize import optimize
from genopt.study.record.attrs import DRAWN_ATTR
from genopt.study.search.distinct import DistinctSampler
from genopt.study.storage import optuna_private
from genopt.study.storage.database import open_storage

STUDY = "race"


@pytest.fixture(autouse=True)
def long_heartbeats(monkeypatch):
    # A beat when a trial starts and none for an hour after (grace: two hours): nothing waits for a beat.
    monkeypatch.setenv("GENOPT_HEARTBEAT_INTERVAL", "3600")
    monkeypatch.setenv("GENOPT_HEARTBEAT_GRACE", "7200")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # fail_stale_trials
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        yield


@pytest.fixture
def database(tmp_path):
    return tmp_path / "race.db"


def handle(database) -> optuna.Study:
    """The study ``race`` through a storage handle of its own, as a worker process holds one."""
    storage = open_storage(f"sqlite:///{database}")
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True)
    _storages[study] = storage
    return study


_storages: dict[optuna.Study, optuna.storages.RDBStorage] = {}


def storage_of(study: optuna.Study) -> optuna.storages.RDBStorage:
    """The storage handle itself (Optuna's study wraps it in a cache)."""
    return _storages[study]


def a_day_ago(database, trial: optuna.Trial, *, heartbeat: bool = False) -> None:
    """Move the trial's start (and its last heartbeat) a day back, far past the grace period."""
    day_ago = datetime.now() - timedelta(days=1)
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE trials SET datetime_start = ? WHERE trial_id = ?",
            (day_ago.isoformat(" "), optuna_private.trial_id(trial)),
        )
        if heartbeat:  # heartbeats are the database's clock, UTC on SQLite
            connection.execute(
                "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 day') WHERE trial_id = ?",
                (optuna_private.trial_id(trial),),
            )
    connection.close()


@contextmanager
def just_before_its_update(study: optuna.Study, other_worker_step):
    """Run ``other_worker_step`` once, just before ``study``'s handle next writes a trial's row."""
    engine = optuna_private.rdb_engine(storage_of(study))
    fired = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if not fired and statement.lstrip().upper().startswith("UPDATE TRIALS"):
            fired.append(statement)
            other_worker_step()

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert fired, "the race was never run: the handle wrote no trial row"


def retries_of(study: optuna.Study, number: int) -> list:
    return [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] == [number]]


class SamePoint(optuna.samplers.BaseSampler):
    """A model-based sampler at its worst (GP on a corner of the space): one point, whatever it saw."""

    def infer_relative_search_space(self, study, trial):
        return {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    def sample_relative(self, study, trial, search_space):
        return {"x": 0.5}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return 0.5


def test_distinct_sampler_redraws_a_point_another_trial_holds(database):
    study = handle(database)
    study.sampler = DistinctSampler(SamePoint())
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    xs = [t.params["x"] for t in study.trials]
    assert xs[0] == 0.5
    assert len(set(xs)) == 3, f"a held point was run again: {xs}"


def test_distinct_sampler_redraws_a_point_another_worker_has_just_drawn(database):
    # Two workers ask at once: neither trial holds parameters yet, only the first one's draw.
    first, second = handle(database), handle(database)
    first.sampler, second.sampler = DistinctSampler(SamePoint()), DistinctSampler(SamePoint())
    first_trial, second_trial = first.ask(), second.ask()
    assert first_trial.suggest_float("x", 0.0, 1.0) == 0.5
    assert second_trial.suggest_float("x", 0.0, 1.0) != 0.5
    assert first.trials[0].system_attrs[DRAWN_ATTR] == '{"x": 0.5}'


def test_two_handles_racing_for_one_waiting_trial_exactly_one_takes_it(database):
    first, second = handle(database), handle(database)
    first.enqueue_trial({"x": 0.25})
    taken = []
    with just_before_its_update(second, lambda: taken.append(first.ask())):
        taken.append(second.ask())
    first_trial, second_trial = taken
    assert first_trial.params == {} and first_trial.number == 0  # it took the queued trial
    assert first_trial.suggest_float("x", 0.0, 1.0) == 0.25
    assert second_trial.number == 1, "both handles took the queued trial"
    assert [t.state for t in first.trials] == [TrialState.RUNNING, TrialState.RUNNING]
    assert "fixed_params" not in first.trials[1].system_attrs


def test_a_running_trial_past_the_grace_period_with_no_heartbeat_is_stale(database):
    study = handle(database)
    storage = storage_of(study)
    never_beat = study.ask()  # its worker was killed before the trial's first beat
    a_day_ago(database, never_beat)
    study.ask()  # just started, not beaten yet
    beating = study.ask()
    storage.record_heartbeat(optuna_private.trial_id(beating))
    a_day_ago(database, beating)  # a long trial, but its last beat is recent
    beat_long_ago = study.ask()
    storage.record_heartbeat(optuna_private.trial_id(beat_long_ago))
    a_day_ago(database, beat_long_ago, heartbeat=True)

    stale = storage.stale_trial_ids(storage.get_study_id_from_name(STUDY))
    assert sorted(stale) == sorted(optuna_private.trial_id(t) for t in (never_beat, beat_long_ago))

    fail_stale_trials(study)  # as every worker does before it starts a trial
    states = [t.state for t in study.trials]
    assert states[:4] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.FAIL]
    assert len(retries_of(study, never_beat.number)) == len(retries_of(study, beat_long_ago.number)) == 1


def test_one_stale_trial_failed_by_two_handles_is_queued_once(database):
    first, second = handle(database), handle(database)
    trial = first.ask()
    trial.suggest_float("x", 0.0, 1.0)
    a_day_ago(database, trial)
    # Both handles find it stale; the first fails it and queues it again while the second is
    # about to write its own FAIL.
    with just_before_its_update(second, lambda: fail_stale_trials(first)):
        fail_stale_trials(second)
    trials = first.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], "queued again twice"
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].params == trials[0].params


@pytest.mark.parametrize("stalls", ["mid-trial", "before-returning"])
def test_a_stalled_worker_whose_trial_was_taken_over_says_so_and_goes_on(database, tmp_path, capfd, stalls):
    stalled, other = handle(database), handle(database)

    def other_worker_takes_over(trial: optuna.Trial) -> None:
        """The pause: while this worker stalls, its trial goes stale and another worker reaps it."""
        storage = storage_of(other)
        deadline = time.monotonic() + 30  # the trial's first beat, written by Optuna's thread
        while not optuna_private.beating_trial_ids(storage, [optuna_private.trial_id(trial)]):
            assert time.monotonic() < deadline, "the trial never beat"
            time.sleep(0.01)
        a_day_ago(database, trial, heartbeat=True)
        fail_stale_trials(other)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        if trial.number == 0 and stalls == "mid-trial":
            other_worker_takes_over(trial)
        trial.report(x / 2, 2)
        if trial.number == 0 and stalls == "before-returning":
            other_worker_takes_over(trial)
        return x / 2

    store = artifact_store(tmp_path / "artifacts")
    optimize(stalled, objective, trials=2, store=store, keep=1, progress=False)

    trials = stalled.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert RetryHeartbeatStaleTrialCallback.retry_history(trials[1]) == [0]
    assert trials[1].params == trials[0].params  # the next trial this worker ran was the retry
    out, err = capfd.readouterr()
    said = [line for line in (out + err).splitlines() if line.startswith("trial   0")]
    assert said == [
        "trial   0  taken over: this worker stalled past the heartbeat grace period, so another worker "
        "failed the trial and queued it again as trial 1; going on with the next trial"
    ]
    assert "Traceback" not in out + err and "Cannot tell" not in out + err
