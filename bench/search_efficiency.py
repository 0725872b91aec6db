"""Search efficiency: the shipped default search against the article's setting, replayed.

Both searches run genopt's own suggesting, sampler, pruner and epoch judging (``bench/replay.py``)
with training replaced by a surrogate of the shipped DCGAN's learning-curve table
(``bench/data/curves-dcgan.json.gz``, built by ``bench/curves.py``), on the grid ``studies/cgan.toml``
ships (``search_space``). Each runs 100 trials per seed over 30 seeds (``--quick``: 15, and k=8
without the surrogate check); its first 20 and 50 trials are its 20- and 50-trial searches (a
sampler does not know how many trials follow).

The default is ``StudySpec``'s search fields, which ``studies/*.toml`` ship. The reference is the
article's setting: Optuna's default ``TPESampler`` (univariate, 10 random startup trials), every
trial trained to the full budget, no pruning. Both score trials alike (a cGAN's intra-FID at its best
epoch); compute is images trained, and the wall seconds are the table's.

- The common target, per seed and number of trials: the article setting's best after that many
  trials (same seed). Each search's compute to reach it is the images it trained until its own best
  was within 1 % (``REACH_TOLERANCE``) of the target: the same tolerance for both sides.
- ``search_compute_ratio``: per seed, the default's compute to reach the target over the article
  setting's compute to reach it; infinite when the default never got there; the median over seeds,
  at 50 trials.
- ``search_reached``: the share of seeds in which the default got there at 50 trials;
  ``search_reached_100`` at 100. The report also gives them with no tolerance (the target itself).

Why 1 %: one training run's intra-FID varies by about 7 % with its seed (the table's two replicates
of each configuration), while near the table's best the searches' bests differ by hundredths: with no
tolerance, "reached" is decided by which search landed nearest the lowest point.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import statistics
import time
import warnings

import numpy as np
import optuna
import torch

from bench import curves, harness
from bench.replay import Surrogate, Table, held_out_rank_correlation, replay
from genopt.spec import Param, StudySpec, load_spec

SEEDS, QUICK_SEEDS = 30, 15
# A search has reached the article setting's best when its own best is within this share of it.
REACH_TOLERANCE = 0.01
TRIAL_COUNTS = (20, 50, 100)
SEARCH_FIELDS = (
    "sampler", "multivariate", "startup_trials", "tpe_after", "pruner", "min_resource", "behind_factor"
)  # fmt: skip
ARTICLE = {
    "sampler": "tpe", "multivariate": False, "startup_trials": 10, "tpe_after": 0, "pruner": "none",
    "min_resource": 1,
}  # fmt: skip
SHIPPED = harness.ROOT / "studies" / "cgan.toml"
K_NEIGHBOURS = (1, 3, 5, 8)
# --quick's neighbours: the k with the best held-out rank correlation on the table (0.903).
QUICK_K = 8


def default_search() -> dict:
    """The search fields genopt ships (StudySpec's defaults; a test checks studies/*.toml match)."""
    spec = StudySpec()
    return {f: getattr(spec, f) for f in SEARCH_FIELDS}


def search_space(setting: StudySpec) -> tuple[Param, ...]:
    """The shipped spec's search space, its grid included (batch sizes in 4s, noise sizes in 10s),
    over which GP's suggestions cost an eighth of those over every integer. The table's
    configurations may lie off the grid, which the surrogate does not mind; a table of other ranges
    is refused."""
    shipped = load_spec(SHIPPED).params

    def bounds(params) -> dict:
        return {p.name: (p.low, p.high, p.log, p.choices) for p in params}

    if bounds(shipped) != bounds(setting.params):
        raise ValueError(f"the table's search space is not {harness.relative(SHIPPED)}'s")
    return shipped


_SURROGATE: dict = {}


def replay_one(job: tuple[int, dict, int, int]) -> list[tuple[float, float, float | None]]:
    """One replayed search: per trial (images, seconds, value or None when pruned)."""
    k, search, seed, trials = job
    torch.set_num_threads(1)  # the GP sampler's small tensors: one thread per replaying process
    warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings, once per process
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if k not in _SURROGATE:
        _SURROGATE[k] = Surrogate(Table.load(curves.DCGAN_TABLE), k=k)
    setting = _SURROGATE[k].table.setting
    spec = dataclasses.replace(setting, seed=seed, params=search_space(setting), **search)
    return [(t.images, t.seconds, t.value) for t in replay(spec, _SURROGATE[k], trials)]


def run_all(k: int, searches: dict[str, dict], seeds: int, trials: int, workers: int) -> dict:
    """Each search's runs, one per seed, replayed in ``workers`` processes."""
    jobs = [(k, search, seed, trials) for search in searches.values() for seed in range(seeds)]
    # One BLAS and OpenMP thread per replaying process (read at import, so set before they spawn):
    # the GP sampler's tiny products only lose to threads fighting over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        done = pool.map(replay_one, jobs, chunksize=1)
    return {name: done[i * seeds : (i + 1) * seeds] for i, name in enumerate(searches)}


def total(run, n: int, cost: int = 0) -> float:
    return sum(t[cost] for t in run[:n])


def best(run, n: int) -> float:
    return min((t[2] for t in run[:n] if t[2] is not None), default=math.inf)


def to_reach(run, n: int, target: float, cost: int = 0) -> float:
    """Compute spent until the run's best score is at most ``target`` (inf: never)."""
    spent = 0.0
    for t in run[:n]:
        spent += t[cost]
        if t[2] is not None and t[2] <= target:
            return spent
    return math.inf


def ratios(runs_a, runs_b, n: int, cost: int = 0, tolerance: float = REACH_TOLERANCE) -> list[float]:
    """Per seed: a's compute to come within ``tolerance`` of the common target over b's compute to
    come within ``tolerance`` of it, the target being b's best after ``n`` trials. Both sides are
    measured alike: b reaches its own best's tolerance band at the first trial inside it, which may
    be long before its last."""
    out = []
    for a, b in zip(runs_a, runs_b, strict=True):
        target = best(b, n) * (1 + tolerance)
        out.append(to_reach(a, n, target, cost) / to_reach(b, n, target, cost))
    return out


def summary(values: list[float]) -> tuple[float, float]:
    """(median ratio, share of seeds that reached)."""
    return statistics.median(values), sum(math.isfinite(v) for v in values) / len(values)


def fmt(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.2f}"


def headlines(default_runs, article_runs, n: int) -> list[str]:
    ratio, reached = summary(ratios(default_runs, article_runs, n))
    return [f"search_compute_ratio={fmt(ratio)}", f"search_reached={reached:.2f}"]


def targets(default_runs, article_runs) -> list[str]:
    """The issue's three figures: compute ratio and reached at 50 trials, reached at 100."""
    _, reached_100 = summary(ratios(default_runs, article_runs, 100))
    return [*headlines(default_runs, article_runs, 50), f"search_reached_100={reached_100:.2f}"]


def exact(default_runs, article_runs) -> str:
    """The same three figures with no tolerance: at most the article setting's very best."""
    figures = [summary(ratios(default_runs, article_runs, n, tolerance=0.0)) for n in (50, 100)]
    return (
        f"With no tolerance: compute ratio {fmt(figures[0][0])} and reached {figures[0][1]:.2f} at 50 "
        f"trials, reached {figures[1][1]:.2f} at 100."
    )


def surrogate_check(table: Table) -> list[list]:
    """Held-out rank correlation of predicted against real best intra-FID, per k (5 random 10 % splits)."""
    rows = []
    for k in K_NEIGHBOURS:
        rhos = [held_out_rank_correlation(table, "intra_fid", k, fraction=0.1, seed=s) for s in range(5)]
        rows.append([k, f"{statistics.median(rhos):.3f}", " / ".join(f"{r:.2f}" for r in rhos)])
    return rows


def describe(search: dict) -> str:
    if search["sampler"] == "gp":
        sampler = f"GP, {search['startup_trials']} startup trials"
        if search.get("tpe_after"):
            sampler += f", multivariate TPE from trial {search['tpe_after']}"
    elif search["sampler"] == "tpe":
        kind = "multivariate" if search["multivariate"] else "univariate"
        sampler = f"TPE {kind}, {search['startup_trials']} startup trials"
    else:
        sampler = search["sampler"]
    pruner = search["pruner"]
    if pruner == "behind_best":
        pruner += f" (factor {search['behind_factor']}) from {search['min_resource']} epoch(s)"
    elif pruner != "none":
        pruner += f" from {search['min_resource']} epoch(s)"
    return f"{sampler}, pruner {pruner}"


def space(params: tuple[Param, ...]) -> str:
    """A search space in words: ``lr 0.0008..0.0025 (log), batch_size 32..64 step 4, ...``."""
    return ", ".join(
        f"{p.name} {p.low:g}..{p.high:g}{' (log)' if p.log else ''}{f' step {p.step:g}' if p.step else ''}"
        for p in params
    )


def describe_table(table: Table) -> str:
    s = table.setting
    runs = min(c.replicates for c in table.curves)
    mean = f"; each configuration's curve is the mean of {runs} runs with other seeds" if runs > 1 else ""
    return (
        f"Table: `{harness.relative(curves.DCGAN_TABLE)}`, {len(table.configs)} configurations of its "
        f"search space ({space(s.params)}) trained for real by `{table.command}` on "
        f"{table.machine.split(' (')[0].split(',')[0]}: the shipped conditional DCGAN (G "
        f"{'-'.join(map(str, s.generator_channels))}, D {'-'.join(map(str, s.discriminator_channels))} "
        f"channels), the first {s.train_limit:,} MNIST training images, {s.max_epochs} epochs, EMA "
        f"{s.ema_decay}, every epoch scored on {s.fid_samples:,} validation samples (intra-FID, FID, "
        f"label accuracy){mean}."
    )


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, help=f"seeds per search (default {SEEDS}; --quick {QUICK_SEEDS})")
    p.add_argument("--workers", type=int, default=2, help="processes replaying searches")
    args = p.parse_args()
    seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    table = Table.load(curves.DCGAN_TABLE)
    default = default_search()
    report = harness.Report("Search efficiency: candidates replayed on a learning-curve table", args)
    report.add(describe_table(table), "")
    k = QUICK_K
    if not args.quick:
        report.add(
            "Surrogate check: Spearman rank correlation of predicted against real best intra-FID of "
            "held-out configurations (10 % of the table, 5 random splits), per number of neighbours k:",
            "",
        )
        check = surrogate_check(table)
        report.table(["k", "median rho", "per split"], check)
        k = max(check, key=lambda r: float(r[1]))[0]
    started = time.perf_counter()
    runs = run_all(k, {"default": default, "article": ARTICLE}, seeds, max(TRIAL_COUNTS), args.workers)
    report.add(
        f"Replays with k={k}: the shipped default ({describe(default)}) and the article's setting "
        f"({describe(ARTICLE)}), {seeds} seeds x {max(TRIAL_COUNTS)} trials on the space "
        f"{space(search_space(table.setting))} in {time.perf_counter() - started:.0f} s. Per search and "
        "number of trials, with the article setting's best after that many trials (same seed) as the "
        "common target: the median over seeds of (images the search trained until its best intra-FID "
        f"was within {REACH_TOLERANCE:.0%} of the target) / (images the article setting trained until "
        f"its best was within {REACH_TOLERANCE:.0%} of it), 'inf' when it never got there, and the "
        "share of seeds that got there; then the median best intra-FID and the median images trained "
        "(millions).",
        "",
    )
    rows = []
    for name in runs:
        row = [name]
        for n in TRIAL_COUNTS:
            ratio, reached = summary(ratios(runs[name], runs["article"], n))
            row += [
                f"{fmt(ratio)} / {reached:.2f}",
                f"{statistics.median(best(r, n) for r in runs[name]):.1f}",
                f"{statistics.median(total(r, n) / 1e6 for r in runs[name]):.2f}",
            ]
        rows.append(row)
    head = ["search", *(f"{n}: {c}" for n in TRIAL_COUNTS for c in ("ratio / reached", "best", "Mimages"))]
    report.table(head, rows)
    wall = [(n, *summary(ratios(runs["default"], runs["article"], n, cost=1))) for n in TRIAL_COUNTS]
    report.add(
        "The shipped default by wall seconds instead of images (the table's seconds): "
        + "; ".join(f"{n} trials: ratio {fmt(r)}, reached {f:.2f}" for n, r, f in wall),
        "",
        "Shipped default against the article's setting, per number of trials:",
        "",
        *(
            f"- {n} trials: `" + "`, `".join(headlines(runs["default"], runs["article"], n)) + "`"
            for n in TRIAL_COUNTS
        ),
        "",
        exact(runs["default"], runs["article"]),
    )
    if args.png is not None:
        plot(args.png, runs, default)
    report.headlines += targets(runs["default"], runs["article"])
    report.finish()


