"""Running ``genopt`` from the tests: the real console script in a subprocess, as a user does, or its
``main`` in this process where the parser and the checks are what is tested."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

# The console script installed beside the interpreter running the tests (.venv/bin/genopt).
GENOPT = str(Path(sys.executable).parent / "genopt")
ROOT = Path(__file__).resolve().parent.parent


def article_spec(model: str = "gan") -> list[str]:
    """``--spec studies/<model>-article.toml``: the article's MLPs, for the tests of what does not depend
    on the network (storage, workers, faults, reports). A one-epoch trial of them takes about 2 s less
    than one of the shipped DCGAN on 2 cores, which the suite's many such trials add up to minutes."""
    return ["--spec", str(ROOT / "studies" / f"{model}-article.toml")]


def tiny_budget(*, train_limit: int = 500, fid_samples: int = 200) -> list[str]:
    """The command line's budget of a test trial: one epoch on ``train_limit`` training images,
    scored on ``fid_samples`` samples, no progress bar."""
    budget = ["--epochs", "1", "--train-limit", str(train_limit), "--fid-samples", str(fid_samples)]
    return [*budget, "--no-progress"]


def genopt(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``genopt ARGS...`` in a subprocess; ``env`` adds to this process's environment."""
    return subprocess.run(
        [GENOPT, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=os.environ | (env or {})
    )


def run_main(args: list[str], capfd) -> tuple[int, str]:
    """``genopt ARGS...`` in this process, as the console script runs it (``sys.exit(main())``): the
    exit status and what was written to stderr, with pytest's ``capfd`` fixture. A warning fails the
    call, since the console script would print it as more lines on stderr."""
    from genopt.cli import main

    gc.collect()  # an earlier test's unclosed socket or file warns when collected: not this command's
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's refusals and --help
            code = exc.code
    assert [str(w.message) for w in warned] == []
    return code, capfd.readouterr().err


@contextlib.contextmanager
def running_dashboard(storage_url: str) -> Iterator[str]:
    """`genopt dashboard --port 0` as a user starts it; yields the base URL it printed
    (``http://127.0.0.1:PORT``) and stops it on the way out."""
    process = subprocess.Popen(
        [GENOPT, "dashboard", "--storage", storage_url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/dashboard", line)
        assert match, (
            f"no URL printed: {line!r} {process.stderr.read() if process.poll() is not None else ''}"
        )
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def pause_env(pause: Path, trial: int, epoch: int | None = None) -> dict[str, str]:
    """The environment of the pause hook in genopt/study/objective.py: trial ``trial`` waits (before
    training, or once ``epoch`` is scored) for as long as the file ``pause``, which it makes, exists."""
    env = {"GENOPT_TEST_PAUSE_TRIAL": str(trial), "GENOPT_TEST_PAUSE_FILE": str(pause)}
    if epoch is not None:
        env["GENOPT_TEST_PAUSE_EPOCH"] = str(epoch)
    return env
