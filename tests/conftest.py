"""Shared test setup: one temporary genopt home per session, so caches (the MNIST wheel, the
feature network, validation statistics) are built once and reused by every test and subprocess."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before any genopt import so every path helper and every subprocess sees it.
_HOME = tempfile.mkdtemp(prefix="genopt-test-home-")
os.environ["GENOPT_HOME"] = _HOME


@pytest.fixture(scope="session")
def genopt_home() -> str:
    return _HOME


@pytest.fixture(scope="session")
def mnist():
    from genopt.data import load_dataset

    return load_dataset("mnist")
