"""The bench runner: options, a machine header, alternated rounds, medians with ranges, headlines.

A benchmark is one short script per open question::

    args = harness.parser(__doc__).parse_args()
    report = harness.Report("Title", args)
    speed = harness.alternate({"a": run_a, "b": run_b}, rounds=3)   # a, b, a, b, a, b
    report.table(["loop", "img/s"], [[k, harness.median_range(v)] for k, v in speed.items()])
    report.headline("a_over_b", statistics.median(harness.ratios(speed["a"], speed["b"])))
    report.finish()

``finish`` prints the section and its ``name=value`` headlines (the last lines of the output), and
with ``--md FILE`` writes the section into FILE between markers named after the script, leaving the
rest of FILE (settled tables, prose) as it is.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# CPU flags of native bf16 matrix units; without one, bf16 runs in emulation (many times slower).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; its description is the first line of ``doc``."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the same code paths in under 3 minutes on 2 cores")
    p.add_argument("--md", type=Path, help="write the section into this markdown file (between its markers)")
    p.add_argument("--png", type=Path, help="write the plot here")
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    return p


def lscpu() -> dict[str, str]:
    """``lscpu``'s fields (``/proc/cpuinfo``'s where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        try:
            text = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        except OSError:
            return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_name() -> str:
    info = lscpu()
    return info.get("model name") or platform.processor() or "unknown CPU"


def cpu_bf16_flags() -> list[str]:
    """This CPU's native bf16 flags (empty: bf16 matrix products run in emulation)."""
    flags = set(lscpu().get("flags", "").split())
    return [f for f in BF16_FLAGS if f in flags]


def commit() -> str:
    """The checkout's commit, ``+changes`` when its tracked files differ from it."""

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except OSError:
        return "unknown"


def machine() -> str:
    """One line: CPU, its bf16 flags and vector level, cores, threads, GPU, torch, Python, commit."""
    flags = " ".join(cpu_bf16_flags()) or "no bf16 flags"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_name()} ({flags}, torch kernels {torch.backends.cpu.get_cpu_capability()}), "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}, "
        f"Python {platform.python_version()}, commit {commit()}"
    )


def alternate(loops: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each loop's figure per round, the loops run in turn within each round, so that the drift of a
    shared machine falls on all of them alike."""
    out: dict[str, list[float]] = {name: [] for name in loops}
    for r in range(rounds):
        for name, fn in loops.items():
            out[name].append(fn())
        print(f"round {r + 1}/{rounds} done", flush=True)
    return out


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per round, a over b."""
    return [x / y for x, y in zip(a, b, strict=True)]


def median_range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)``, or the one value."""
    values = sorted(values)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of ``torch.mm`` on two size x size matrices of ``dtype``."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    return 2 * size**3 / min(timed(lambda: torch.mm(a, b)) for _ in range(repeats)) / 1e9


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG (folders created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def relative(path: Path) -> str:
    """``path`` relative to the repository root when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def command() -> str:
    """The command line that ran this benchmark: ``.venv/bin/python -m bench.NAME ARGS``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    how = ["-m", spec.name] if spec is not None else [relative(Path(sys.argv[0]))]
    return " ".join([".venv/bin/python", *how, *sys.argv[1:]])


class Report:
    """A benchmark's markdown section: header, lines, tables, then its ``name=value`` headlines."""

    def __init__(self, title: str, args: argparse.Namespace):
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        self.args = args
        self.script = relative(Path(sys.argv[0]))
        self.headlines: list[str] = []
        self.started = time.time()
        now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        self.lines = [
            f"## {title}",
            "",
            f"- Machine: {machine()}",
            f"- Date: {now}; load average at the start {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
            f"- Command: `{command()}`",
            "",
        ]
        print(self.lines[2], flush=True)

    def add(self, *lines: str) -> None:
        self.lines += lines

    def table(self, head: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.lines += [*table(head, rows), ""]

    def skip(self, what: str, why: str) -> None:
        """Say in the output that ``what`` did not run, and why."""
        line = f"Skipped: {what} ({why})."
        print(line, flush=True)
        self.lines += [line, ""]

    def headline(self, name: str, value: float | str, fmt: str = "{:.2f}") -> None:
        self.headlines.append(f"{name}={value if isinstance(value, str) else fmt.format(value)}")

    def finish(self) -> None:
        """Print the section and its headlines (last), and write it where ``--md`` says."""
        body = [*self.lines]
        while body and not body[-1]:
            body.pop()
        body += ["", *(f"Headline: `{h}`" for h in self.headlines)]
        png = self.args.png
        if png is not None and png.exists() and png.stat().st_mtime >= self.started:  # written by this run
            md_dir = (self.args.md or ROOT / "docs" / "x.md").resolve().parent
            body += ["", f"![{png.stem}]({os.path.relpath(png.resolve(), md_dir)})"]
        text = "\n".join(body) + "\n"
        print(text)
        if self.args.md is not None:
            write_section(self.args.md, self.script, text)
            print(f"wrote {self.script}'s section of {self.args.md}")
        for h in self.headlines:
            print(h, flush=True)


def write_section(path: Path, key: str, text: str) -> None:
    """Put ``text`` between ``path``'s markers for ``key`` (appended with markers where none are)."""
    start, end = f"<!-- {key}: written by `make bench` -->", f"<!-- end {key} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + ("\n\n" if old.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
