"""Turn a storage URL into an Optuna storage, and the artifact store beside it.

Four kinds of URL, one factory:

- ``sqlite:///path.db``: one machine. WAL mode and a busy timeout let several local worker
  processes write to it without "database is locked".
- ``journal:///path.log``: one machine (or a shared folder with working file locks), Optuna's
  append-only journal file, with genopt's own heartbeats (``genopt.study.storage.heartbeat``).
- ``postgresql://user:pass@host/db`` (or ``mysql://...``): many machines. Needs the ``postgres`` extra.
- ``grpc://host:port``: a genopt proxy (``genopt proxy``, ``genopt.study.storage.proxy``) in front of
  one of the above, for hundreds of workers: they hold no database connections, and the proxy keeps
  their heartbeats and fails their stale trials. Needs the ``grpc`` extra.

Every storage runs with heartbeats: a trial whose worker stops beating for the grace period is
marked FAIL and queued again (Optuna's ``RetryHeartbeatStaleTrialCallback``). A worker killed before
its trial's first beat counts too, once the trial has run for the grace period; on SQLite, taking a
queued trial and failing a stale one are each one conditional UPDATE (``_RDBStorage``).

Errors a user can cause (an unknown scheme, a folder that does not exist, a server that does not
answer, a missing driver) become one ``GenoptError`` line before anything is written.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import warnings
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from genopt import paths
from genopt.errors import GenoptError
from genopt.study.storage import optuna_private
from genopt.study.storage.heartbeat import HeartbeatJournalStorage

# SQLite waits this long for a lock instead of failing with "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 60
# A running trial writes a heartbeat every interval; after the grace period without one it is
# stale: marked FAIL and queued again. Tests shorten both through the environment.
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 15
# A trial that keeps killing its worker is not retried forever.
MAX_RETRY = 3
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: ``$GENOPT_HEARTBEAT_INTERVAL`` and ``$GENOPT_HEARTBEAT_GRACE``."""
    try:
        interval = int(os.environ.get("GENOPT_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_S))
        grace = int(os.environ.get("GENOPT_HEARTBEAT_GRACE", HEARTBEAT_GRACE_S))
    except ValueError:
        raise GenoptError(
            "GENOPT_HEARTBEAT_INTERVAL and GENOPT_HEARTBEAT_GRACE must be whole seconds"
        ) from None
    if interval < 1 or grace <= interval:
        raise GenoptError(
            "heartbeat: need GENOPT_HEARTBEAT_INTERVAL >= 1 and a longer GENOPT_HEARTBEAT_GRACE"
        )
    return interval, grace


def resolve_url(url: str | None) -> str:
    """``url``, or the default SQLite database (its folder created)."""
    if url is None:
        paths.storage_root().mkdir(parents=True, exist_ok=True)
        return paths.default_storage_url()
    return url


def open_storage(url: str | None = None, *, connections: int | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (default: ``storage/genopt.db``), checked to be reachable.

    Args:
        url: a storage URL of a kind above.
        connections: a database's most connections open at once (default SQLAlchemy's, 5 and 10
            more while busy); the proxy sizes its pool to its threads.

    Raises:
        GenoptError: the URL is malformed, names a missing folder, or its server or driver is missing.
    """
    url = resolve_url(url)
    scheme = url.partition("://")[0]
    if scheme == "journal":
        return _journal(url)
    if scheme == "grpc":
        from genopt.study.storage.proxy_client import connect  # gRPC only where it is used

        return connect(url)
    if scheme.split("+")[0] not in _RDB_SCHEMES or "://" not in url:
        raise GenoptError(
            f"cannot open storage {url}: use sqlite:///PATH.db, journal:///PATH.log, postgresql://HOST/DB "
            "or grpc://HOST:PORT (a genopt proxy)"
        )
    engine_kwargs = {}
    if connections is not None:
        engine_kwargs = {"pool_size": connections, "max_overflow": 0}
    if scheme == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
        _sqlite_wal(url)
    elif scheme == "postgresql":
        url = _postgres_driver(url)
    interval, grace = heartbeat_settings()
    try:
        # Heartbeats have been "experimental" since Optuna 2.8; the warning says nothing to a user.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except Exception as exc:  # sqlalchemy and drivers raise many types; all mean "cannot open"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenoptError(f"cannot open storage {url}: {reason}") from None


class _RDBStorage(optuna_private.Heartbeat, optuna.storages.RDBStorage):
    """Optuna's RDB storage with two gaps closed that workers SIGKILLed at random moments found
    (tests/soak/chaos.py, docs/reliability.md).

    - Optuna judges only trials that have beaten: a worker killed between creating its trial and the
      trial's first heartbeat left it RUNNING forever. Here such a trial is stale once it has run for
      the grace period, as on the journal (``genopt.study.storage.heartbeat.last_sign_of_life``). Its start is
      the worker's clock, so it is compared with this machine's.
    - SQLite ignores ``SELECT ... FOR UPDATE``, so two workers could both take one queued (WAITING)
      trial and run it twice, or both fail one stale trial and queue it twice. On SQLite each of those
      changes is here one conditional ``UPDATE``, which exactly one worker wins.
    """

    def stale_trial_ids(self, study_id: int) -> list[int]:
        stale = optuna_private.rdb_stale_trial_ids(self, study_id)
        now, grace = datetime.now(), optuna_private.rdb_grace_period(self)
        old = [
            optuna_private.trial_id(t)
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if optuna_private.trial_id(t) not in stale
            and t.datetime_start is not None
            and (now - t.datetime_start).total_seconds() > grace
        ]
        beating = optuna_private.beating_trial_ids(self, old)
        return stale + [trial_id for trial_id in old if trial_id not in beating]

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        if values is not None or optuna_private.rdb_dialect(self) != "sqlite":
            return super().set_trial_state_values(trial_id, state, values)
        # From WAITING only to RUNNING; to a finished state from any unfinished one.
        was = (
            (TrialState.WAITING,) if state == TrialState.RUNNING else (TrialState.WAITING, TrialState.RUNNING)
        )
        if optuna_private.update_trial_state_if(self, trial_id, state, was=was):
            return True
        # Lost: Optuna's own answer for a trial another worker changed first (False, or an
        # UpdateFinishedTrialError for a finished one).
        return super().set_trial_state_values(trial_id, state, values)


def shown_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: for a line a log keeps."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _sqlite_wal(url: str) -> None:
    # WAL lets readers and one writer work at once; the mode is stored in the file, so setting it
    # once here covers every later connection of every process.
    database = Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite:///:memory:"):
        return
    if not database.parent.is_dir():
        raise GenoptError(f"cannot open storage {url}: folder {database.parent} does not exist")
    try:
        with sqlite3.connect(database, timeout=_SQLITE_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
    except sqlite3.Error as exc:
        raise GenoptError(f"cannot open storage {url}: {exc}") from None


def _postgres_driver(url: str) -> str:
    # SQLAlchemy's plain postgresql:// means psycopg2; the postgres extra installs psycopg 3.
    if importlib.util.find_spec("psycopg") is None:
        raise GenoptError(
            f"cannot open storage {url}: install the driver with pip install 'genopt[postgres]'"
        )
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _journal(url: str) -> optuna.storages.JournalStorage:
    path = Path(url.removeprefix("journal://"))
    if not path.is_absolute() or not path.parent.is_dir():
        raise GenoptError(
            f"cannot open storage {url}: use journal:///ABSOLUTE/PATH.log in an existing folder"
        )
    interval, grace = heartbeat_settings()
    try:
        return HeartbeatJournalStorage(
            JournalFileBackend(str(path)), interval=interval, grace=grace, max_retry=MAX_RETRY
        )
    except Exception as exc:
        raise GenoptError(f"cannot open storage {url}: {exc}") from None


def load_existing_study(study_name: str, storage_url: str | None = None) -> optuna.Study:
    """The study ``study_name`` in the storage at ``storage_url``, which must exist.

    Raises:
        GenoptError: the storage cannot be opened or holds no such study (the message lists those it holds).
    """
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = ", ".join(sorted(s.study_name for s in optuna.get_all_study_summaries(storage))) or "none"
        raise GenoptError(
            f"no study {study_name!r} in {resolve_url(storage_url)} (studies: {names}): "
            f"make it with genopt study --study {study_name}"
        ) from None
