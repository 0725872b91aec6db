"""GAN probes: train variants of the shipped GAN (``studies/gan.toml``) with fixed parameters, every
epoch scored, to choose its default by measurement (docs/quality.md, "The unconditional GAN").

A variant is ``NAME:FIELD=VALUE,...``: any run field of the spec (``lr``, ``batch_size``,
``noise_dim``, ``ema_decay``, ``spectral_norm``, ``generator_channels=128/64``, ...) over the
shipped spec's fixed values. Each trains for ``--epochs`` on the full train split, one process and
one thread per variant (``--workers`` at a time), and every epoch is scored on the validation split
(FID, class coverage, unsure share) as a study scores it. The best epoch's generator (by validation
FID, as ``select_epoch = "best"`` chooses) is then scored on the test split, judged by the second
classifier (``bench/second_classifier.py``: its unsure share) and its grid written to ``--grids``.

``--quick``: two variants, one epoch on 2,048 images, 1,000 samples a score: the pipeline only.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import time
from pathlib import Path

from bench import harness
from genopt.spec.toml import load_spec

SPEC = harness.ROOT / "studies" / "gan.toml"
BASE = "lr=1.4e-3,batch_size=48,noise_dim=100"  # the middle of the shipped space
VARIANTS = [f"shipped:{BASE}", "lr-4e-4:lr=4e-4,batch_size=48,noise_dim=100"]
SCORES = ("fid", "class_coverage", "unsure_share")


def parse(variant: str) -> tuple[str, dict]:
    """``NAME:FIELD=VALUE,...`` as (name, {field: value}), values typed as the spec's fields."""
    name, _, body = variant.partition(":")
    spec = load_spec(SPEC)
    values = {}
    for pair in filter(None, body.split(",")):
        key, _, text = pair.partition("=")
        current = getattr(spec, key, None) if key not in ("lr", "batch_size", "noise_dim") else 1.0
        if key in ("batch_size", "noise_dim"):
            values[key] = int(text)
        elif isinstance(current, bool):
            values[key] = text.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            values[key] = tuple(int(w) for w in text.split("/"))
        elif isinstance(current, int):
            values[key] = int(text)
        elif isinstance(current, float):
            values[key] = float(text)
        else:
            values[key] = text
    return name, values


def probe(job: tuple[str, dict, int, int, int | None, int, str | None]) -> dict:
    """Train one variant; its per-epoch validation scores and its best epoch's test scores."""
    import torch

    from bench import second_classifier
    from genopt.data import load_dataset
    from genopt.grid import save_grid
    from genopt.metrics import FidEvaluator
    from genopt.study.objective import evaluate_generator
    from genopt.train import train

    torch.set_num_threads(1)
    name, values, epochs, seed, train_limit, samples, grids = job
    spec = load_spec(SPEC)
    params = {k: v for k, v in values.items() if k in ("lr", "batch_size", "noise_dim")}
    spec = dataclasses.replace(
        spec,
        **{k: v for k, v in values.items() if k not in params},
        max_epochs=epochs,
        train_limit=train_limit,
    )
    dataset = load_dataset(spec.dataset)
    evaluator = FidEvaluator(dataset, device="cpu")
    rows: list[dict] = []
    best: dict = {}
    start = time.perf_counter()

    def on_epoch(generator, stats) -> None:
        scores = evaluate_generator(evaluator, generator, samples).as_dict()
        rows.append(
            {k: round(scores[k], 4) for k in SCORES} | {"seconds": round(time.perf_counter() - start)}
        )
        print(f"{name} epoch {stats.epoch}: " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
        if not best or scores["fid"] < best["fid"]:
            best.update(fid=scores["fid"], epoch=stats.epoch, generator=copy.deepcopy(generator))

    train(spec.run_config(params, seed=seed), dataset, on_epoch=on_epoch, device=torch.device("cpu"))
    generator = best["generator"]
    noise = torch.Generator().manual_seed(seed + 1)
    stats = evaluator.sample_statistics(
        lambda labels: generator.sample(labels, generator=noise), samples, conditional=False
    )
    test = evaluator.scores_of(stats, split="test").as_dict()
    images = generator.sample(torch.zeros(samples, dtype=torch.int64), generator=noise)
    second = second_classifier.judge(
        second_classifier.classifier(dataset), images, torch.zeros(samples, dtype=torch.int64)
    )
    if grids:
        save_grid(generator, Path(grids) / f"probe_{name}_s{seed}.png")
    return {
        "name": name,
        "epochs": rows,
        "best_epoch": best["epoch"],
        "test": test,
        "second_unsure": second[1],
    }


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--variant", action="append", help="NAME:FIELD=VALUE,... (repeatable; default: two)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per variant (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="variants trained at once, a thread each")
    p.add_argument("--grids", type=Path, help="write each best epoch's grid into this folder")
    args = p.parse_args()
    variants = [parse(v) for v in (args.variant or VARIANTS)]
    epochs, limit, samples = (1, 2_048, 1_000) if args.quick else (args.epochs, None, 10_000)
    report = harness.Report("GAN probes: variants of studies/gan.toml, every epoch scored", args)
    if args.grids:
        args.grids.mkdir(parents=True, exist_ok=True)
    grids = str(args.grids) if args.grids else None
    jobs = [(name, values, epochs, args.seed, limit, samples, grids) for name, values in variants]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(probe, jobs)
    report.add(f"{epochs} epochs, seed {args.seed}, {samples:,} samples a score, one thread a variant.", "")
    report.table(
        [
            "variant",
            "validation FID by epoch",
            "best epoch: FID / coverage / unsure",
            "test FID / coverage / unsure",
            "unsure, second classifier",
            "seconds",
        ],
        [
            [
                f"{name} ({', '.join(f'{k}={v}' for k, v in values.items())})",
                " ".join(f"{e['fid']:.2f}" for e in r["epochs"]),
                "{}: {fid:.2f} / {class_coverage:.3f} / {unsure_share:.3f}".format(
                    r["best_epoch"], **r["epochs"][r["best_epoch"] - 1]
                ),
                "{fid:.2f} / {class_coverage:.3f} / {unsure_share:.3f}".format(**r["test"]),
                f"{r['second_unsure']:.3f}",
                r["epochs"][-1]["seconds"],
            ]
            for (name, values), r in zip(variants, results, strict=True)
        ],
    )
    report.finish()


if __name__ == "__main__":
    main()
