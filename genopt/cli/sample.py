"""``genopt sample``: a PNG grid of images from an exported ensemble."""

from __future__ import annotations

import argparse
from pathlib import Path

from genopt.cli.options import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="write a PNG grid sampled from an exported ensemble",
        description="Sample images from a checkpoint written by `genopt ensemble` (its sha256 is checked "
        "first). A cGAN without --label draws one row per class.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="the ensemble .pt file")
    p.add_argument(
        "--n", type=positive_int, default=64, help="images (default 64; cGAN: rounded up to whole rows)"
    )
    p.add_argument(
        "--label",
        metavar="CLASS",
        help="draw only this class (cGAN): its name (an image folder's subfolder) or its index",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genopt.ensemble.sample import sample_grid  # torch loads only once the arguments are good

    path = sample_grid(checkpoint=args.checkpoint, n=args.n, label=args.label, seed=args.seed, out=args.out)
    print(f"wrote {path}")
    return 0
