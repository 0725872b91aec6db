"""Every private Optuna name genopt relies on, in one room.

Optuna's public API has no trial id, no way to write a trial's system attribute, no hook for a
storage's stale-trial query and no conditional state change; genopt's race fixes
(docs/reliability.md) need all four. Its gRPC storage proxy has no way to add a service to its
server or to choose its client's channel; genopt's proxy (``genopt.study.storage.proxy``) needs
both. Each use sits behind one function or class here, with why it is needed, and the rest of
genopt calls these. pyproject.toml pins the Optuna minor version they
were tested with (``optuna>=5.1,<5.2``), and tests/test_optuna_private.py checks that every private
name used here still exists, so an upgrade fails there and not in the middle of a study.

Where Optuna offers a public way, genopt takes it instead (``study.get_trials``,
``optuna.storages.fail_stale_trials``, ``RetryHeartbeatStaleTrialCallback.retry_history``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "GrpcStorageClient",
    "Heartbeat",
    "add_grpc_storage_service",
    "artifact_store_folder",
    "beating_trial_ids",
    "rdb_dialect",
    "rdb_engine",
    "rdb_grace_period",
    "rdb_stale_trial_ids",
    "record_heartbeats",
    "set_trial_system_attr",
    "study_storage",
    "trial_id",
    "update_trial_state_if",
]


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number, which counts within its study).

    Every storage method takes this id, and neither ``Trial`` nor ``FrozenTrial`` has a public one.
    """
    return trial._trial_id


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes through.

    A study made from a URL holds the storage it opened, and only the study knows it; genopt's
    storage methods (stale trials, heartbeats) are called on that object.
    """
    return study._storage


def set_trial_system_attr(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str, value: Any
) -> None:
    """Write a system attribute of ``trial`` through ``study``'s storage.

    ``DistinctSampler`` records a draw on the trial before it compares it with other trials'
    (``genopt:drawn``), from inside the sampler, which is handed a ``FrozenTrial``; Optuna 5 has no
    public setter for system attributes.
    """
    study_storage(study).set_trial_system_attr(trial._trial_id, key, value)


def artifact_store_folder(store: FileSystemArtifactStore) -> Path | None:
    """The folder of a ``FileSystemArtifactStore``, to say in a "store full" message where to free space.

    The store keeps no public path; None when a later Optuna renames the attribute.
    """
    return getattr(store, "_base_path", None)


class Heartbeat(BaseHeartbeat):
    """Optuna's heartbeat interface (``BaseHeartbeat``), its stale-trial query under a public name.

    A storage that beats inherits this, and Optuna's ``fail_stale_trials`` then fails and retries
    its stale trials. Optuna asks ``_get_stale_trial_ids``; genopt's storages answer
    ``stale_trial_ids``: the journal, which has no heartbeats of its own, and the RDB storage, which
    also counts a trial that never beat (``genopt.study.storage.database``).
    """

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.stale_trial_ids(study_id)

    @abc.abstractmethod
    def stale_trial_ids(self, study_id: int) -> list[int]:
        """The ids of the study's RUNNING trials that have shown no sign of life for the grace period."""


