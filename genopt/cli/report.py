"""``genopt report``: write a study's offline report, index.html with its figures beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from genopt.cli.options import add_artifact_store, add_storage


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a study's offline HTML report with figures",
        description="Write DIR/index.html with PNG figures beside it (optimization history, FID per epoch, "
        "parameter importances, FID against each parameter, the best trial's samples, the ensemble).",
    )
    p.add_argument("--study", required=True, help="study name, e.g. cgan-mnist")
    add_storage(p)
    p.add_argument("--out", type=Path, help="report folder (default storage/reports/<study>)")
    add_artifact_store(p)
    p.add_argument(
        "--export", type=Path, help="the study's ensemble .pt (default storage/exports/<study>.pt)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.report.figures import write_report

    index = write_report(
        study_name=args.study,
        storage_url=args.storage,
        out_dir=args.out,
        artifact_store=args.artifact_store,
        export=args.export,
    )
    print(index)
    return 0
