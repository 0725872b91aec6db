"""Turn a storage URL into an Optuna storage, and the artifact store beside it.

Errors a user can cause (an unknown scheme, a folder that does not exist, a server that does not
answer, a missing driver) become one ``GenoptError`` line before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore

from genopt import paths
from genopt.errors import GenoptError

# SQLite waits this long for a lock instead of failing with "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 60


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (default: ``storage/genopt.db``), checked to be reachable.

    Raises:
        GenoptError: the URL is malformed, names a missing folder, or its server or driver is missing.
    """
    if url is None:
        url = paths.default_storage_url()
        paths.storage_root().mkdir(parents=True, exist_ok=True)
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        if not database.parent.is_dir():
            raise GenoptError(f"cannot open storage {url}: folder {database.parent} does not exist")
        engine_kwargs = {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # sqlalchemy and drivers raise many types; all mean "cannot open"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenoptError(f"cannot open storage {url}: {reason}") from None


def artifact_store(base_path: Path | None = None) -> FileSystemArtifactStore:
    """The artifact store for checkpoints; every machine that sees this folder sees the same ids."""
    base_path = base_path or paths.artifacts_dir()
    base_path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path)
