"""Search efficiency: genopt's default search against the article's setting and random search.

Every trial runs genopt's own ``Objective`` (train, validation FID after every epoch, report,
prune, artifacts) in process, on a reduced setting: a training subset, a few epochs per trial, a
small FID sample and narrower MLPs than the seed's (G 128-256, D 256-128), which learn digits within
that budget (the seed's MLPs stay near noise-level FID on it, so every search would look alike).
Three searches with the same number of trials and the same seeds:

- genopt: its default sampler and pruner (``genopt.study.search``: multivariate TPE, Hyperband over epochs);
- article: Optuna's default ``TPESampler``, every trial trained to the full budget (no pruning);
- random: ``RandomSampler``, no pruning.

All three use the same seed per repetition: Optuna's TPE samples its first 10 trials at random
(``n_startup_trials``), so those trials are the random search's, and the searches differ by what
pruning saves and by TPE's later choices. Compute is images trained (epochs run x subset size).
"To reach" is the compute a search had spent when its best completed trial first matched the
other's best validation FID.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import tempfile

import _common
import optuna
import torch

from genopt.data import load_dataset
from genopt.metrics import FidEvaluator
from genopt.spec import StudySpec
from genopt.study.objective import Objective
from genopt.study.search import make_pruner, make_sampler

METHODS = ("genopt", "article", "random")
WIDTHS = {"generator": (128, 256), "discriminator": (256, 128)}
LABELS = {
    "genopt": "genopt: TPE (multivariate) + Hyperband",
    "article": "article: default TPE, no pruning",
    "random": "random search, no pruning",
}


def search(method: str, spec: StudySpec, trials: int, seed: int, dataset, evaluator, store) -> list[dict]:
    """One search; per trial (in order) the images it trained and its FID (None when pruned)."""
    spec = dataclasses.replace(spec, seed=seed)
    if method == "genopt":
        sampler, pruner = make_sampler(spec), make_pruner(spec)
    elif method == "article":
        sampler, pruner = optuna.samplers.TPESampler(seed=seed), optuna.pruners.NopPruner()
    else:
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    # A fixed name: Hyperband assigns trials to brackets by a hash of the study name and trial number.
    study = optuna.create_study(
        study_name=f"{method}-seed{seed}", direction="minimize", sampler=sampler, pruner=pruner
    )
    study.optimize(Objective(spec, dataset, evaluator, store, torch.device("cpu")), n_trials=trials)
    n = min(len(dataset.train), spec.train_limit)
    return [
        {
            "images": t.user_attrs.get("epochs", 0) * n,
            "fid": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
        }
        for t in study.trials
    ]


def total(run: list[dict]) -> int:
    return sum(t["images"] for t in run)


def best(run: list[dict]) -> float:
    return min((t["fid"] for t in run if t["fid"] is not None and math.isfinite(t["fid"])), default=math.inf)


def to_reach(run: list[dict], target: float) -> float:
    """Images trained until the run's best completed FID is at most ``target`` (inf: never)."""
    spent = 0
    for t in run:
        spent += t["images"]
        if t["fid"] is not None and t["fid"] <= target:
            return spent
    return math.inf


