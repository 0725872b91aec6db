"""torchvision's download, bounded in time: a machine whose firewall drops packets must not hang genopt.

The download runs in a child process with a deadline for the whole attempt (every mirror, every
file), ``$GENOPT_DOWNLOAD_TIMEOUT`` seconds (10 by default). The child writes into a temporary
folder; only a complete download is moved into place, so a killed attempt leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from genopt.errors import GenoptError

DEFAULT_TIMEOUT_S = 10.0
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# Run in the child: torchvision prints progress and each failed mirror; none of it is genopt's output.
_CHILD = """
import sys, torchvision.datasets as tvd
cls = getattr(tvd, sys.argv[1])
for train in (True, False):
    cls(sys.argv[2], train=train, download=True)
"""


def download_timeout() -> float:
    """Seconds the whole download may take: ``$GENOPT_DOWNLOAD_TIMEOUT``, else 10; 0 skips it."""
    text = os.environ.get("GENOPT_DOWNLOAD_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise GenoptError(f"GENOPT_DOWNLOAD_TIMEOUT must be a number of seconds, got {text!r}") from None
    if value < 0:
        raise GenoptError(f"GENOPT_DOWNLOAD_TIMEOUT must not be negative, got {text!r}")
    return value


def torchvision_download(name: str, root: Path) -> Path | None:
    """Download ``name`` with torchvision into ``root/<Name>/raw``; that folder, or None on failure.

    Failure (no network, a mirror down, the deadline passed) is not an error: the caller tries
    its next source.
    """
    timeout = download_timeout()
    if timeout == 0:
        return None
    folder = TORCHVISION_NAMES[name]
    with tempfile.TemporaryDirectory(prefix="genopt-download-") as tmp:
        try:
            subprocess.run(
                [sys.executable, "-c", _CHILD, folder, tmp],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=True,
            )
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError, OSError):
            return None
        target = root / folder / "raw"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(Path(tmp) / folder / "raw"), target)
    return target
