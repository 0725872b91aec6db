"""How many workers one PostgreSQL server takes, directly and through genopt proxy: a load test.

Simulated workers (tests/soak/simulated.py: genopt's real study loop, attributes, heartbeats and
artifact uploads; each epoch's training a sleep), threads of this process, run one study per run on a
PostgreSQL server of the tests' own (tests/pg_server.py), each with its own database connections or
through a ``genopt proxy`` of the run's own. Per run: finished trials per second until the last
worker's last trial ended (and the most the workers could offer), the 95th percentile of a
``suggest_*`` call and of a tell (the write that finishes a trial), the peak of the server's client
connections (``pg_stat_activity``), and the lost, duplicated and zombie trials, each of which must
be 0. ``--max-connections N`` raises the server's limit (PostgreSQL's default: 100).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import harness

sys.path.insert(0, str(harness.ROOT / "tests"))
sys.path.insert(0, str(harness.ROOT / "tests" / "soak"))
# Beats every second (so beats are a share of the load), stale after genopt's own 15 s.
os.environ.setdefault("GENOPT_HEARTBEAT_INTERVAL", "1")
os.environ.setdefault("GENOPT_HEARTBEAT_GRACE", "15")

import optuna  # noqa: E402
import simulated  # noqa: E402
from pg_server import postgres_server, server_commands  # noqa: E402


def set_max_connections(url: str, n: int) -> None:
    """``ALTER SYSTEM SET max_connections`` and restart the server (its data folder, from itself)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        data = connection.execute("SHOW data_directory").fetchone()[0]
        connection.execute(f"ALTER SYSTEM SET max_connections = {int(n)}")
    (prefix, bindir), _ = server_commands()
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", data, "-l", f"{data}/restart.log", "-w", "-m", "fast"]
    subprocess.run([*ctl, "restart"], check=True, capture_output=True)


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--workers", default="16,64,256", help="worker counts, comma-separated")
    p.add_argument("--modes", default="direct,proxy", help="direct, proxy or both (default)")
    p.add_argument("--seconds", type=float, default=60.0, help="each run's length (default 60)")
    p.add_argument(
        "--epoch", type=float, default=10.0, help="seconds of sleep per epoch, 2 epochs a trial (default 10)"
    )
    p.add_argument("--max-connections", type=int, help="the server's max_connections (default 100)")
    args = p.parse_args()
    if args.quick:
        args.workers, args.seconds, args.epoch = "16,64", 40.0, 5.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = harness.Report("Load test: simulated workers on one PostgreSQL server", args)
    head = ["workers", "storage", "trials/s (offered) in wall time", "suggest p95 ms", "tell p95 ms",
            "connections", "lost", "dup", "zombie", "failed workers", "complete / pruned / fail"]  # fmt: skip
    rows, zero = [], True
    with postgres_server() as url, tempfile.TemporaryDirectory(prefix="genopt-load-") as work:
        if args.max_connections:
            set_max_connections(url, args.max_connections)
        for n in (int(w) for w in args.workers.split(",")):
            for mode in args.modes.split(","):
                print(f"{n} workers, {mode}: {args.seconds:.0f} s", flush=True)
                r = simulated.run(url, proxied=mode == "proxy", workers=n, seconds=args.seconds,
                                  epoch_s=args.epoch, work=Path(work))  # fmt: skip
                states = " / ".join(str(r["states"].get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL"))
                failed = f"{len(r['errors'])}" + (f" (...{r['errors'][0][-60:]})" if r["errors"] else "")
                rate = f"{r['trials_per_s']:.2f} ({n / 2 / args.epoch:.2f}) in {r['wall_s']:.0f} s"
                p95s = [f"{r['suggest_p95_ms']:.0f}", f"{r['tell_p95_ms']:.0f}"]
                rows.append([n, mode, rate, *p95s, r["connections"], len(r["lost"]), len(r["duplicates"]),
                             len(r["zombies"]), failed, states])  # fmt: skip
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
                for note in (r["lost"] + r["duplicates"] + r["zombies"] + r["reaped"] + r["errors"])[:10]:
                    print(f"  {note}", flush=True)
                zero &= not (r["lost"] or r["duplicates"] or r["zombies"])
    limit = args.max_connections or 100
    report.add(
        f"Threads as workers, {args.epoch} s per epoch, 2 epochs a trial; server max_connections {limit}."
    )
    report.table(head, rows)
    report.headline("lost_duplicate_zombie_all_zero", str(zero).lower())
    report.finish()


if __name__ == "__main__":
    main()
