"""The house rules on size: no module of genopt/ over 330 lines, and bench/ at most 1,800 lines of
Python in all (a settled benchmark is retired and cited by its commit, not kept). Lines as ``wc -l``
counts them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 330
BENCH_LINES = 1_800


def _lines(paths: list[Path]) -> dict[str, int]:
    return {path.relative_to(ROOT).as_posix(): path.read_bytes().count(b"\n") for path in paths}


def test_no_genopt_module_is_over_330_lines():
    lines = _lines(sorted((ROOT / "genopt").rglob("*.py")))
    assert len(lines) > 20
    over = {name: count for name, count in lines.items() if count > MODULE_LINES}
    assert not over, f"over {MODULE_LINES} lines; split them: " + ", ".join(
        f"{name} ({count})" for name, count in sorted(over.items(), key=lambda item: -item[1])
    )


def test_bench_holds_at_most_1800_lines_of_python():
    lines = _lines(sorted((ROOT / "bench").rglob("*.py")))
    total = sum(lines.values())
    assert total <= BENCH_LINES, f"bench/ has {total} lines of Python, over {BENCH_LINES}: " + ", ".join(
        f"{name} ({count})" for name, count in sorted(lines.items(), key=lambda item: -item[1])
    )
