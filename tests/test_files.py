"""``genopt.files.file_lock``: processes that start together take turns, so what one of them makes
(the feature network, the MNIST wheel) is made once and the others read it."""

from __future__ import annotations

import subprocess
import sys

# Appends "<name> in", waits, then "<name> out" to a log, holding the lock throughout.
_HOLDER = """
import sys, time
from pathlib import Path
from genopt.files import file_lock

lock, log, name = sys.argv[1:]
Path(log + "." + name + ".ready").touch()
while not all(Path(log + "." + n + ".ready").exists() for n in ("a", "b")):
    time.sleep(0.01)
with file_lock(lock):
    with open(log, "a") as f:
        f.write(name + " in\\n")
    time.sleep(0.4)
    with open(log, "a") as f:
        f.write(name + " out\\n")
"""


def test_processes_that_start_together_take_turns_under_the_lock(tmp_path):
    log = tmp_path / "log"
    holders = [
        subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "x.lock"), str(log), name])
        for name in ("a", "b")
    ]
    assert [h.wait(timeout=60) for h in holders] == [0, 0]
    lines = log.read_text().splitlines()
    first, second = lines[0].split()[0], lines[2].split()[0]
    assert lines == [f"{first} in", f"{first} out", f"{second} in", f"{second} out"], lines
    assert {first, second} == {"a", "b"}
