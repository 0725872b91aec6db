"""``genopt ensemble``: combine a study's best generators, score the modes, export the chosen one."""

from __future__ import annotations

import argparse
from pathlib import Path

from genopt.cli._args import add_storage, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="export an ensemble of a study's best generators",
        description="Take the top-k COMPLETE trials by validation FID, score the best single generator, "
        "their pixel mean and a greedy mixture on validation and test FID, and export the chosen mode "
        "as storage/exports/<study>.pt with a .json beside it.",
    )
    p.add_argument("--study", required=True, help="the study to take the generators from")
    p.add_argument("--top-k", type=positive_int, default=5, help="candidates: the k best trials (default 5)")
    p.add_argument(
        "--mode",
        choices=("auto", "mean", "mixture"),
        default="auto",
        help="what to export; auto: the lower validation FID (default)",
    )
    add_storage(p)
    p.add_argument("--out", type=Path, help="the .pt file to write (default storage/exports/<study>.pt)")
    p.add_argument("--torch-export", action="store_true", help="also write a torch.export program (.pt2)")
    p.add_argument("--fid-samples", type=positive_int, help="generated images per FID (default: the study's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.export import export_ensemble  # torch loads only once the arguments are good

    result = export_ensemble(
        study_name=args.study,
        top_k=args.top_k,
        mode=args.mode,
        storage_url=args.storage,
        out=args.out,
        torch_export=args.torch_export,
        fid_samples=args.fid_samples,
    )
    print(summary(result))
    return 0


def summary(result) -> str:
    """The table printed at the end: FIDs of the three modes, the weights, the files written."""
    build, described = result.build, result.description
    members = ", ".join(f"{c['trial_number']} ({c['fid_validation']:.2f})" for c in described["candidates"])
    weights = ", ".join(
        f"{c['trial_number']}: {c['mixture_weight']:.2f}"
        for c in described["candidates"]
        if c["mixture_weight"]
    )
    lines = [
        f"ensemble of study {described['study']}: top {len(build.members)} trials (validation FID) {members}",
        f"  {'':<24}{'validation FID':>15}{'test FID':>10}",
    ]
    labels = {
        "best_single": f"best single (trial {described['best_single_trial']})",
        "mean": "mean",
        "mixture": "mixture",
    }
    for name, label in labels.items():
        s = build.scores[name]
        lines.append(f"  {label:<24}{s['validation']:>15.2f}{s['test']:>10.2f}")
    lines += [
        f"  {'mixture weights':<24}{weights}",
        f"  {'exported':<24}{described['mode']} -> {result.path} (+ .json"
        + (", .pt2" if "program" in described else "")
        + ")",
        f"  {'FID samples':<24}{described['fid_samples']}",
    ]
    return "\n".join(lines)
