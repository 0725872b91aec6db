"""A PostgreSQL server of our own on 127.0.0.1, started from Debian's binaries, for a test session
(tests/test_workers.py) or a soak (tests/soak/chaos.py): one copy of how it is started.

``postgres_server()`` yields the URL of a fresh server and stops it (and removes its files) on the
way out; when no server can be started here it raises ``PostgresUnavailable`` with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started on this machine; the message says why."""


def server_commands() -> tuple[tuple[list[str], Path] | None, str | None]:
    """(prefix to run as the server's user, bin folder) or a reason there is no server to start."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        return None, "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
    prefix = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            return None, "running as root and there is no postgres user to start the server as"
        prefix = ["runuser", "-u", "postgres", "--"]
    return (prefix, bins[-1].parent), None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free port of 127.0.0.1 (trust authentication, fsync off); yields its URL.

    Raises:
        PostgresUnavailable: PostgreSQL is not installed, or initdb or the server's start failed.
    """
    found, reason = server_commands()
    if found is None:
        raise PostgresUnavailable(reason)
    prefix, bindir = found
    data = Path(tempfile.mkdtemp(prefix="genopt-pg-"))
    try:
        if prefix:
            shutil.chown(data, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        init = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data / "db"),
                "-A",
                "trust",
                "-U",
                "genopt",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db")]
        start = subprocess.run(
            [*ctl, "-o", options, "-l", str(data / "log"), "-w", "start"], capture_output=True
        )
        if start.returncode != 0:
            log = (data / "log").read_text() if (data / "log").exists() else start.stderr.decode()
            raise PostgresUnavailable(f"pg_ctl start failed: {log[-300:]}")
        try:
            yield f"postgresql://genopt@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)
