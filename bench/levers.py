"""What each cGAN lever does alone: one configuration trained with each lever on, scored every epoch.

The levers of the quality issue (EMA of the generator, projection and auxiliary-classifier
conditioning, spectral norm on the discriminator) are switched on one at a time on the article's
concat cGAN at a learning rate the default search finds (FACTS.md), trained on real MNIST and scored
after every epoch by genopt's own evaluation (FID, intra-FID, label accuracy on the validation split,
the fixed evaluation noise). This is the measurement behind the shipped defaults of studies/cgan.toml.
"""

from __future__ import annotations

import dataclasses
import time

import _common
import torch

from genopt.data import load_dataset
from genopt.metrics import FidEvaluator
from genopt.spec import StudySpec
from genopt.study.objective import evaluate_generator
from genopt.train import train

# (name, spec fields): the article's cGAN first, then one lever at a time, then the chosen pair.
LEVERS = [
    ("concat (article)", {}),
    ("concat + EMA", {"ema_decay": 0.999}),
    ("projection", {"conditioning": "projection"}),
    ("projection + EMA", {"conditioning": "projection", "ema_decay": 0.999}),
    ("acgan", {"conditioning": "acgan"}),
    ("acgan + EMA", {"conditioning": "acgan", "ema_decay": 0.999}),
    ("concat + EMA + spectral norm", {"ema_decay": 0.999, "spectral_norm": True}),
]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 10; --quick 2)")
    p.add_argument("--lr", type=float, default=1.5e-3, help="learning rate of every run (default 1.5e-3)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per lever (default 1)")
    p.add_argument("--only", help="comma-separated lever names to run (default: all)")
    args = p.parse_args()
    _common.setup(args)
    epochs = args.epochs or (2 if args.quick else 10)
    train_limit = 10_000 if args.quick else None
    samples = 2_000 if args.quick else 10_000
    dataset = load_dataset("mnist")
    evaluator = FidEvaluator(dataset, device="cpu")
    # The article's behaviour, to which each lever is added.
    base = StudySpec(
        model="cgan", max_epochs=epochs, lr=args.lr, batch_size=64, noise_dim=100, train_limit=train_limit,
        ema_decay=0.0, conditioning="concat",
    )  # fmt: skip

    rows, finals = [], {}
    chosen = LEVERS if not args.only else [lv for lv in LEVERS if lv[0] in args.only.split(",")]
    for name, fields in chosen:
        for seed in range(args.seeds):
            config = dataclasses.replace(base, **fields).run_config({}, seed=seed)
            curve: list[tuple[int, dict[str, float]]] = []

            def on_epoch(generator, stats, curve=curve):
                curve.append((stats.epoch, evaluate_generator(evaluator, generator, samples).as_dict()))

            start = time.perf_counter()
            result = train(config, dataset, on_epoch=on_epoch, device=torch.device("cpu"))
            seconds = time.perf_counter() - start
            for epoch, s in curve:
                rows.append(
                    [
                        name,
                        seed,
                        epoch,
                        f"{s['fid']:.1f}",
                        f"{s['intra_fid']:.1f}",
                        f"{s['label_accuracy']:.3f}",
                    ]
                )
            best = (
                min(curve, key=lambda c: c[1]["intra_fid"])
                if curve
                else (0, {"intra_fid": float("nan"), "label_accuracy": float("nan")})
            )
            finals.setdefault(name, []).append(
                (best[1]["intra_fid"], best[1]["label_accuracy"], best[0], seconds, result.stop_reason)
            )
    summary = []
    for name, runs in finals.items():
        summary.append(
            [
                name,
                _common.median_range([r[0] for r in runs], "{:.1f}"),
                _common.median_range([r[1] for r in runs], "{:.3f}"),
                ", ".join(str(r[2]) for r in runs),
                _common.median_range([r[3] for r in runs], "{:.0f}"),
            ]
        )
    lines = _common.header("cGAN levers, one at a time")
    lines += [
        f"cGAN, lr {args.lr:g}, batch 64, noise 100, {epochs} epochs on "
        f"{train_limit or len(dataset.train):,} training images, {args.seeds} seed(s); scores on "
        f"{samples:,} samples against the validation split after every epoch.",
        "",
        "Best epoch by intra-FID (median and range over seeds):",
        "",
        *_common.table(["lever", "intra-FID", "label accuracy", "best epoch", "seconds"], summary),
        "",
        "Every epoch:",
        "",
        *_common.table(["lever", "seed", "epoch", "FID", "intra-FID", "label accuracy"], rows),
    ]
    best = min(finals, key=lambda k: min(r[0] for r in finals[k]))
    _common.finish(args, lines, f"levers_best={best.replace(' ', '_')}")


if __name__ == "__main__":
    main()
