"""Files written whole or not at all, and values made JSON-plain.

Every file genopt writes that another process may read while it is written (caches, exports,
reports) goes through ``atomic_write``: a temporary file beside the target, then a rename. What
is costly to make and must be made once (the feature network, a fetched wheel) is made under
``file_lock``, so processes that start together wait for the first instead of each making their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; readers never see half a file.

    The file gets the permissions the umask gives (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) while the block runs; another process
    asking for it waits. The lock goes with the process, so a killed holder never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


def plain(value: Any) -> Any:
    """Tuples as lists, recursively: what a value looks like after a JSON round trip."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def hold_while_exists(path: str | Path, *, released: Callable[[], object] = lambda: False) -> None:
    """Create ``path`` and wait while it exists and ``released()`` is false: the tests' pause points
    (a test removes the file to let the process go on, or signals or kills it meanwhile)."""
    pause = Path(path)
    pause.touch()
    while pause.exists() and not released():
        time.sleep(0.05)