def ratio_text(values: list[float]) -> str:
    reached = [v for v in values if math.isfinite(v)]
    text = _common.median_range(values) if reached else "never"
    if len(reached) < len(values):
        text += f", reached in {len(reached)}/{len(values)}"
    return text


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    if args.quick:
        n_train, epochs, trials, fid_samples = 2048, 3, 10, 500
    else:
        n_train, epochs, trials, fid_samples = 8192, 9, 24, 1000
    seeds = [0, 1, 2]
    spec = StudySpec(
        model="gan",
        train_limit=n_train,
        max_epochs=epochs,
        fid_samples=fid_samples,
        generator_widths=WIDTHS["generator"],
        discriminator_widths=WIDTHS["discriminator"],
    )
    dataset = load_dataset("mnist")
    evaluator = FidEvaluator(dataset)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = optuna.artifacts.FileSystemArtifactStore(tmp)
        for seed in seeds:
            for method in METHODS:
                seconds, run = _common.timed(
                    lambda m=method, s=seed: search(m, spec, trials, s, dataset, evaluator, store)
                )
                runs[(method, seed)] = run
                print(
                    f"seed {seed} {method:8s}: {total(run):>9,} images, best FID {best(run):8.2f}, "
                    f"{seconds:.0f} s",
                    flush=True,
                )

    def ratios(a: str, b: str) -> list[float]:
        """a's compute to reach b's best over b's total compute, over every pair of seeds."""
        return [
            to_reach(runs[(a, sa)], best(runs[(b, sb)])) / total(runs[(b, sb)])
            for sa, sb in itertools.product(seeds, seeds)
        ]

    lines = _common.header("Search efficiency: genopt's default search against the article's and random")
    lines += [
        f"GAN on MNIST with narrower MLPs than the seed's (G {'-'.join(map(str, WIDTHS['generator']))}, "
        f"D {'-'.join(map(str, WIDTHS['discriminator']))}) and the seed's search space (lr, batch size, "
        f"noise size); each trial trains on "
        f"the first {n_train:,} training images for up to {epochs} epochs and is scored by validation FID "
        f"of {fid_samples:,} samples after every epoch (genopt's `Objective`, in process); {trials} trials "
        f"per search, seeds {', '.join(map(str, seeds))}. Compute = images trained.",
        "",
    ]
    rows = []
    for method in METHODS:
        compute = [total(runs[(method, s)]) for s in seeds]
        bests = [best(runs[(method, s)]) for s in seeds]
        rows.append(
            [
                LABELS[method],
                _common.median_range(compute, "{:,.0f}"),
                _common.median_range(bests),
                " / ".join(f"{b:.1f}" for b in bests),
            ]
        )
    lines += _common.table(["search", "images trained", "best FID", "best FID per seed"], rows)
    lines += [
        "",
        "Compute to reach another search's best FID, as a fraction of that search's total compute "
        f"(all {len(seeds) ** 2} seed pairs; median (min-max); 'never' counts as infinite):",
        "",
    ]
    pair_rows = [
        [LABELS[a], LABELS[b], ratio_text(ratios(a, b))]
        for a, b in itertools.permutations(METHODS, 2)
        if a == "genopt" or b == "genopt"
    ]
    lines += _common.table(["search", "reaching the best of", "compute / that search's compute"], pair_rows)
    same_seed = [
        to_reach(runs[("genopt", s)], best(runs[("article", s)])) / total(runs[("article", s)]) for s in seeds
    ]
    lines += ["", f"Same-seed pairs only, genopt reaching the article's best: {ratio_text(same_seed)}."]
    if args.png is not None:
        plot(args.png, runs, seeds)
    headline = statistics.median(ratios("genopt", "article"))
    _common.finish(args, lines, f"search_compute_ratio={headline:.3f}")


def plot(path, runs, seeds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    colors = {"genopt": "tab:blue", "article": "tab:orange", "random": "tab:green"}
    for method in METHODS:
        for i, seed in enumerate(seeds):
            xs, ys, spent, current = [], [], 0, math.inf
            for t in runs[(method, seed)]:
                spent += t["images"]
                if t["fid"] is not None and math.isfinite(t["fid"]):
                    current = min(current, t["fid"])
                if math.isfinite(current):
                    xs.append(spent / 1e6)
                    ys.append(current)
            ax.step(
                xs,
                ys,
                where="post",
                color=colors[method],
                alpha=0.8,
                label=LABELS[method] if i == 0 else None,
            )
    ax.set_xlabel("images trained (millions)")
    ax.set_ylabel("best validation FID so far")
    ax.set_yscale("log")
    ax.set_title("Best FID against compute (one line per seed)")
    ax.legend(fontsize=8)
    _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
