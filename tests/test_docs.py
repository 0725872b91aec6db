"""The docs stay true to the code.

Every ``genopt ...`` line in a code block of README.md or docs/*.md parses with genopt's own argument
parser (a renamed or removed flag fails here), every ``make ...`` line names targets the Makefile
has and the ``genopt`` command it expands to parses too, README.md stays a front door of at most 150
lines, every relative link in the docs resolves (file and heading), and every repository path the
hand-written docs, or the comments and docstrings of genopt/, tests/ and bench/, name exists (or is
cited with the commit that holds it). Nothing here trains or imports torch: it runs in seconds.

The Python a doc shows (``genopt.load_ensemble``, ``sample``, the ``.pt2`` program) is run by
tests/test_ensemble.py; the ``bench/`` commands are the scripts the docs name, checked to exist here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from genopt.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])
# docs/benchmarks*.md are written by `make bench` and may name scripts that produced a table and are gone.
HAND_WRITTEN = [doc for doc in DOCS if not doc.name.startswith("benchmarks")]


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _commands(first_word: str) -> list[tuple[str, str]]:
    """(doc name, command line) for each line of a code block that starts with ``first_word``."""
    found = []
    for doc in DOCS:
        for block in _code_blocks(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line.split(" ", 1)[0] in (first_word, f".venv/bin/{first_word}"):
                    found.append((doc.relative_to(ROOT).as_posix(), line))
    return found


def _parse(argv: list[str]) -> None:
    """Parse a genopt command line in-process; fail with argparse's own message if it is refused."""
    err = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code  # 0 for --help
    assert code == 0, f"genopt {shlex.join(argv)}: {err.getvalue().strip()}"


GENOPT_LINES = _commands("genopt")
MAKE_LINES = _commands("make")


def _ids(lines: list[tuple[str, str]]) -> list[str]:
    return [f"{doc}: {line.split(' #')[0].strip()}" for doc, line in lines]


def test_the_docs_show_commands_of_both_kinds():
    assert {doc for doc, _ in GENOPT_LINES} >= {"README.md"}
    assert {doc for doc, _ in MAKE_LINES} >= {"README.md"}


@pytest.mark.parametrize(("doc", "line"), GENOPT_LINES, ids=_ids(GENOPT_LINES))
def test_every_genopt_command_in_the_docs_parses(doc, line):
    _parse(shlex.split(line, comments=True)[1:])


@pytest.mark.parametrize(("doc", "line"), MAKE_LINES, ids=_ids(MAKE_LINES))
def test_every_make_command_in_the_docs_names_a_target_and_a_genopt_command_that_parses(doc, line):
    argv = shlex.split(line, comments=True)
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", *argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert dry.returncode == 0, f"{doc}: {line}: {dry.stderr.strip()}"
    for recipe in dry.stdout.replace("\\\n", " ").splitlines():
        if recipe.split(" ", 1)[0].endswith("/genopt"):
            _parse(shlex.split(recipe)[1:])


def test_every_make_variable_the_readme_lists_is_one_the_makefile_takes():
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \|", README.read_text(), flags=re.MULTILINE)
    listed = {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row)}
    taken = set(re.findall(r"^([A-Z_]+) \?=", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    assert listed and listed <= taken, sorted(listed - taken)


def test_readme_is_a_front_door_of_at_most_150_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= 150, f"README.md has {lines} lines; move the detail into docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_readme_links_into_docs():
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", README.read_text()))
    assert {doc.relative_to(ROOT).as_posix() for doc in HAND_WRITTEN if doc != README} <= linked


def test_every_relative_link_in_the_docs_resolves_to_a_file_and_heading():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# A path into the repository, as prose or a command names it: `tests/soak/chaos.py`, genopt/study/runner.py,
# with an optional pytest node (`::test_name`) or line (`:12`) after it. A glob (`studies/*.toml`) or a
# placeholder (`studies/<model>.toml`, an f-string's `studies/{name}.toml`) stands for any name there.
# The look-behind skips a path inside another (`/api/studies/{id}`, `tmp_path / "x/tests/y"`).
_PLACEHOLDER = r"<\w+>|\{\w+\}"
_PATH = re.compile(
    r"(?<![\w./-])((?:genopt|bench|tests|studies|docs)/"
    rf"(?:[\w./*-]|{_PLACEHOLDER})*(?:[\w/*]|{_PLACEHOLDER}))"
    r"(?:::(\w+(?:::\w+)*)|:(\d+)\b)?"
)

# (file, path) pairs that read as a repository path and are not one: test data a test builds under a
# temporary folder, say. None today; add one here rather than loosen _PATH.
_NOT_REPOSITORY_PATHS: frozenset[tuple[str, str]] = frozenset()


# A removed file, named with the commit that still holds it: `git show 90689b8:bench/levers.py`.
_REMOVED = re.compile(r"git show ([0-9a-f]{7,40}):((?:genopt|bench|tests|studies|docs)/[\w./-]*\w)")


def _in_commit(commit: str, path: str) -> bool:
    """Whether ``commit`` holds ``path``; True where this clone lacks the commit (a shallow one)."""
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT).returncode != 0:
        return True
    held = subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=ROOT, stderr=subprocess.DEVNULL)
    return held.returncode == 0


def _resolves(path: str, node: str, line: str) -> bool:
    """Whether ``path`` (a glob, or with placeholders, matching at least one file) exists here, with
    the pytest node's last name defined in it and at least ``line`` lines."""
    pattern = re.sub(_PLACEHOLDER, "*", path)
    found = sorted(ROOT.glob(pattern)) if "*" in pattern else [ROOT / path] if (ROOT / path).exists() else []
    if not found or not (node or line):
        return bool(found)
    text = found[0].read_text()
    if node:
        definition = rf"^\s*(?:async )?(?:def|class) {node.split('::')[-1]}\b"
        return re.search(definition, text, flags=re.MULTILINE) is not None
    return len(text.splitlines()) >= int(line)


def _stale_paths(name: str, text: str) -> list[str]:
    """The repository paths ``text`` names that do not resolve, each as "name: path"; a removed file
    passes where ``text`` cites it as `git show COMMIT:path` and that commit holds it."""
    stale = []
    removed = {}
    for commit, path in _REMOVED.findall(text):
        removed[path] = commit
        if not _in_commit(commit, path):
            stale.append(f"{name}: {path} is not in commit {commit}")
    for path, node, line in sorted(set(_PATH.findall(text))):
        if path in removed or (name, path) in _NOT_REPOSITORY_PATHS:
            continue
        if not _resolves(path, node, line):
            stale.append(f"{name}: {path}" + (f"::{node}" if node else f":{line}" if line else ""))
    return stale


def test_every_repository_path_the_docs_name_exists_or_names_the_commit_that_holds_it():
    missing = [stale for doc in HAND_WRITTEN for stale in _stale_paths(doc.name, doc.read_text())]
    assert not missing, "\n".join(missing)


PYTHON = sorted(path for top in ("genopt", "tests", "bench") for path in (ROOT / top).rglob("*.py"))


def test_every_repository_path_a_python_file_names_exists_or_names_the_commit_that_holds_it():
    """The whole text of each file: comments, docstrings, messages and code alike. A regex's escaped
    dot (backslash, dot) reads as a dot, so a ``match=`` that names a spec file is checked too."""
    assert len(PYTHON) > 50
    missing = []
    for path in PYTHON:
        text = path.read_text().replace("\\.", ".")
        missing += _stale_paths(path.relative_to(ROOT).as_posix(), text)
    assert not missing, "\n".join(missing)