def plot(path, runs: dict, default: dict) -> None:
    """Best-so-far intra-FID against images trained: median and quartiles over seeds, per search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, max(total(r, max(TRIAL_COUNTS)) for rs in runs.values() for r in rs), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("default", "-"), ("article", "--")):
        curves_ = np.array([best_so_far(r, grid) for r in runs[name]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN columns before the first completed trial
            q1, med, q3 = np.nanpercentile(curves_, [25, 50, 75], axis=0)
        # Drawn while at least half the seeds are still searching.
        thin = np.isfinite(curves_).sum(axis=0) < len(curves_) / 2
        q1[thin], med[thin], q3[thin] = np.nan, np.nan, np.nan
        label = f"shipped: {describe(default)}" if name == "default" else f"article: {describe(ARTICLE)}"
        (line,) = ax.plot(grid / 1e6, med, style, label=label)
        ax.fill_between(grid / 1e6, q1, q3, color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("images trained (millions)")
    ax.set_ylabel("best intra-FID so far")
    ax.set_title("Replayed searches, 100 trials, median and quartiles over seeds")
    ax.legend(fontsize=7)
    harness.save_figure(fig, path)


def best_so_far(run, grid: np.ndarray) -> np.ndarray:
    """The run's best score after each amount of compute in ``grid`` (NaN before its first)."""
    spent, current, xs, ys = 0.0, math.inf, [], []
    for images, _, value in run:
        spent += images
        if value is not None:
            current = min(current, value)
        xs.append(spent)
        ys.append(current)
    idx = np.searchsorted(np.array(xs), grid, side="right") - 1
    out = np.where(idx >= 0, np.array(ys)[np.clip(idx, 0, None)], np.nan)
    out[~np.isfinite(out)] = np.nan
    out[grid > spent] = np.nan  # the run ended there
    return out


if __name__ == "__main__":
    main()
