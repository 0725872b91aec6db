"""``genopt compare``: trials (and an export) side by side, the same noise and labels through each."""

from __future__ import annotations

import argparse
from pathlib import Path

from genopt.cli.options import add_artifact_store, add_storage, positive_int


def trial_numbers(text: str) -> list[int]:
    """argparse type: ``3,7,12``, trial numbers separated by commas."""
    words = [w.strip() for w in text.split(",")]
    if not all(w.isascii() and w.isdigit() for w in words):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of trial numbers such as 3,7,12")
    return [int(w) for w in words]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="draw trials (and an export) side by side from the same noise, as one PNG",
        description="Draw the same noise and the same labels through several generators: a column per "
        "trial, headed by its number, scores and parameters; for a cGAN a row per class. Trials come from "
        "their stored checkpoints; --checkpoint draws an export (genopt ensemble) beside its members.",
    )
    p.add_argument("--study", help="study name, e.g. cgan-mnist")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trials", type=trial_numbers, metavar="N,N,...", help="these trials, e.g. 3,7,12")
    which.add_argument(
        "--top", type=positive_int, metavar="N", help="the N best trials with a stored checkpoint (default 5)"
    )
    p.add_argument(
        "--checkpoint", type=Path, help="an ensemble .pt from genopt ensemble, drawn beside its members"
    )
    add_storage(p)
    add_artifact_store(p)
    p.add_argument(
        "--per-cell", type=positive_int, default=4, metavar="K", help="images per cell (default 4)"
    )
    p.add_argument("--out", type=Path, help="the PNG (default storage/reports/<study>/compare.png)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.report.compare import write_comparison  # torch loads only once the arguments are good

    path = write_comparison(
        study_name=args.study,
        trials=args.trials,
        top=args.top,
        checkpoint=args.checkpoint,
        storage_url=args.storage,
        artifact_store=args.artifact_store,
        out=args.out,
        per_cell=args.per_cell,
    )
    print(f"wrote {path}")
    return 0
