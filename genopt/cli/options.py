"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from genopt.study.stop import parse_duration


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1, else one line naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def port(text: str) -> int:
    """argparse type: a TCP port, 0 (a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 (a free one) to 65535")
    return value


def trials(text: str) -> int | str:
    """argparse type: ``auto`` or an integer of at least 1."""
    return "auto" if text == "auto" else positive_int(text)


def duration(text: str) -> float:
    """argparse type: ``90s``, ``30m``, ``2h`` or ``1h30m``, as seconds; zero and less are refused."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_timeout(parser: argparse.ArgumentParser) -> None:
    """``--timeout DURATION``: the run's wall-clock budget (``genopt.study.stop``)."""
    parser.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help="a wall-clock budget: 90s, 30m, 2h or 1h30m. No trial starts after it, and the running "
        "trial stops there and keeps its best epoch so far; with --trials, whichever comes first ends "
        "the run (default: none)",
    )


def program() -> str:
    """How this person runs genopt, for a command line to paste: ``genopt`` when that name finds this
    script, else this script's path (``.venv/bin/genopt`` when ``make`` ran it from the checkout)."""
    script = Path(sys.argv[0])
    if script.name != "genopt":  # python -m genopt, or main() called from Python
        return "genopt"
    found = shutil.which("genopt")
    if found is not None and Path(found).resolve() == script.resolve():
        return "genopt"
    try:
        return str(script.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(script.resolve())


def add_storage(parser: argparse.ArgumentParser) -> None:
    """The ``--storage URL`` option, with the same default and help everywhere."""
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///storage/genopt.db)")


def add_artifact_store(parser: argparse.ArgumentParser, *, writes: bool = False) -> None:
    """``--artifact-store URL``: where trials keep (or kept) their checkpoints, grids and histories; a
    folder, or ``s3://BUCKET/PREFIX`` (``genopt.study.artifacts.stores``). ``--artifact-dir`` is its
    old name."""
    help_text = (
        "a folder, or s3://BUCKET/PREFIX with the endpoint and credentials from the environment "
        "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) (default: the study's own, else storage/artifacts)"
        if writes
        else "the study's artifact store, if it moved (default: the store the study wrote to)"
    )
    parser.add_argument(
        "--artifact-store", "--artifact-dir", dest="artifact_store", metavar="URL", help=help_text
    )


def add_data_dir(parser: argparse.ArgumentParser, *, writes: bool = False) -> None:
    """The ``--data-dir DIR`` option: a folder of images (one subfolder per class, or none) or IDX files."""
    help_text = (
        "a folder of images (one subfolder per class, or none; docs/images.md) or of the four IDX files, "
        "to use instead"
        if writes
        else "the study's data folder, if it moved (default: where the study found its data)"
    )
    parser.add_argument("--data-dir", type=Path, help=help_text)


def add_workers(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--workers-per-gpu K``: local worker processes and where each trains."""
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes sharing the trials, each with its share of the CPU threads (default 1); "
        "more machines join with genopt worker",
    )
    parser.add_argument(
        "--workers-per-gpu",
        type=positive_int,
        metavar="K",
        help="put K workers on each visible GPU in turn: worker i trains on GPU i // K, and workers "
        "beyond K x the GPUs on the CPU (default: the workers share every GPU round-robin, worker i "
        "on GPU i mod the GPU count); without a GPU every worker trains on the CPU",
    )


def exit_status(command: str, stop, study) -> int:
    """How a run that ``stop`` (``genopt.study.stop.Stop``) watched ends: 0 when it ran its trials or
    its budget; ``EXIT_STOPPED`` after one line on stderr when a signal stopped it."""
    from genopt.study.record.records import StudyRecord
    from genopt.study.stop import EXIT_STOPPED

    if not stop.by_signal:
        return 0
    what = StudyRecord.of(study).stopped or stop.ended()
    print(f"genopt {command}: {what}; rerun the same command to continue", file=sys.stderr)
    return EXIT_STOPPED
