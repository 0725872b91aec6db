"""Assemble docs/benchmarks.md from the sections the bench scripts wrote (``make bench``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

INTRO = """# Benchmarks

Written by `{command}` (each script also runs alone; `--quick` for a run of at most two minutes on
2 cores, same code paths). Every table names the machine, the date and the command that reproduces
it. The machine is often shared: compare the ratios, measured alternately in one process, not the
absolute figures of different runs.
"""


def main(out: str, sections: list[str], plots: list[str]) -> None:
    # A section may be missing (the GPU one on a machine that never had a GPU); a plot may be "-".
    pairs = [(s, p) for s, p in zip(sections, plots, strict=True) if Path(s).exists()]
    texts = [Path(section).read_text().rstrip() + "\n" for section, _ in pairs]
    headlines = [
        line.split("`")[1] for text in texts for line in text.splitlines() if line.startswith("Headline:")
    ]
    summary = ["Headline figures (each script's last line; each section below names its own run):", ""]
    summary += [f"- `{h}`" for h in headlines]
    args = os.environ.get("BENCH_ARGS", "").strip()
    command = f'make bench BENCH_ARGS="{args}"' if args else "make bench"
    parts = [INTRO.format(command=command), "\n".join(summary) + "\n"]
    for text, (_, plot) in zip(texts, pairs, strict=True):
        if plot != "-" and Path(plot).exists():
            text += f"\n![{Path(plot).stem}]({os.path.relpath(plot, Path(out).parent)})\n"
        parts.append(text)
    Path(out).write_text("\n".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    # collect.py OUT SECTION PLOT [SECTION PLOT ...]; PLOT '-' for none
    rest = sys.argv[2:]
    main(sys.argv[1], rest[0::2], rest[1::2])
