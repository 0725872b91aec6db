"""``genopt study``: add trials to a study (created on first use) and print the best one."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from genopt.cli._args import add_storage, positive_int
from genopt.errors import GenoptError
from genopt.spec import MODELS, SEARCHABLE, StudySpec, load_spec


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="add trials to a study and print the best",
        description="Search lr, batch size and noise size (and whatever the spec adds) for a GAN or cGAN, "
        "scoring each trial by validation FID; the study lives in the storage and can be resumed.",
    )
    p.add_argument("--model", choices=MODELS, help="gan or cgan (default: the spec's, else gan)")
    p.add_argument("--trials", type=positive_int, required=True, help="trials to add to the study")
    p.add_argument("--dataset", help="mnist or fashion-mnist (default: the spec's)")
    p.add_argument("--data-dir", type=Path, help="a folder with the four IDX files to use instead")
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
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes sharing the trials, each with its share of CPU threads or its own GPU "
        "(default 1); more machines join with genopt worker",
    )
    p.add_argument("--artifact-dir", type=Path, help="artifact store folder (default storage/artifacts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
            params[name] = SEARCHABLE[name](value)
        except ValueError:
            raise GenoptError(
                f"--enqueue: {name} needs a {SEARCHABLE[name].__name__}, got {value!r}"
            ) from None
    return params


def run(args: argparse.Namespace) -> int:
    from genopt.study import run_study  # torch and Optuna load only once the arguments are good

    default_path = Path("studies") / f"{args.model or 'gan'}.toml"
    if args.spec is not None or default_path.is_file():
        spec = load_spec(args.spec or default_path)
    else:  # outside a checkout: the built-in defaults, which studies/*.toml spell out
        spec = StudySpec()
    spec = spec.override(
        model=args.model,
        dataset=args.dataset,
        max_epochs=args.epochs,
        seed=args.seed,
        fid_samples=args.fid_samples,
        train_limit=args.train_limit,
    )
    name = args.study or f"{spec.model}-{spec.dataset}"
    enqueue = [parse_params(text) for text in args.enqueue]
    spec_path = args.spec or (default_path if default_path.is_file() else None)
    result = run_study(
        spec,
        trials=args.trials,
        study_name=name,
        storage_url=args.storage,
        data_dir=args.data_dir,
        enqueue=enqueue,
        progress=not args.no_progress,
        command=reproduce_command(args, spec, name, spec_path),
        workers=args.workers,
        artifact_dir=args.artifact_dir,
    )
    print(summary(result))
    return 0


def reproduce_command(args: argparse.Namespace, spec: StudySpec, name: str, spec_path: Path | None) -> str:
    """The ``genopt study`` line that makes this study again, every budget spelled out."""
    words = ["genopt", "study", "--model", spec.model, "--dataset", spec.dataset, "--study", name]
    if spec_path is not None:
        words += ["--spec", str(spec_path)]
    if args.data_dir is not None:
        words += ["--data-dir", str(args.data_dir)]
    if args.storage is not None:
        words += ["--storage", args.storage]
    words += ["--trials", str(args.trials), "--epochs", str(spec.max_epochs), "--seed", str(spec.seed)]
    words += ["--fid-samples", str(spec.fid_samples)]
    if spec.train_limit is not None:
        words += ["--train-limit", str(spec.train_limit)]
    for text in args.enqueue:
        words += ["--enqueue", text]
    return shlex.join(words)


def summary(result) -> str:
    """The short table printed at the end of a run."""
    from optuna.trial import TrialState

    study = result.study
    states = [t.state for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in TrialState if states.count(s))
    lines = [f"study {study.study_name}: {len(states)} trials ({counts})"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        lines += [
            f"  {'best trial':<22}{best.number}",
            f"  {'parameters':<22}{params}",
            f"  {'validation FID':<22}{best.value:.2f}",
            f"  {'epochs':<22}{best.user_attrs.get('epochs')}",
        ]
    else:
        lines.append("  no trial completed yet")
    lines += [
        f"  {'floor (val vs test)':<22}{result.fid_floor:.2f}",
        f"  {'feature net accuracy':<22}{result.feature_accuracy:.4f}",
    ]
    return "\n".join(lines)
