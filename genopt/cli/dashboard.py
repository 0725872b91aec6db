"""``genopt dashboard``: browse a study's trials, FID curves and sample grids in optuna-dashboard."""

from __future__ import annotations

import argparse

from genopt.cli.options import add_artifact_store, add_storage, port


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="serve optuna-dashboard on the study storage",
        description="Start optuna-dashboard on 127.0.0.1 with genopt's artifact store attached, so every "
        "trial shows its sample grid and per-epoch history; prints the URL to open.",
    )
    add_storage(p)
    p.add_argument("--port", type=port, default=8080, help="port on 127.0.0.1 (default 8080)")
    add_artifact_store(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.report.dashboard import serve

    serve(storage_url=args.storage, port=args.port, artifact_store=args.artifact_store)
    return 0
