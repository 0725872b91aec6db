"""Optuna's private names genopt relies on still exist, and only genopt/study/storage/optuna_private.py
uses them.

An Optuna upgrade that moves or renames one fails here, by name, rather than in a worker mid-study.
pyproject.toml pins the minor version these were checked against.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import optuna
import pytest

import genopt
from genopt.study.artifacts.stores import artifact_store
from genopt.study.storage import optuna_private
from genopt.study.storage.database import open_storage

MODULE = Path(optuna_private.__file__)
# A trial asked for outside study.optimize, on a storage with heartbeats: nothing here beats.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")

# Every private module, function, class and class attribute optuna_private.py reaches.
PRIVATE_NAMES = [
    "optuna.storages._heartbeat.BaseHeartbeat",
    "optuna.storages._heartbeat.BaseHeartbeat._get_stale_trial_ids",
    "optuna.storages.RDBStorage._get_stale_trial_ids",
    "optuna.storages._rdb.storage._create_scoped_session",
    "optuna.storages._rdb.models.TrialModel.trial_id",
    "optuna.storages._rdb.models.TrialModel.state",
    "optuna.storages._rdb.models.TrialModel.datetime_start",
    "optuna.storages._rdb.models.TrialModel.datetime_complete",
    "optuna.storages._rdb.models.TrialModel.find_or_raise_by_id",
    "optuna.storages._rdb.models.TrialHeartbeatModel.trial_id",
    "optuna.storages._rdb.models.TrialHeartbeatModel.heartbeat",
]
# The gRPC proxy's private names (genopt.study.storage.proxy), which import grpc: checked where the
# grpc extra is installed (it is in `make venv` and CI).
GRPC_PRIVATE_NAMES = [
    "optuna.storages._grpc.auto_generated.api_pb2_grpc.add_StorageServiceServicer_to_server",
    "optuna.storages._grpc.auto_generated.api_pb2_grpc.StorageServiceStub",
    "optuna.storages._grpc.servicer.OptunaStorageProxyService",
    "optuna.storages._grpc.client.GrpcClientCache",
    "optuna.storages.GrpcStorageProxy._setup",
]
# What GrpcStorageClient._setup sets for Optuna's client methods to use: the channel, the stub, the cache.
GRPC_INSTANCE_NAMES = ("_channel", "_stub", "_cache")
needs_grpc = pytest.mark.skipif(
    importlib.util.find_spec("grpc") is None, reason="gRPC is not installed (the grpc extra)"
)
# Attributes set on instances (so checked on real ones below): what each holds.
INSTANCE_NAMES = {
    "_trial_id": "Trial and FrozenTrial: the storage's id",
    "_storage": "Study: its storage",
    "_base_path": "FileSystemArtifactStore: its folder",
    "engine": "RDBStorage: the SQLAlchemy engine",
    "scoped_session": "RDBStorage: the session factory",
    "grace_period": "RDBStorage: the grace period",
    "heartbeat_interval": "RDBStorage: the heartbeat interval",
}


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", PRIVATE_NAMES)
def test_each_private_name_still_exists_in_the_installed_optuna(dotted):
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"Optuna {optuna.__version__} has no {dotted} ({exc}): fix "
            "genopt/study/storage/optuna_private.py, then the pin in pyproject.toml"
        )


@needs_grpc
@pytest.mark.parametrize("dotted", GRPC_PRIVATE_NAMES)
def test_each_private_grpc_name_still_exists_in_the_installed_optuna(dotted):
    test_each_private_name_still_exists_in_the_installed_optuna(dotted)


def test_optunas_grpc_client_still_sets_itself_up_in_setup_and_calls_what_it_set():
    # genopt's client replaces _setup to choose the channel and wrap the stub; if Optuna's client
    # stopped calling it, or read its channel, stub or cache by other names, the proxy's patience
    # with a restarted proxy and its heartbeats would be lost.
    client = optuna.storages.GrpcStorageProxy
    assert "self._setup()" in inspect.getsource(client.__init__)
    assert "self._setup()" in inspect.getsource(client.__setstate__)
    source = inspect.getsource(client)
    for name in GRPC_INSTANCE_NAMES:
        assert f"self.{name}" in source, name


def test_optuna_still_asks_a_storage_for_its_stale_trials_by_that_name():
    # genopt's storages answer stale_trial_ids through Heartbeat._get_stale_trial_ids: if Optuna
    # asks another name, killed workers' trials would silently never be retried.
    assert "_get_stale_trial_ids" in inspect.getsource(optuna.storages.fail_stale_trials)
    assert "_get_stale_trial_ids" in resolve("optuna.storages._heartbeat.BaseHeartbeat").__abstractmethods__


def test_the_instance_attributes_exist_on_real_instances(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'names.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    store = artifact_store(tmp_path / "artifacts")
    owners = {
        "_trial_id": [trial, study.trials[0]],
        "_storage": [study],
        "_base_path": [store],
        "engine": [storage],
        "scoped_session": [storage],
        "grace_period": [storage],
        "heartbeat_interval": [storage],
    }
    assert owners.keys() == INSTANCE_NAMES.keys()
    for name, objects in owners.items():
        for obj in objects:
            assert hasattr(obj, name), f"{type(obj).__name__} has no {name} ({INSTANCE_NAMES[name]})"


def test_the_functions_agree_with_optunas_public_api(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'names.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    assert storage.get_trial(optuna_private.trial_id(trial)).number == trial.number
    assert optuna_private.trial_id(study.trials[0]) == optuna_private.trial_id(trial)
    assert optuna_private.artifact_store_folder(artifact_store(tmp_path / "a")) == tmp_path / "a"
    assert optuna_private.rdb_dialect(storage) == "sqlite"
    assert optuna_private.rdb_grace_period(storage) == storage.grace_period


def test_every_private_name_the_module_uses_is_checked_here():
    tree = ast.parse(MODULE.read_text())
    imported = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna")
        for alias in node.names
    }
    attributes = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    }
    checked = PRIVATE_NAMES + GRPC_PRIVATE_NAMES
    unchecked = {
        name
        for name in imported
        if "._" in name and not any(p == name or p.startswith(name + ".") for p in checked)
    }
    unchecked |= (
        attributes - {*INSTANCE_NAMES, *GRPC_INSTANCE_NAMES} - {p.rsplit(".", 1)[-1] for p in checked}
    )
    assert not unchecked, f"list these in PRIVATE_NAMES or INSTANCE_NAMES: {sorted(unchecked)}"


# Private Optuna names as they appear in code: a private module or name reached through optuna, or
# the attributes above reached on Optuna's objects.
_OUTSIDE = re.compile(
    r"optuna(\.\w+)*\._\w|\._trial_id\b|\._study_id\b|\._storage\b|_get_stale_trial_ids|"
    r"_create_scoped_session|_base_path"
)


def test_no_other_module_of_genopt_reaches_a_private_optuna_name():
    package = Path(genopt.__file__).parent
    found = [
        f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path != MODULE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _OUTSIDE.search(line.split("#")[0])
    ]
    assert not found, "move these into genopt/study/storage/optuna_private.py:\n" + "\n".join(found)
