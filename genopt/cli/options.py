"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1, else one line naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def trials(text: str) -> int | str:
    """argparse type: ``auto`` or an integer of at least 1."""
    return "auto" if text == "auto" else positive_int(text)


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
