"""Many trials on one GPU: trials per hour of ``genopt study --workers N --workers-per-gpu N``.

A trial of these small networks leaves a GPU mostly idle (docs/benchmarks_gpu.md: launch-bound
steps), so several worker processes on one GPU should finish more trials an hour than one. Each
setting runs a real study (a fresh SQLite file, the shipped cGAN spec at a small budget, 3 trials
per worker) as a user would start it, and reads the trials' own start and end times back from the
storage: trials per hour over the study's whole wall time (process starts included) and between
the first trial's start and the last trial's end (the steady rate).

Without a GPU it measures nothing (so ``make bench`` keeps the last GPU run's section), unless
``--cpu`` asks for the same figures with every worker on the CPU.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import optuna
import torch
from optuna.trial import TrialState

from genopt.study.storage import open_storage

BUDGET = ["--epochs", "2", "--train-limit", "20000", "--fid-samples", "2000"]
QUICK_BUDGET = ["--epochs", "1", "--train-limit", "2000", "--fid-samples", "500"]


def run(workers: int, trials: int, budget: list[str], work: Path) -> dict:
    url = f"sqlite:///{work / f'w{workers}.db'}"
    command = [sys.executable, "-m", "genopt", "study", "--model", "cgan", "--storage", url,
               "--study", f"w{workers}", "--trials", str(trials), "--workers", str(workers),
               "--artifact-dir", str(work / "artifacts"), "--no-progress", *budget]  # fmt: skip
    if torch.cuda.is_available():
        command += ["--workers-per-gpu", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{workers} worker(s) failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    study = optuna.load_study(study_name=f"w{workers}", storage=open_storage(url))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    first = min(t.datetime_start for t in complete)
    last = max(t.datetime_complete for t in complete)
    steady = (last - first).total_seconds()
    return {"complete": len(complete), "wall": wall, "steady": steady}


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="worker counts to measure")
    p.add_argument("--per-worker", type=int, default=3, help="trials per worker in each study")
    p.add_argument("--cpu", action="store_true", help="without a GPU, measure workers on the CPU")
    args = p.parse_args()
    _common.setup(args)
    if not (torch.cuda.is_available() or args.cpu):
        print("no GPU on this machine: nothing measured (--cpu measures workers on the CPU)")
        return
    counts = [1, 2] if args.quick else args.workers
    budget = QUICK_BUDGET if args.quick else BUDGET
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"the CPU ({_common.cpu_name()})"
    rows, rates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            result = run(n, n * args.per_worker, budget, Path(tmp))
            per_hour = 3600 * result["complete"] / result["wall"]
            steady = 3600 * result["complete"] / result["steady"]
            rates[n] = per_hour
            rows.append(
                [
                    n,
                    result["complete"],
                    f"{result['wall']:.1f}",
                    f"{per_hour:,.0f}",
                    f"{steady:,.0f}",
                    f"{per_hour / rates[counts[0]]:.2f}x",
                ]
            )
            print(rows[-1], flush=True)
    per_gpu = " --workers-per-gpu N" if torch.cuda.is_available() else ""
    lines = _common.header("Many workers on one GPU: trials per hour")
    lines += [
        f"`genopt study --model cgan --workers N{per_gpu} "
        f"{' '.join(budget)}` on {where}, {args.per_worker} trials per worker, a fresh SQLite study each"
        "; trials per hour over the whole command (process starts "
        "included) and between the first trial's start and the last trial's end.",
        "",
        *_common.table(
            ["workers", "trials", "wall s", "trials/hour", "trials/hour (first start to last end)", "over 1"],
            rows,
        ),
    ]
    best = max(rates, key=rates.get)
    _common.finish(
        args,
        lines,
        f"gpu_workers_trials_per_hour_ratio={rates[best] / rates[counts[0]]:.2f}",
        f"gpu_workers_best={best}",
    )


if __name__ == "__main__":
    main()
