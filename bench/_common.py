"""Helpers shared by the bench scripts: machine description, statistics, markdown tables, output."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from genopt.device import BF16_CPU_FLAGS, cpu_flags


def parser(description: str) -> argparse.ArgumentParser:
    """The options every bench script takes: ``--quick``, and where to write its report section."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a run of at most two minutes on 2 cores")
    p.add_argument("--md", type=Path, help="write this benchmark's markdown section here")
    p.add_argument("--png", type=Path, help="write this benchmark's plot here")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for every loop measured (default: torch's, one per core); on a loaded "
        "machine 1 avoids OpenMP threads waiting on each other",
    )
    return p


def setup(args: argparse.Namespace) -> None:
    """Apply the options that change the process: the thread count."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bf16_flags() -> str:
    """This CPU's flags of native bf16 matrix units (``amx_bf16``, ``avx512_bf16``), or a word for none."""
    present = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
    return "flags " + " ".join(present) if present else "no bf16 flags"


def machine() -> str:
    """One line naming the machine: CPU and its bf16 flags, cores torch uses, GPU if any, torch version."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu_name()} ({bf16_flags()}), {os.cpu_count()} cores visible, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}; "
        f"load average at the end {load} (a shared machine)"
    )


def command() -> str:
    return " ".join([".venv/bin/python", *sys.argv])


def header(title: str) -> list[str]:
    """The lines that open a report section: what ran, where, when, and how to run it again."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return [
        f"## {title}",
        "",
        f"- Machine: {machine()}",
        f"- Date: {now}",
        f"- Command: `{command()}`",
        "",
    ]


def median_range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)`` of the values, or the one value."""
    values = sorted(values)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def matmul_peak(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of ``torch.mm`` on two size x size matrices of ``dtype`` (the CPU's usable peak)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG at ``path`` (folders created) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # the callers chose the backend before importing pyplot

    plt.close(fig)


def finish(args: argparse.Namespace, lines: list[str], headline: str, *more: str) -> None:
    """Print the section, write it where ``--md`` says, and end with the headline ``name=value``
    (and any ``more`` after it, one a line, the last one last; ``collect.py`` lists each)."""
    headlines = [headline, *more]
    text = "\n".join([*lines, "", *(f"Headline: `{h}`" for h in headlines)]) + "\n"
    print(text)
    if args.md is not None:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    for h in headlines:
        print(h, flush=True)


def relative(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it, else as given."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
