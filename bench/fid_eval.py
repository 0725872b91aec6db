"""Evaluation cost: one evaluation of 10,000 generated images against one training epoch at batch 64.

The evaluation is what the objective runs after every epoch of a cGAN trial
(``genopt.study.objective.evaluate_generator``): generation, one feature-net pass for features and
class logits, and FID, intra-FID and label accuracy against the validation split's cached
statistics. The epoch is genopt's ``train`` over the whole train split with the same
generator architecture. They run alternately in one process.
"""

from __future__ import annotations

import statistics
import time

import _common
import torch

from genopt.data import load_dataset
from genopt.metrics import EVAL_NOISE_SEED, FidEvaluator, frechet_distance
from genopt.spec import StudySpec
from genopt.study.objective import evaluate_generator
from genopt.train import build_models, train

FID_SAMPLES = 10_000


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    rounds = 1 if args.quick else 3
    device = torch.device("cpu")
    dataset = load_dataset("mnist")
    evaluator = FidEvaluator(dataset, device=device)
    first_source = evaluator.real_source
    # A second evaluator, as every later trial and process makes: it must find the statistics cached.
    evaluator = FidEvaluator(dataset, device=device)
    cached = evaluator.real_source == "cache"
    config = StudySpec(model="cgan", max_epochs=1).run_config(
        {"lr": 2e-4, "batch_size": 64, "noise_dim": 100}, seed=0
    )
    generator, _ = build_models(config, dataset)
    generator.eval()

    def sample(labels, noise=None):
        return generator.sample(labels, generator=noise)

    evaluator.score(sample, 1000)  # warm-up
    before = evaluator.images_featurized
    times: dict[str, list[float]] = {k: [] for k in ("epoch", "fid", "generation", "features", "distance")}
    for r in range(rounds):
        result = train(config, dataset, device=device)
        times["epoch"].append(result.epochs[0].seconds)
        seconds, _ = _common.timed(lambda: evaluate_generator(evaluator, generator, FID_SAMPLES))
        times["fid"].append(seconds)
        # the same evaluation in parts
        labels = evaluator.labels(FID_SAMPLES)
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        start = time.perf_counter()
        with torch.no_grad():
            images = torch.cat([sample(labels[i : i + 500], noise) for i in range(0, FID_SAMPLES, 500)])
        times["generation"].append(time.perf_counter() - start)
        seconds, _ = _common.timed(lambda images=images: evaluator.score_images(images))
        mean, cov = evaluator.reference_statistics("validation")
        distance, _ = _common.timed(lambda m=mean, c=cov: frechet_distance(m, c, m + 0.1, c))
        times["distance"].append(distance)
        times["features"].append(seconds - distance)
        print(
            f"round {r + 1}/{rounds}: epoch {times['epoch'][-1]:.1f} s, FID {times['fid'][-1]:.2f} s",
            flush=True,
        )
    featurized = evaluator.images_featurized - before
    never_recomputed = featurized == rounds * 2 * FID_SAMPLES
    ratios = [f / e for f, e in zip(times["fid"], times["epoch"], strict=True)]

    n = len(dataset.train)
    lines = _common.header("FID cost: one evaluation against one training epoch")
    lines += [
        f"Generator: the seed's cGAN MLP (noise 100), fp32. Epoch: genopt's `train` over the {n:,}-image "
        f"train split at batch 64. Evaluation: FID, intra-FID and label accuracy of {FID_SAMPLES:,} "
        f"generated images (batches of {evaluator.batch_size}) against the validation split, as the "
        "objective runs it after every epoch. {rounds} rounds, alternated; "
        "median (min-max).",
        "",
    ]
    lines += _common.table(
        ["what", "seconds", "share of one epoch"],
        [
            ["one training epoch, batch 64", _common.median_range(times["epoch"]), "1"],
            [
                f"one evaluation (FID, intra-FID, label accuracy) of {FID_SAMPLES:,} images",
                _common.median_range(times["fid"]),
                _common.median_range(ratios, "{:.3f}"),
            ],
            ["  of which: generation", _common.median_range(times["generation"]), ""],
            ["  of which: feature net (+ metric update)", _common.median_range(times["features"]), ""],
            ["  of which: Fréchet distance (128-d)", _common.median_range(times["distance"], "{:.4f}"), ""],
        ],
    )
    lines += [
        "",
        f"Validation statistics: first evaluator `{first_source}`, every later one `"
        f"{'cache' if cached else 'computed'}`; images featurized during the rounds: {featurized:,} = "
        f"{rounds} x 2 x {FID_SAMPLES:,} generated images only, so the {len(dataset.validation):,} "
        f"validation images were {'never' if never_recomputed else 'SOMETIMES'} featurized again.",
    ]
    if args.png is not None:
        plot(args.png, times)
    if not (cached and never_recomputed):
        print("WARNING: validation statistics were recomputed")
    _common.finish(args, lines, f"fid_eval_over_epoch={statistics.median(ratios):.3f}")


def plot(path, times) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    epoch = statistics.median(times["epoch"])
    ax.barh(["training epoch"], [epoch], color="tab:blue")
    left = 0.0
    for part, color in (("generation", "tab:orange"), ("features", "tab:green"), ("distance", "tab:red")):
        value = statistics.median(times[part])
        ax.barh(["FID, 10k images"], [value], left=left, color=color, label=part)
        left += value
    ax.set_xlabel("seconds (median)")
    ax.legend(loc="lower right")
    ax.set_title("FID evaluation against one training epoch (batch 64)")
    _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
