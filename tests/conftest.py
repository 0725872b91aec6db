"""Shared test setup: one temporary genopt home per session, so caches (the MNIST wheel, the
feature network, validation statistics) are built once and reused by every test and subprocess.

``GENOPT_TEST_HOME=DIR`` uses DIR instead (created if missing) and keeps it, so a machine without
network access can run the suite on data and caches placed there beforehand."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before any genopt import so every path helper and every subprocess sees it.
_HOME = os.environ.get("GENOPT_TEST_HOME") or tempfile.mkdtemp(prefix="genopt-test-home-")
os.makedirs(_HOME, exist_ok=True)
os.environ["GENOPT_HOME"] = _HOME


@pytest.fixture(scope="session")
def genopt_home() -> str:
    return _HOME


@pytest.fixture(scope="session")
def mnist():
    from genopt.data import load_dataset

    return load_dataset("mnist")
