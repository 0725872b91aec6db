"""Every path and storage URL genopt uses by default lives here, and nowhere else.

The root is ``$GENOPT_HOME`` when set (tests point it at a temporary folder), else ``./storage``.
"""

from __future__ import annotations

import os
from pathlib import Path


def storage_root() -> Path:
    """The folder holding the database, artifacts, caches, data and exports."""
    return Path(os.environ.get("GENOPT_HOME", "storage"))


def default_storage_url() -> str:
    """The SQLite database every command uses unless ``--storage`` says otherwise."""
    return f"sqlite:///{storage_root() / 'genopt.db'}"


def artifacts_dir() -> Path:
    """Optuna's ``FileSystemArtifactStore`` root: generator checkpoints (and, later, sample grids)."""
    return storage_root() / "artifacts"


def cache_dir() -> Path:
    """Downloaded data sources, trained feature networks and cached FID statistics."""
    return storage_root() / "cache"


def data_dir() -> Path:
    """Where datasets are looked for in torchvision's layout, and where its download puts them."""
    return storage_root() / "data"


def exports_dir() -> Path:
    """Where ensembles are exported."""
    return storage_root() / "exports"


def reports_dir() -> Path:
    """Where ``genopt report`` writes a study's report unless ``--out`` says otherwise."""
    return storage_root() / "reports"


def file_safe(name: str, keep: str = "-_") -> str:
    """``name`` with every character but letters, digits and those in ``keep`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in keep else "_" for ch in name)
