"""Generators worth exporting: the default cGAN study, with the article's behaviour and genopt's defaults.

Each setting runs what a user runs, `genopt study --model cgan --trials 20` (10 epochs) and then
`genopt ensemble` (`make study` / `make export`), for several study seeds, as subprocesses of the real
console script. "article" is bench/specs/cgan-article.toml (concat conditioning, no EMA, pooled FID
at the last epoch); "genopt" is studies/cgan.toml as shipped. The table gives the best trial's and
the exported mixture's validation and test FID, intra-FID and label accuracy, and the wall time;
each export's sample grid is written beside the table (one row per class) to be looked at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
import optuna
from optuna.trial import TrialState

from genopt.study.progress import best_trial

ROOT = Path(__file__).resolve().parent.parent
GENOPT = str(Path(sys.executable).parent / "genopt")
SETTINGS = {"article": ROOT / "bench/specs/cgan-article.toml", "genopt": ROOT / "studies/cgan.toml"}


def run(setting: str, seed: int, args, work: Path) -> dict:
    """One study and its export; the figures the table shows."""
    name = f"quality-{setting}-s{seed}"
    storage = f"sqlite:///{work / f'{name}.db'}"
    budget = ["--trials", str(args.trials), "--seed", str(seed)]
    if args.quick:
        budget += ["--epochs", "2", "--train-limit", "5000", "--fid-samples", "2000"]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads_each)}
    # An interrupted bench resumes: a study that already holds finished trials only runs the rest,
    # and the minutes then count the trials' own wall seconds.
    done = _finished(name, storage)
    start = time.perf_counter()
    if done < args.trials:
        budget[1] = str(args.trials - done)
        study_cmd = [GENOPT, "study", "--model", "cgan", "--spec", str(SETTINGS[setting]), "--study", name]
        study_cmd += ["--storage", storage, "--artifact-dir", str(work / f"{name}-artifacts"), *budget]
        subprocess.run(study_cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    study_seconds = time.perf_counter() - start if done == 0 else _trial_seconds(name, storage)
    export = work / f"{name}.pt"
    ensemble_cmd = [GENOPT, "ensemble", "--study", name, "--storage", storage, "--out", str(export)]
    subprocess.run(ensemble_cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    grid = args.grids / f"quality_{setting}_s{seed}.png"
    grid_cmd = [GENOPT, "sample", "--checkpoint", str(export), "--n", "100", "--out", str(grid)]
    subprocess.run(grid_cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)

    study = optuna.load_study(study_name=name, storage=storage)
    best = best_trial(study)
    described = json.loads(export.with_suffix(".json").read_text())
    states = [t.state.name.lower() for t in study.trials]
    return {
        "setting": setting,
        "seed": seed,
        "best": {k: best.user_attrs.get(k) for k in ("fid", "intra_fid", "label_accuracy")},
        "best_number": best.number,
        "scores": described["scores"],
        "mode": described["mode"],
        "study_seconds": study_seconds,
        "seconds": seconds,
        "states": {s: states.count(s) for s in set(states)},
        "grid": grid,
    }


def _finished(name: str, storage: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def _trial_seconds(name: str, storage: str) -> float:
    study = optuna.load_study(study_name=name, storage=storage)
    return sum(t.user_attrs.get("wall_seconds", 0.0) for t in study.trials)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2, help="study seeds per setting (default 2)")
    p.add_argument("--seed-list", help="comma-separated study seeds instead of 0..seeds-1")
    p.add_argument("--trials", type=int, default=None, help="trials per study (default 20; --quick 3)")
    p.add_argument("--parallel", type=int, default=2, help="studies at once (default 2)")
    p.add_argument("--work", type=Path, default=ROOT / "storage/bench/quality", help="databases, exports")
    p.add_argument("--grids", type=Path, default=ROOT / "docs", help="where the sample grids go")
    p.add_argument("--settings", default=",".join(SETTINGS), help="settings to run (default: all)")
    args = p.parse_args()
    args.trials = args.trials or (3 if args.quick else 20)
    args.threads_each = max(1, (os.cpu_count() or 1) // args.parallel)
    args.work.mkdir(parents=True, exist_ok=True)
    args.grids.mkdir(parents=True, exist_ok=True)
    settings = args.settings.split(",")
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    jobs = [(s, seed) for seed in seeds for s in settings]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda job: run(*job, args, args.work), jobs))

    rows = []
    for r in results:
        for label, scores in (("best trial", {"validation": r["best"]}), ("mixture", r["scores"]["mixture"])):
            v, t = scores.get("validation", {}), scores.get("test", {})
            rows.append(
                [
                    r["setting"],
                    r["seed"],
                    label if label == "mixture" else f"best trial ({r['best_number']})",
                    *(_fmt(v.get(k), k) for k in ("fid", "intra_fid", "label_accuracy")),
                    *(_fmt(t.get(k), k) for k in ("fid", "intra_fid", "label_accuracy")),
                    f"{r['seconds'] / 60:.1f}" if label == "mixture" else f"{r['study_seconds'] / 60:.1f}",
                ]
            )
    lines = _common.header("Generators worth exporting: article against genopt's defaults")
    budget = "2 epochs, 5,000 training images, 2,000 samples" if args.quick else "10 epochs, 10,000 samples"
    lines += [
        f"`genopt study --model cgan --trials {args.trials}` ({budget}) then `genopt ensemble` (top 5), "
        f"study seed(s) {', '.join(map(str, seeds))} per setting, {args.parallel} studies at once with "
        f"{args.threads_each} thread(s) each. Label accuracy: the share of samples the feature network "
        "classifies as the requested class. Minutes: the study (best trial rows) and study + export "
        "(mixture rows).",
        "",
        *_common.table(
            [
                "setting",
                "seed",
                "row",
                "val FID",
                "val intra-FID",
                "val label acc",
                "test FID",
                "test intra-FID",
                "test label acc",
                "minutes",
            ],
            rows,
        ),  # fmt: skip
        "",
        *(
            f"- {r['setting']} seed {r['seed']}: trials {r['states']}, exported {r['mode']}, grid "
            f"`{os.path.relpath(r['grid'], ROOT)}`"
            for r in results
        ),  # fmt: skip
    ]
    mixture = {(r["setting"], r["seed"]): r["scores"]["mixture"]["test"] for r in results}
    accuracy = min(
        (v["label_accuracy"] for (s, _), v in mixture.items() if s == "genopt"), default=float("nan")
    )
    ratio = max(
        mixture[("genopt", seed)]["fid"] / mixture[("article", seed)]["fid"]
        for seed in seeds
        if ("genopt", seed) in mixture and ("article", seed) in mixture
    )
    lines += ["", f"quality_label_accuracy={accuracy:.3f} (the genopt mixtures' lowest test label accuracy)"]
    _common.finish(args, lines, f"quality_test_fid_ratio={ratio:.2f}")


def _fmt(value, name: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if name == "label_accuracy" else f"{value:.1f}"


if __name__ == "__main__":
    main()
