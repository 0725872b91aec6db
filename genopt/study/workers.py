"""Start local worker processes on one study and wait for them.

Each worker is ``genopt worker`` in a process of its own, so trials train in parallel (threads of
one process would share one interpreter and torch's thread pool). The study already exists when
they start; they share the trials to add, split as evenly as whole trials allow. Each gets its share
of the CPU threads, and a GPU by ``worker_gpus`` when CUDA sees any: several workers may share one,
since one small MLP trial leaves a GPU mostly idle (its steps are bound by launch overhead).

A time budget reaches each worker as it is, with the moment it began (``--timeout``), and
a SIGINT or SIGTERM to this process reaches each worker as the same signal: the first stops them
(each keeps its running trial's best epoch so far), a second aborts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from genopt.errors import GenoptError
from genopt.study.artifacts.stores import ArtifactLocation
from genopt.study.stop import EXIT_STOPPED, Stop, format_duration


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shares(trials: int, workers: int) -> list[int]:
    """``trials`` split over ``workers``: 10 over 3 is [4, 3, 3]; a worker with no trial is not started."""
    return [n for n in (trials // workers + (i < trials % workers) for i in range(workers)) if n]


def _gpu_count() -> int:
    import torch  # only to count; CUDA stays uninitialised in this process

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_gpus(workers: int, *, gpus: int, per_gpu: int | None = None) -> list[int | None]:
    """The GPU of each local worker, as an index among the visible GPUs; None is the CPU.

    With ``per_gpu`` K, worker i gets GPU i // K while there is such a GPU, and the CPU after that
    (8 workers, K = 2, 3 GPUs: 0 0 1 1 2 2 CPU CPU). Without it the workers share every GPU
    round-robin (worker i gets GPU i % gpus). With no GPU, every worker gets the CPU.
    """
    if gpus < 1:
        return [None] * workers
    if per_gpu is None:
        return [i % gpus for i in range(workers)]
    return [i // per_gpu if i // per_gpu < gpus else None for i in range(workers)]


def cuda_visible_devices(gpu: int | None, inherited: str | None) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a worker on visible GPU ``gpu`` ("" for None: the CPU).

    ``gpu`` counts among the GPUs this process sees, so the variable it ``inherited`` is mapped
    through: with "2,3", visible GPU 1 is device "3".
    """
    if gpu is None:
        return ""
    ids = [v.strip() for v in inherited.split(",")] if inherited and inherited.strip() else []
    return ids[gpu] if gpu < len(ids) else str(gpu)


def worker_command(
    *,
    study_name: str,
    storage_url: str,
    trials: int,
    index: int,
    threads: int,
    data_dir,
    artifact_store,
    timeout: float | None = None,
    started: float | None = None,
) -> list[str]:
    """The ``genopt worker`` command line of local worker ``index``: ``timeout`` in seconds, counted
    from ``started`` (seconds since the epoch)."""
    words = [sys.executable, "-m", "genopt", "worker", "--study", study_name, "--storage", storage_url]
    words += ["--trials", str(trials), "--worker-index", str(index), "--threads", str(threads)]
    if timeout is not None:
        words += ["--timeout", format_duration(timeout), "--budget-started", repr(started)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    if artifact_store is not None:  # a folder or an s3:// URL, without credentials
        words += ["--artifact-store", artifact_store.url]
    return words + ["--no-progress"]


def spawn_local_workers(
    workers: int,
    *,
    study_name: str,
    storage_url: str,
    trials: int,
    data_dir: Path | None = None,
    artifact_store: ArtifactLocation | None = None,
    per_gpu: int | None = None,
    stop: Stop | None = None,
) -> None:
    """Run ``trials`` trials of an existing study in ``workers`` processes and wait for all of them.

    Each worker gets a GPU by ``worker_gpus(workers, gpus=..., per_gpu=per_gpu)`` when CUDA sees
    any GPU, else the CPU.

    ``stop``'s budget and when it began go to each worker; none starts once it is spent. A
    SIGINT or SIGTERM here reaches each worker once, through this process (they run in sessions of
    their own, out of the terminal's reach): the first stops them, each keeping its running trial's
    best epoch so far, and ``stop.why`` names it; a second aborts them, each ending its running
    trial as FAIL (reason "interrupted"), and then ``KeyboardInterrupt`` is raised here.

    Raises:
        GenoptError: a worker exited with an error (its own message is above, on stderr).
        KeyboardInterrupt: a second signal, after every worker has stopped.
    """
    stop = stop if stop is not None else Stop()
    if stop():
        return
    # auto: every worker applies the study's stopping rule to the shared study
    split = [trials] * workers if trials == "auto" else shares(trials, workers)
    gpus = _gpu_count()
    placement = worker_gpus(len(split), gpus=gpus, per_gpu=per_gpu)
    on_cpu = placement.count(None)
    if gpus and on_cpu:
        print(
            f"{on_cpu} of {len(split)} workers run on the CPU: {gpus} GPU(s) at {per_gpu} worker(s) each",
            file=sys.stderr,
        )
    threads = max(1, cpu_count() // len(split))
    processes: list[subprocess.Popen] = []
    signals: list[int] = []
    started: list[int] = []  # how many workers had started when each signal came

    def forward(signum: int) -> None:
        signals.append(signum)
        started.append(len(processes))
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    with stop.on_signals(forward):
        for index, n in enumerate(split):
            if stop():  # spent, or a signal came, while the others started
                break
            env = dict(os.environ) | (artifact_store.environment() if artifact_store is not None else {})
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(
                    placement[index], os.environ.get("CUDA_VISIBLE_DEVICES")
                )
            command = worker_command(
                study_name=study_name,
                storage_url=storage_url,
                trials=n,
                index=index,
                threads=threads,
                data_dir=data_dir,
                artifact_store=artifact_store,
                timeout=stop.timeout,
                started=stop.started,
            )
            # A session of its own: the terminal's Ctrl-C reaches a worker only through this
            # process, forwarded, so that each signal reaches it once.
            processes.append(subprocess.Popen(command, env=env, start_new_session=True))
        for p in processes[started[0] :] if started else []:  # started as the first signal came
            p.send_signal(signals[0])
        codes = [p.wait() for p in processes]
    if len(signals) > 1 or 130 in codes:
        raise KeyboardInterrupt
    stopped = [i for i, code in enumerate(codes) if code == EXIT_STOPPED]
    if stopped and not stop.by_signal:  # a signal sent to a worker alone
        stop.why, stop.by_signal = f"a signal to worker {stopped[0]}", True
    failed = [(i, code) for i, code in enumerate(codes) if code not in (0, EXIT_STOPPED)]
    if failed:
        index, code = failed[0]
        raise GenoptError(f"worker {index} exited with status {code}: see its message above, then rerun")
