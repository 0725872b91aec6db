"""``genopt ensemble``: combine a study's best generators, score the modes, export the chosen one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from genopt.cli.options import add_artifact_store, add_data_dir, add_storage, positive_int

if TYPE_CHECKING:
    from genopt.metrics.scores import ScoreInfo


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="export an ensemble of a study's best generators",
        description="Take the top-k COMPLETE trials by the study's validation objective (FID, or intra-FID "
        "for a cGAN), score the best single generator, their pixel mean and a greedy mixture on validation "
        "and test (FID, intra-FID, label accuracy), and export the chosen mode "
        "as storage/exports/<study>.pt with a .json beside it.",
    )
    p.add_argument("--study", required=True, help="the study to take the generators from")
    p.add_argument("--top-k", type=positive_int, default=5, help="candidates: the k best trials (default 5)")
    p.add_argument(
        "--mode",
        choices=("auto", "mean", "mixture"),
        default="auto",
        help="what to export; auto: the lower validation objective (default)",
    )
    add_storage(p)
    p.add_argument("--out", type=Path, help="the .pt file to write (default storage/exports/<study>.pt)")
    p.add_argument("--torch-export", action="store_true", help="also write a torch.export program (.pt2)")
    p.add_argument(
        "--fid-samples", type=positive_int, help="generated images per score (default: the study's)"
    )
    p.add_argument(
        "--rejection",
        choices=("auto", "classes", "none"),
        default="auto",
        help="classes: sample an unconditional ensemble through a filter that keeps images its feature "
        "network is sure of, in the training split's class proportions; auto: classes where it applies "
        "(unconditional, labelled data; default)",
    )
    p.add_argument(
        "--rejection-confidence",
        type=probability,
        metavar="P",
        help="the filter keeps only images its network gives a top class probability of at least P, "
        "in (0, 1) (default 0.99)",
    )
    add_data_dir(p)
    add_artifact_store(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.ensemble.export import export_ensemble  # torch loads only once the arguments are good

    result = export_ensemble(
        study_name=args.study,
        top_k=args.top_k,
        mode=args.mode,
        storage_url=args.storage,
        out=args.out,
        torch_export=args.torch_export,
        fid_samples=args.fid_samples,
        data_dir=args.data_dir,
        artifact_store=args.artifact_store,
        rejection=args.rejection,
        confidence=args.rejection_confidence,
    )
    print(summary(result))
    return 0


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1, else one line naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def summary(result) -> str:
    """The table printed at the end: each mode's scores on validation and test, the weights, the files."""
    from genopt.metrics.scores import SCORES

    build, described = result.build, result.description
    objective = SCORES[build.objective]
    members = ", ".join(
        f"{c['trial_number']} ({objective.format(c['value'])})" for c in described["candidates"]
    )
    weights = ", ".join(
        f"{c['trial_number']}: {c['mixture_weight']:.2f}"
        for c in described["candidates"]
        if c["mixture_weight"]
    )
    names = [n for n in SCORES if n in build.scores["best_single"]["validation"]]
    head = "".join(
        f"{_SPLITS[split]} {SCORES[n].label}".rjust(17) for split in ("validation", "test") for n in names
    )
    lines = [
        f"ensemble of study {described['study']}: top {len(build.members)} trials by validation "
        f"{objective.label}: {members}",
        f"  {'':<24}{head}",
    ]
    labels = {
        "best_single": f"best single (trial {described['best_single_trial']})",
        "mean": "mean",
        "mixture": "mixture",
        "rejection": f"{described['mode']} + rejection",
    }
    for name, label in ((k, v) for k, v in labels.items() if k in build.scores):
        cells = "".join(
            _cell(build.scores[name][split].get(n), SCORES[n])
            for split in ("validation", "test")
            for n in names
        )
        lines.append(f"  {label:<24}{cells}")
    lines += [
        f"  {'mixture weights':<24}{weights}",
        f"  {'exported':<24}{described['mode']} -> {result.path} (+ .json"
        + (", .pt2" if "program" in described else "")
        + ")",
        f"  {'samples per score':<24}{described['fid_samples']}",
    ]
    if "rejection" in described:
        filtered = described["rejection"]
        lines.append(
            f"  {'rejection sampling':<24}keeps {filtered['acceptance_rate']:.0%} of candidates, those its "
            f"network is at least {filtered['confident_at_least']:g} sure of (see its JSON)"
        )
    return "\n".join(lines)


_SPLITS = {"validation": "val", "test": "test"}


def _cell(value: float | None, score: ScoreInfo) -> str:
    return ("-" if value is None else score.format(value)).rjust(17)
