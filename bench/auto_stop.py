"""--trials auto replayed: the trials its stopping rule runs, and how far its best is from 100 trials'.

The shipped default search is replayed to 100 trials per seed on a learning-curve table (by
default the shipped DCGAN's), as bench/search_efficiency.py replays it. A search does not know when
it will be stopped, so one 100-trial run per seed answers every rule: ``Stagnation.stops_after``
(genopt.study.search.stopping, what ``--trials auto`` runs) says after how many trials each rule of a
grid would have stopped it: the best's gain over the last ``patience`` scored trials at most the
threshold.
Per rule, over the seeds: the trials run (median and range); the gap, how much worse the best
intra-FID at the stop is than the same run's best after 100 trials (median, and the share of seeds
within 1 % and 5 %); and the share of the 100 trials' images it trained.

Headlines, for the rule the spec ships (``StudySpec``'s ``auto_*`` fields): ``auto_trials`` (the
median trials run) and ``auto_gap`` (the median gap, a fraction). ``--quick``: 15 seeds.
"""

from __future__ import annotations

import statistics
import time

from bench import harness
from bench import search_efficiency as se
from genopt.spec import StudySpec
from genopt.study.search.stopping import Stagnation

PATIENCES = (10, 15, 20, 25, 30)
MIN_IMPROVEMENTS = (0.0, 0.005, 0.01, 0.02)
CAP = 100


def outcome(rule: Stagnation, run: list) -> tuple[int, float, float]:
    """(trials run, gap of the best at the stop from the best at 100, share of the images trained)."""
    stop = rule.stops_after([value for _, _, value in run]) or len(run)
    gap = se.best(run, stop) / se.best(run, len(run)) - 1
    return stop, gap, se.total(run, stop) / se.total(run, len(run))


def row(name: str, rule: Stagnation, runs: list) -> list:
    stops, gaps, images = zip(*(outcome(rule, run) for run in runs), strict=True)
    return [
        name,
        f"{statistics.median(stops):.0f} ({min(stops)}-{max(stops)})",
        f"{100 * statistics.median(gaps):.2f} %",
        f"{sum(g <= 0.01 for g in gaps) / len(gaps):.2f} / {sum(g <= 0.05 for g in gaps) / len(gaps):.2f}",
        f"{statistics.median(images):.2f}",
    ]


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, help="seeds (default 30; --quick 15)")
    p.add_argument("--workers", type=int, default=2, help="processes replaying searches")
    args = p.parse_args()
    seeds = args.seeds or (15 if args.quick else 30)
    report = harness.Report("--trials auto: the stopping rule replayed on the learning-curve table", args)
    default = se.default_search()
    started = time.perf_counter()
    runs = se.run_all(se.QUICK_K, {"default": default}, seeds, CAP, args.workers)["default"]
    spec = StudySpec()
    shipped = Stagnation(spec.auto_patience, spec.auto_min_improvement, CAP)
    report.add(
        f"The shipped default search ({se.describe(default)}) replayed to {CAP} trials on "
        f"`{harness.relative(se.curves.DCGAN_TABLE)}` (surrogate k={se.QUICK_K}), {seeds} seeds, in "
        f"{time.perf_counter() - started:.0f} s. Per rule (stop once the best gained at most the "
        "threshold over the last `patience` scored trials; cap 100): the trials it runs, median "
        "(range); the median gap of its best intra-FID from the same run's best at 100 trials; the "
        "share of seeds within 1 % / 5 % of it; the median share of the 100 trials' images it trains.",
        "",
    )
    rows = [
        row(f"patience {patience}, gain {threshold:.1%}", Stagnation(patience, threshold, CAP), runs)
        for threshold in MIN_IMPROVEMENTS
        for patience in PATIENCES
    ]
    for r in rows:
        if r[0] == f"patience {shipped.patience}, gain {shipped.min_improvement:.1%}":
            r[0] = f"**{r[0]} (shipped)**"
    report.table(["rule", "trials run", "gap at the stop", "within 1 % / 5 %", "images"], rows)
    stops, gaps, _ = zip(*(outcome(shipped, run) for run in runs), strict=True)
    report.headline("auto_trials", statistics.median(stops), "{:.0f}")
    report.headline("auto_gap", statistics.median(gaps), "{:.4f}")
    report.finish()


if __name__ == "__main__":
    main()
