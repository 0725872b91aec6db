"""``genopt worker``: join an existing study (from this or another machine) and run some of its trials."""

from __future__ import annotations

import argparse
import os

from genopt.cli.options import (
    add_artifact_store,
    add_data_dir,
    add_storage,
    add_timeout,
    exit_status,
    positive_int,
    program,
    trials,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="join an existing study and run trials for it",
        description="Run trials of a study made by genopt study, with its spec and budgets, against a "
        "storage every worker reaches (postgresql://... across machines). Start as many as you like.",
    )
    p.add_argument("--study", required=True, help="the study to join (made by genopt study)")
    add_storage(p)
    p.add_argument(
        "--trials", type=trials, required=True, help="trials this worker runs, or auto (as genopt study)"
    )
    add_timeout(p)
    add_data_dir(p)
    add_artifact_store(p)
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: all)")
    # Set by genopt study --workers: the workers it starts draw from different sampler seeds, and
    # count its --timeout from when it began (seconds since the epoch).
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--budget-started", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.study.stop import EXIT_STOPPED, Stop

    stop = Stop(args.timeout, started=args.budget_started)  # the budget counts from here
    import torch

    from genopt.paths import default_storage_url
    from genopt.study.progress import next_steps, study_summary
    from genopt.study.runner import run_worker

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run_worker(
        study_name=args.study,
        storage_url=args.storage,
        trials=args.trials,
        data_dir=args.data_dir,
        artifact_store=args.artifact_store,
        # Workers on other machines start with the same study size: the process id parts them.
        worker=args.worker_index if args.worker_index is not None else os.getpid(),
        progress=False if args.no_progress else None,
        stop=stop,
    )
    if args.worker_index is not None:  # local workers: genopt study prints one summary for all
        return EXIT_STOPPED if stop.by_signal else 0
    floor, accuracy = result.fid_floor, result.feature_accuracy
    print(study_summary(result.study, fid_floor=floor, feature_accuracy=accuracy, timeout=args.timeout))
    print(next_steps(args.study, args.storage or default_storage_url(), program=program()), flush=True)
    return exit_status(args.command, stop, result.study)
