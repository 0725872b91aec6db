"""Bad input, every command: a non-zero exit, one stderr line that says what to fix, no traceback,
and the storage's trials exactly as they were."""

from __future__ import annotations

import optuna
import pytest
from cli_runner import genopt

TINY = ["--epochs", "1", "--train-limit", "1000", "--fid-samples", "500", "--no-progress"]
STUDY = ["study", "--storage", "{db}", "--trials", "1", *TINY]

# name: (command line, with {db} the existing study's URL and {tmp} a folder of bad files; message)
CASES = {
    "study: unknown model": ([*STUDY, "--model", "vae"], "invalid choice: 'vae'"),
    "study: unknown dataset": ([*STUDY, "--dataset", "svhn"], "unknown dataset 'svhn'"),
    "study: spec not TOML": ([*STUDY, "--spec", "{tmp}/bad.toml"], "is not valid TOML"),
    "study: spec of wrong type": ([*STUDY, "--spec", "{tmp}/type.toml"], "batch_size must be int, got 'big'"),
    "study: reversed range": (
        [*STUDY, "--spec", "{tmp}/reversed.toml"],
        "search.params.lr: low (0.1) must be below high (1e-05)",
    ),
    "study: unknown key": ([*STUDY, "--spec", "{tmp}/unknown.toml"], "unknown field 'learning_rate'"),
    "study: negative budget in spec": (
        [*STUDY, "--spec", "{tmp}/negative.toml"],
        "max_epochs must be at least 1",
    ),
    "study: negative epochs": ([*STUDY, "--epochs", "-1"], "--epochs: '-1' must be at least 1"),
    "study: zero trials": ([*STUDY, "--trials", "0"], "--trials: '0' must be at least 1"),
    "study: negative trials": ([*STUDY, "--trials", "-3"], "must be at least 1"),
    "study: non-integer trials": ([*STUDY, "--trials", "2.5"], "'2.5' is not an integer"),
    "study: zero workers": ([*STUDY, "--workers", "0"], "--workers: '0' must be at least 1"),
    "study: unknown storage scheme": ([*STUDY, "--storage", "mongodb://x/y"], "use sqlite:///PATH.db"),
    "study: storage folder missing": (
        [*STUDY, "--storage", "sqlite:////no/such/folder/x.db"],
        "folder /no/such/folder does not exist",
    ),
    "study: relative journal path": (
        [*STUDY, "--storage", "journal://x.log"],
        "journal:///ABSOLUTE/PATH.log",
    ),
    "study: empty data folder": ([*STUDY, "--data-dir", "{tmp}/empty"], "no IDX data in"),
    "study: corrupt IDX file": ([*STUDY, "--data-dir", "{tmp}/corrupt"], "is not an unsigned-byte IDX file"),
    "study: resume with another budget": ([*STUDY, "--epochs", "2"], "was made with a different max_epochs"),
    "worker: missing study": (
        ["worker", "--storage", "{db}", "--study", "nope", "--trials", "1"],
        "no study 'nope'",
    ),
    "worker: non-integer trials": (
        ["worker", "--storage", "{db}", "--study", "gan-mnist", "--trials", "x"],
        "'x' is not an integer",
    ),
    "worker: unknown storage scheme": (
        ["worker", "--storage", "redis://x", "--study", "gan-mnist", "--trials", "1"],
        "cannot open storage redis://x",
    ),
    "ensemble: missing study": (["ensemble", "--storage", "{db}", "--study", "nope"], "'nope'"),
    "report: missing study": (["report", "--storage", "{db}", "--study", "nope"], "'nope'"),
    "dashboard: bad storage": (["dashboard", "--storage", "mongodb://x"], "cannot open storage"),
    "sample: missing checkpoint": (
        ["sample", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/x.png"],
        "no ensemble checkpoint at",
    ),
    "sample: truncated checkpoint": (
        ["sample", "--checkpoint", "{tmp}/truncated.pt", "--out", "{tmp}/x.png"],
        "does not match the sha256",
    ),
    "sample: unknown label": (
        ["sample", "--checkpoint", "{export}", "--label", "12", "--out", "{tmp}/x.png"],
        "takes no --label",
    ),
}

FILES = {
    "bad.toml": "[training\nmax_epochs = 1\n",
    "type.toml": '[training]\nbatch_size = "big"\n',
    "reversed.toml": "[search.params.lr]\nlow = 0.1\nhigh = 1e-5\nlog = true\n",
    "unknown.toml": "[training]\nlearning_rate = 0.001\n",
    "negative.toml": "[training]\nmax_epochs = -2\n",
}
IDX = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A database holding one finished study, its exported ensemble, and a folder of bad files."""
    tmp = tmp_path_factory.mktemp("bad-input")
    db = f"sqlite:///{tmp / 'genopt.db'}"
    made = genopt("study", "--storage", db, "--trials", "1", *TINY)
    assert made.returncode == 0, made.stderr
    export = tmp / "ensemble.pt"
    exported = genopt(
        "ensemble",
        "--storage",
        db,
        "--study",
        "gan-mnist",
        "--top-k",
        "1",
        "--fid-samples",
        "500",
        "--out",
        str(export),
    )
    assert exported.returncode == 0, exported.stderr
    for name, text in FILES.items():
        (tmp / name).write_text(text)
    (tmp / "empty").mkdir()
    (tmp / "corrupt").mkdir()
    for name in IDX:  # the right names, but not IDX inside
        (tmp / "corrupt" / name).write_bytes(b"\x12\x34\x56\x78" + b"\xff" * 50)
    (tmp / "truncated.pt").write_bytes(export.read_bytes()[:3000])
    (tmp / "truncated.json").write_text(export.with_suffix(".json").read_text())
    return {"db": db, "tmp": str(tmp), "export": str(export)}


def snapshot(url: str) -> list:
    studies = optuna.get_all_study_summaries(url)
    trials = optuna.load_study(study_name="gan-mnist", storage=url).trials
    return [s.study_name for s in studies] + [
        (t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs) for t in trials
    ]


def test_every_subcommand_of_the_cli_has_bad_input_cases():
    # A subcommand added to genopt without a case here fails this test.
    from genopt.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {args[0] for args, _ in CASES.values()} == set(subcommands)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_exit_nonzero_and_leaves_the_storage_unchanged(case, existing):
    args, message = CASES[case]
    args = [a.format(**existing) for a in args]
    before = snapshot(existing["db"])

    result = genopt(*args)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert snapshot(existing["db"]) == before
