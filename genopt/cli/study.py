"""``genopt study``: add trials to a study (created on first use) and print the best one."""

from __future__ import annotations

import argparse
from pathlib import Path

from genopt.cli.options import (
    add_artifact_store,
    add_data_dir,
    add_storage,
    add_timeout,
    add_workers,
    exit_status,
    positive_int,
    program,
    trials,
)
from genopt.errors import GenoptError
from genopt.spec import MODELS, SEARCHABLE, find_spec, parse_value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="add trials to a study and print the best",
        description="Search lr, batch size and noise size (and whatever the spec adds) for a GAN or cGAN, "
        "scoring each trial by validation FID; the study lives in the storage and can be resumed.",
    )
    p.add_argument("--model", choices=MODELS, help="gan or cgan (default: the spec's, else gan)")
    p.add_argument(
        "--trials",
        type=trials,
        required=True,
        help="trials to add to the study, or auto: until the best value stops improving (the spec's "
        "auto_patience and auto_min_improvement), at most auto_max_trials in the study",
    )
    add_timeout(p)
    p.add_argument("--dataset", help="mnist or fashion-mnist (default: the spec's)")
    add_data_dir(p, writes=True)
    p.add_argument(
        "--image-size",
        type=positive_int,
        help="an image folder's images are resized and centre-cropped to this square size, a multiple "
        "of 4 (default: the spec's, else 64 when the images are at least that, else 32)",
    )
    p.add_argument(
        "--channels",
        choices=("auto", "1", "3"),
        help="an image folder's channels: 3, 1 (grey), or auto: 3 when any image has colour (the default)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse an image folder holding a file that does not decode (default: skip it and warn)",
    )
    p.add_argument("--epochs", type=positive_int, help="max epochs per trial (default: the spec's)")
    add_storage(p)
    p.add_argument("--study", help="study name (default <model>-<dataset>)")
    p.add_argument("--spec", type=Path, help="study spec (default studies/<model>.toml when it exists)")
    p.add_argument("--seed", type=int, help="sampler and training seed (default: the spec's)")
    p.add_argument("--fid-samples", type=positive_int, help="generated images per FID (default: the spec's)")
    p.add_argument("--train-limit", type=positive_int, help="train on the first N training images only")
    p.add_argument(
        "--enqueue",
        action="append",
        default=[],
        metavar="NAME=VALUE,...",
        help="try these parameters first, trained to the full budget as a baseline "
        "(e.g. lr=2e-4,batch_size=64,noise_dim=100); repeatable",
    )
    add_workers(p)
    add_artifact_store(p, writes=True)
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="PATH",
        help="warm start: every trial starts from this trial checkpoint's or exported ensemble's weights "
        "where the layers fit (the rest start fresh and are listed); the study remembers the file",
    )
    p.add_argument(
        "--init-member",
        type=int,
        metavar="N",
        help="with an exported ensemble: start from its member N, counted from 0 (default: its best member)",
    )
    p.add_argument(
        "--retrain-feature-net",
        action="store_true",
        help="a new study on MNIST or Fashion-MNIST trains its feature network from the recipe on this "
        "machine instead of using the one genopt ships (to check it); the study stores and records it",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: a bar only on a terminal)"
    )
    p.set_defaults(handler=run)


def parse_params(text: str) -> dict:
    """``lr=2e-4,batch_size=64`` -> ``{"lr": 0.0002, "batch_size": 64}``, typed by field."""
    params = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in SEARCHABLE:
            raise GenoptError(
                f"--enqueue {text!r}: expected NAME=VALUE pairs with NAME in {', '.join(SEARCHABLE)}"
            )
        try:
            params[name] = parse_value(name, value.strip())
        except GenoptError as exc:
            raise GenoptError(f"--enqueue: {exc}") from None
    return params


def run(args: argparse.Namespace) -> int:
    from genopt.study.stop import Stop

    stop = Stop(args.timeout)  # the budget counts from here
    # torch and Optuna load only once the arguments are good
    from genopt.paths import default_storage_url
    from genopt.study.progress import next_steps, study_summary
    from genopt.study.record.note import reproduce_command
    from genopt.study.runner import run_study

    spec, spec_path = find_spec(args.model, args.spec)
    spec = spec.override(
        model=args.model,
        dataset=args.dataset,
        max_epochs=args.epochs,
        seed=args.seed,
        fid_samples=args.fid_samples,
        train_limit=args.train_limit,
        image_size=args.image_size,
        channels=args.channels,
    )
    if args.data_dir is not None and args.dataset is None:
        from genopt.data.folder import is_image_folder

        if args.data_dir.is_dir() and is_image_folder(args.data_dir):  # named after its folder
            spec = spec.override(dataset=args.data_dir.resolve().name)
    name = args.study or f"{spec.model}-{spec.dataset}"
    enqueue = [parse_params(text) for text in args.enqueue]
    result = run_study(
        spec,
        trials=args.trials,
        study_name=name,
        storage_url=args.storage,
        data_dir=args.data_dir,
        strict=args.strict,
        enqueue=enqueue,
        progress=False if args.no_progress else None,
        command=reproduce_command(
            spec,
            study_name=name,
            trials=args.trials,
            spec_path=spec_path,
            data_dir=args.data_dir,
            strict=args.strict,
            storage_url=args.storage,
            artifact_store=args.artifact_store,
            enqueue=args.enqueue,
            init_from=args.init_from,
            init_member=args.init_member,
        ),
        workers=args.workers,
        workers_per_gpu=args.workers_per_gpu,
        artifact_store=args.artifact_store,
        init_from=args.init_from,
        init_member=args.init_member,
        retrain_feature_net=args.retrain_feature_net,
        stop=stop,
    )
    floor, accuracy = result.fid_floor, result.feature_accuracy
    print(study_summary(result.study, fid_floor=floor, feature_accuracy=accuracy, timeout=args.timeout))
    print(next_steps(name, args.storage or default_storage_url(), program=program()), flush=True)
    return exit_status(args.command, stop, result.study)
