"""Start local worker processes on one study and wait for them.

Each worker is ``genopt worker`` in a process of its own, so trials train in parallel (threads of
one process would share one interpreter and torch's thread pool). The study already exists when
they start; they share the trials to add, split as evenly as whole trials allow. Each gets its share
of the CPU threads, or a GPU of its own when there are several.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from genopt.errors import GenoptError


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


def worker_command(
    *, study_name: str, storage_url: str, trials: int, index: int, threads: int, data_dir, artifact_dir
) -> list[str]:
    """The ``genopt worker`` command line of local worker ``index``."""
    words = [sys.executable, "-m", "genopt", "worker", "--study", study_name, "--storage", storage_url]
    words += ["--trials", str(trials), "--worker-index", str(index), "--threads", str(threads)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    if artifact_dir is not None:
        words += ["--artifact-dir", str(artifact_dir)]
    return words + ["--no-progress"]


def spawn_local_workers(
    workers: int,
    *,
    study_name: str,
    storage_url: str,
    trials: int,
    data_dir: Path | None = None,
    artifact_dir: Path | None = None,
) -> None:
    """Run ``trials`` trials of an existing study in ``workers`` processes and wait for all of them.

    Ctrl-C reaches the workers once, through this process: each ends its running trial as FAIL
    (reason "interrupted") and exits; then ``KeyboardInterrupt`` is raised here.

    Raises:
        GenoptError: a worker exited with an error (its own message is above, on stderr).
        KeyboardInterrupt: Ctrl-C, after every worker has stopped.
    """
    split = shares(trials, workers)
    gpus = _gpu_count()
    threads = max(1, cpu_count() // len(split))
    processes = []
    for index, n in enumerate(split):
        env = dict(os.environ)
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        command = worker_command(
            study_name=study_name,
            storage_url=storage_url,
            trials=n,
            index=index,
            threads=threads,
            data_dir=data_dir,
            artifact_dir=artifact_dir,
        )
        # A session of its own: the terminal's Ctrl-C reaches a worker only once, forwarded below,
        # so a second signal cannot interrupt the worker while it records its trial as FAIL.
        processes.append(subprocess.Popen(command, env=env, start_new_session=True))
    interrupted = False
    while True:
        try:
            codes = [p.wait() for p in processes]
            break
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                for p in processes:
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)
    if interrupted or 130 in codes:
        raise KeyboardInterrupt
    failed = [(i, code) for i, code in enumerate(codes) if code != 0]
    if failed:
        index, code = failed[0]
        raise GenoptError(f"worker {index} exited with status {code}: see its message above, then rerun")
