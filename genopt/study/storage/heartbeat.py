"""Heartbeats for Optuna's journal storage, which has none of its own.

Without them a worker killed mid-trial (SIGKILL, a lost machine, out of memory) leaves its trial
RUNNING forever, and the trial is never retried. RDB storages keep heartbeats in a table; here each
beat is a trial system attribute (``genopt:heartbeat``, seconds since the epoch) appended to the
journal. The storage implements Optuna's heartbeat interface (``optuna_private.Heartbeat``), so
Optuna itself does the rest, exactly as for SQLite: a thread beats while a trial runs, every
worker fails the stale trials before it starts one, and ``RetryHeartbeatStaleTrialCallback``
queues each again with the same parameters.

Clocks: a beat is this machine's wall clock, so the workers sharing a journal file must agree on
the time (one machine, or NTP on a shared folder). Each beat adds a line (~150 bytes) to the file.
A worker killed while it holds the journal's lock file (a few milliseconds per write) stalls every
writer until Optuna breaks the lock, after 30 s; with a shorter grace period a live trial can then
be found stale and run again. Shortening Optuna's lock grace instead would risk two writers at once.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from genopt.study.record.attrs import HEARTBEAT_ATTR
from genopt.study.storage import optuna_private


class HeartbeatJournalStorage(JournalStorage, optuna_private.Heartbeat):
    """A ``JournalStorage`` whose running trials beat, so killed workers' trials are retried."""

    def __init__(self, backend: BaseJournalBackend, *, interval: int, grace: int, max_retry: int):
        super().__init__(backend)
        self._interval = interval
        self._grace = grace
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8; says nothing to a user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def record_heartbeat(self, trial_id: int) -> None:
        # Another worker may have found this trial stale (this one paused longer than the grace
        # period) and failed it; Optuna's heartbeat thread would die on the error, and beating is moot.
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [
            optuna_private.trial_id(t)
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if now - last_sign_of_life(t) > self._grace
        ]

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        return self._retry


def last_sign_of_life(trial: FrozenTrial) -> float:
    """When a running trial last beat, in seconds since the epoch; its start when it is newer.

    The start counts too: a trial queued again after going stale carries its old trial's last beat
    in its system attributes until its own first beat, and a trial of a genopt without journal
    heartbeats never beat at all (it is found stale once it has run for the grace period).
    """
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else 0.0
    return max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