def rdb_stale_trial_ids(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """Optuna's own answer: RUNNING trials whose last heartbeat is older than the grace period.

    It judges only trials with a heartbeat row; genopt adds those that never beat.
    """
    return optuna.storages.RDBStorage._get_stale_trial_ids(storage, study_id)


def rdb_grace_period(storage: optuna.storages.RDBStorage) -> int:
    """The grace period of an RDB storage in seconds (Optuna's default: two heartbeat intervals)."""
    if storage.grace_period is not None:
        return storage.grace_period
    return 2 * storage.heartbeat_interval


def rdb_engine(storage: optuna.storages.RDBStorage):
    """The SQLAlchemy engine behind an RDB storage (Optuna documents its attributes as not for users)."""
    return storage.engine


def rdb_dialect(storage: optuna.storages.RDBStorage) -> str:
    """``sqlite``, ``postgresql`` or ``mysql``: the race fixes below are needed on SQLite only."""
    return storage.engine.dialect.name


def beating_trial_ids(storage: optuna.storages.RDBStorage, trial_ids: Iterable[int]) -> set[int]:
    """Which of ``trial_ids`` have a heartbeat row: a trial without one has never beaten."""
    from optuna.storages._rdb import models  # SQLAlchemy's models: imported only where RDB is used

    trial_ids = list(trial_ids)
    if not trial_ids:
        return set()
    with _create_scoped_session(storage.scoped_session) as session:
        rows = session.query(models.TrialHeartbeatModel.trial_id).filter(
            models.TrialHeartbeatModel.trial_id.in_(trial_ids)
        )
        return {trial_id for (trial_id,) in rows}


def record_heartbeats(storage: optuna.storages.RDBStorage, trial_ids: Iterable[int]) -> None:
    """Stamp the heartbeats of ``trial_ids`` with the database's clock, in one transaction.

    Optuna records one trial's beat per transaction (five statements); genopt's proxy gathers the
    beats of all its workers and writes them together, two statements however many there are.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    trial_ids = set(trial_ids)
    if not trial_ids:
        return
    beat = models.TrialHeartbeatModel
    with _create_scoped_session(storage.scoped_session, True) as session:
        now = session.execute(sqlalchemy.func.now()).scalar_one()
        beating = {i for (i,) in session.query(beat.trial_id).filter(beat.trial_id.in_(trial_ids))}
        if beating:
            session.query(beat).filter(beat.trial_id.in_(beating)).update(
                {beat.heartbeat: now}, synchronize_session=False
            )
        session.add_all(beat(trial_id=i, heartbeat=now) for i in sorted(trial_ids - beating))


def update_trial_state_if(
    storage: optuna.storages.RDBStorage, trial_id: int, state: TrialState, *, was: tuple[TrialState, ...]
) -> bool:
    """Set the trial's state to ``state`` if it is one of ``was``, in one conditional ``UPDATE``.

    Optuna reads the state (``SELECT ... FOR UPDATE``) and then writes it; SQLite ignores
    ``FOR UPDATE``, so two workers could both take one WAITING trial, or both fail one stale trial
    and queue it twice. Of two such ``UPDATE``s exactly one changes the row. Sets the start or
    completion time as Optuna does, in the same transaction.

    Returns:
        Whether this call changed the state.
    """
    from optuna.storages._rdb import models

    with _create_scoped_session(storage.scoped_session) as session:
        won = (
            session.query(models.TrialModel)
            .filter(models.TrialModel.trial_id == trial_id, models.TrialModel.state.in_(was))
            .update({models.TrialModel.state: state}, synchronize_session=False)
        )
        if won:  # the same transaction, still holding SQLite's write lock
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            if state == TrialState.RUNNING:
                trial.datetime_start = datetime.now()
            if state.is_finished():
                trial.datetime_complete = datetime.now()
    return bool(won)


def add_grpc_storage_service(server, storage: optuna.storages.BaseStorage) -> None:
    """Serve ``storage`` on the gRPC ``server`` as Optuna's storage proxy does.

    ``optuna.storages.run_grpc_proxy_server`` makes its server, starts it and blocks, so nothing can
    be added beside Optuna's service (genopt's heartbeats), the port it bound stays unknown
    (``--port 0``) and it cannot be stopped gracefully; this is the line of it that adds the service.
    """
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)


class GrpcStorageClient(optuna.storages.GrpcStorageProxy):
    """Optuna's gRPC proxy client, on a channel and a stub that a subclass makes.

    Optuna's client opens its channel with gRPC's default reconnect backoff (up to two minutes
    between tries once a proxy has gone away) and calls each method of its stub once, so a proxy
    restarted under running workers fails their next call. A subclass says how to open the channel
    (``make_channel``) and wraps the stub (``wrap_stub``: genopt waits for a restarted proxy there);
    Optuna's methods and its client-side trial cache then run on them unchanged.
    """

    def _setup(self) -> None:
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        self._channel = self.make_channel()
        self._stub = self.wrap_stub(api_pb2_grpc.StorageServiceStub(self._channel))
        self._cache = GrpcClientCache(self._stub)

    @property
    def channel(self):
        """The gRPC channel the client's calls go through."""
        return self._channel

    @abc.abstractmethod
    def make_channel(self):
        """A new gRPC channel to the proxy (called at start, and again after unpickling)."""

    @abc.abstractmethod
    def wrap_stub(self, stub):
        """The object the client calls instead of Optuna's stub: same methods, same answers."""
