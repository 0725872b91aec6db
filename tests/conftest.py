"""Shared test setup: one temporary genopt home per session, so caches (the MNIST wheel, the
feature network, validation statistics) are built once and reused by every test and subprocess.

``GENOPT_TEST_HOME=DIR`` uses DIR instead (created if missing) and keeps it, so a machine without
network access can run the suite on data and caches placed there beforehand.

Tests that only read a finished study share one (``tiny_study``), trained once per
session by the real ``genopt`` console script. Tests that run studies, trials or CLI subprocesses are
marked ``slow`` (``make test-fast`` leaves them out; ``make test`` runs everything).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

import pytest

# Set before any genopt import so every path helper and every subprocess sees it.
_HOME = os.environ.get("GENOPT_TEST_HOME") or tempfile.mkdtemp(prefix="genopt-test-home-")
os.makedirs(_HOME, exist_ok=True)
os.environ["GENOPT_HOME"] = _HOME


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
    (``genopt.study.artifacts.stores.artifact_store()``). Read it, never add to it."""

    url: str
    name: str
    args: tuple[str, ...]  # `genopt study ARGS... --trials 4 --enqueue ...` made it
    stdout: str  # what that command printed (no --no-progress: stdout is not a terminal)
    stderr: str


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> TinyStudy:
    """4 cGAN trials of one epoch on 2,000 images, scored on 1,000 samples; trial 0 an enqueued
    baseline of parameters that learn."""
    from cli_runner import article_spec, genopt

    folder = tmp_path_factory.mktemp("tiny-study")
    url, name = f"sqlite:///{folder / 'tiny.db'}", "tiny-cgan"
    args = (
        *article_spec("cgan"), "--study", name, "--storage", url, "--epochs", "1", "--train-limit", "2000",
        "--fid-samples", "1000",
    )  # fmt: skip
    made = genopt("study", *args, "--trials", "4", "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64")
    assert made.returncode == 0, made.stderr
    return TinyStudy(url, name, args, made.stdout, made.stderr)
