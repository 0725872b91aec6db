"""Running the real ``genopt`` console script, as a user does, from the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The console script installed beside the interpreter running the tests (.venv/bin/genopt).
GENOPT = str(Path(sys.executable).parent / "genopt")


def genopt(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``genopt ARGS...`` in a subprocess; ``env`` adds to this process's environment."""
    return subprocess.run(
        [GENOPT, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=os.environ | (env or {})
    )
