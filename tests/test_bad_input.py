"""Bad input, every command: a non-zero exit, one stderr line that says what to fix, no traceback,
and the storage's trials exactly as they were.

The cases call ``genopt.cli.main`` in this process, as the console script does: the parser and the
checks are what is tested, and a storage and exports made here in a second serve them. Two cases also
run the real ``genopt`` console script, to show that it exits non-zero with the one line and nothing
else on stderr (no warning, no traceback); one resumes the shared trained study (conftest.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import optuna
import pytest
from cli_runner import genopt, run_main, tiny_budget

from genopt.cli import build_parser
from genopt.ensemble.build import EnsembleBuild, Member
from genopt.ensemble.export import save_ensemble
from genopt.ensemble.generator import EnsembleGenerator
from genopt.models import Generator, GeneratorConfig

TINY = tiny_budget(train_limit=1000, fid_samples=500)
# A case that got past its bad input would add a trial to the study gan-mnist in {db}.
STUDY = ["study", "--storage", "{db}", "--trials", "1", *TINY]

# name: (command line, with {db} a storage holding the study gan-mnist, {tmp} a folder of bad files,
# {export} and {gan_export} a conditional and an unconditional exported ensemble; message)
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
    "study: negative timeout": (
        [*STUDY, "--timeout=-5m"],
        "--timeout: '-5m' is not a duration: use e.g. 90s",
    ),
    "study: timeout not a duration": ([*STUDY, "--timeout", "abc"], "--timeout: 'abc' is not a duration"),
    "study: zero timeout": ([*STUDY, "--timeout", "0"], "--timeout: '0' must be longer than zero"),
    "study: timeout without a unit": (
        [*STUDY, "--timeout", "30"],
        "--timeout: '30' needs a unit: 30s, 30m or 30h",
    ),
    "study: zero workers per GPU": (
        [*STUDY, "--workers", "2", "--workers-per-gpu", "0"],
        "--workers-per-gpu: '0' must be at least 1",
    ),
    "study: unknown storage scheme": ([*STUDY, "--storage", "mongodb://x/y"], "use sqlite:///PATH.db"),
    "study: storage folder missing": (
        [*STUDY, "--storage", "sqlite:////no/such/folder/x.db"],
        "folder /no/such/folder does not exist",
    ),
    "study: relative journal path": (
        [*STUDY, "--storage", "journal://x.log"],
        "journal:///ABSOLUTE/PATH.log",
    ),
    "study: empty data folder": ([*STUDY, "--data-dir", "{tmp}/empty"], "no data in"),
    "study: corrupt IDX file": ([*STUDY, "--data-dir", "{tmp}/corrupt"], "is not an unsigned-byte IDX file"),
    "study: folder without images": ([*STUDY, "--data-dir", "{tmp}/no-images"], "no data in"),
    "study: class folder of one image": (
        [*STUDY, "--data-dir", "{tmp}/one-image"],
        "holds 1 image: it needs at least 2",
    ),
    "study: undecodable image with --strict": (
        [*STUDY, "--data-dir", "{tmp}/broken", "--strict"],
        "holds 1 image file that does not decode",
    ),
    "study: image size not a multiple of 4": (
        [*STUDY, "--data-dir", "{tmp}/flat", "--image-size", "30"],
        "image_size must be a positive multiple of 4, got 30",
    ),
    "study: images beside class folders": ([*STUDY, "--data-dir", "{tmp}/mixed"], "loose.png"),
    "study: cgan on a folder without classes": (
        [*STUDY, "--data-dir", "{tmp}/flat", "--model", "cgan"],
        "a cgan draws the class it is asked for, so it needs one subfolder per class",
    ),
    "worker: missing study": (
        ["worker", "--storage", "{db}", "--study", "nope", "--trials", "1"],
        "no study 'nope'",
    ),
    "worker: non-integer trials": (
        ["worker", "--storage", "{db}", "--study", "gan-mnist", "--trials", "x"],
        "'x' is not an integer",
    ),
    "worker: zero timeout": (
        ["worker", "--storage", "{db}", "--study", "gan-mnist", "--trials", "1", "--timeout", "0m"],
        "--timeout: '0m' must be longer than zero",
    ),
    "worker: unknown storage scheme": (
        ["worker", "--storage", "redis://x", "--study", "gan-mnist", "--trials", "1"],
        "cannot open storage redis://x",
    ),
    "ensemble: missing study": (["ensemble", "--storage", "{db}", "--study", "nope"], "'nope'"),
    "report: missing study": (["report", "--storage", "{db}", "--study", "nope"], "'nope'"),
    "compare: missing study": (
        ["compare", "--storage", "{db}", "--study", "nope", "--out", "{tmp}/x.png"],
        "'nope'",
    ),
    "compare: unknown trial": (
        ["compare", "--storage", "{db}", "--study", "gan-mnist", "--trials", "7", "--out", "{tmp}/x.png"],
        "study 'gan-mnist' has no trial 7: its trials are 0 to 0",
    ),
    "compare: trial without a checkpoint": (
        ["compare", "--storage", "{db}", "--study", "gan-mnist", "--trials", "0", "--out", "{tmp}/x.png"],
        "trial 0 is complete and kept no checkpoint: no trial of this study has a stored checkpoint yet",
    ),
    "compare: trials of no study": (
        ["compare", "--checkpoint", "{export}", "--top", "2", "--out", "{tmp}/x.png"],
        "--trials and --top choose among a study's trials: give --study too",
    ),
    "proxy: bad storage": (["proxy", "--storage", "mongodb://x"], "cannot open storage"),
    "proxy: a proxy in front of a proxy": (
        ["proxy", "--storage", "grpc://127.0.0.1:1"],
        "genopt proxy cannot serve grpc://127.0.0.1:1",
    ),
    "proxy: no such port": (["proxy", "--storage", "{db}", "--port", "70000"], "is not a port"),
    "dashboard: no such port": (["dashboard", "--storage", "{db}", "--port", "70000"], "is not a port"),
    "dashboard: bad storage": (["dashboard", "--storage", "mongodb://x"], "cannot open storage"),
    "dashboard: storage folder missing": (
        ["dashboard", "--storage", "sqlite:////no/such/folder/x.db"],
        "cannot open storage",
    ),
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
        "unknown label 12: this ensemble draws classes 0..9",
    ),
    "sample: label for an unconditional ensemble": (
        ["sample", "--checkpoint", "{gan_export}", "--label", "1", "--out", "{tmp}/x.png"],
        "takes no --label",
    ),
}
# These also run as the real console script: one the parser refuses, one found after torch, Optuna
# and the data have loaded.
CONSOLE_SCRIPT_CASES = ["study: non-integer trials", "study: corrupt IDX file", "study: negative timeout"]

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


def export(path: Path, num_classes: int) -> Path:
    """An ensemble of one untrained generator, written as ``genopt ensemble`` writes one."""
    generator = Generator(GeneratorConfig(8, (16,), (1, 28, 28), num_classes=num_classes)).eval()
    member = Member(0, 100.0, generator)
    build = EnsembleBuild(
        ensemble=EnsembleGenerator([generator], [1.0], mode="mixture"), members=[member], objective="fid",
        scores={}, mixture_weights=[1.0], chosen=[member], metadata={"study": "gan-mnist"},
    )  # fmt: skip
    save_ensemble(build, path=path)
    return path


def write_image_folders(tmp: Path) -> None:
    """Folders of images that are each wrong in one way, beside a good flat one."""
    from PIL import Image

    def picture(path: Path, shade: int = 128) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (shade, 255 - shade, 40)).save(path)

    for i in range(12):
        picture(tmp / "flat" / f"{i}.png", 20 * i)
    for i in range(4):
        picture(tmp / "broken" / "cats" / f"{i}.png", 60 * i)
        picture(tmp / "broken" / "dogs" / f"{i}.png", 60 * i)
        picture(tmp / "mixed" / "cats" / f"{i}.png", 60 * i)
    picture(tmp / "one-image" / "cats" / "0.png")
    picture(tmp / "one-image" / "cats" / "1.png")
    picture(tmp / "one-image" / "dogs" / "0.png")
    picture(tmp / "mixed" / "loose.png")
    (tmp / "broken" / "dogs" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (tmp / "no-images").mkdir()
    (tmp / "no-images" / "readme.txt").write_text("no pictures here\n")


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> dict:
    """A storage holding the study gan-mnist with one trial, two exports, and a folder of bad files."""
    tmp = tmp_path_factory.mktemp("bad-input")
    db = f"sqlite:///{tmp / 'genopt.db'}"
    study = optuna.create_study(study_name="gan-mnist", storage=db)
    study.enqueue_trial({"lr": 1e-3})
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=1)
    for name, text in FILES.items():
        (tmp / name).write_text(text)
    (tmp / "empty").mkdir()
    (tmp / "corrupt").mkdir()
    for name in IDX:  # the right names, but not IDX inside
        (tmp / "corrupt" / name).write_bytes(b"\x12\x34\x56\x78" + b"\xff" * 50)
    write_image_folders(tmp)
    conditional = export(tmp / "cgan.pt", num_classes=10)
    (tmp / "truncated.pt").write_bytes(conditional.read_bytes()[:3000])
    (tmp / "truncated.json").write_text(conditional.with_suffix(".json").read_text())
    return {
        "db": db,
        "tmp": str(tmp),
        "export": str(conditional),
        "gan_export": str(export(tmp / "gan.pt", 0)),
    }


@functools.cache
def storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url)  # no cache in front: every read is the database's


def snapshot(url: str, name: str = "gan-mnist") -> list:
    studies = optuna.get_all_study_summaries(storage(url))
    trials = optuna.load_study(study_name=name, storage=storage(url)).trials
    return [s.study_name for s in studies] + [
        (t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs) for t in trials
    ]


def assert_one_line(code, stderr: str, message: str) -> None:
    assert code not in (0, None)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0] and "Traceback" not in stderr


def test_every_subcommand_of_the_cli_has_bad_input_cases():
    # A subcommand added to genopt without a case here fails this test.
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {args[0] for args, _ in CASES.values()} == set(subcommands)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_exit_nonzero_and_leaves_the_storage_unchanged(case, existing, capfd):
    args, message = CASES[case]
    before = snapshot(existing["db"])
    code, stderr = run_main([a.format(**existing) for a in args], capfd)
    assert_one_line(code, stderr, message)
    assert snapshot(existing["db"]) == before
    assert not (Path(existing["tmp"]) / "x.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", CONSOLE_SCRIPT_CASES)
def test_the_console_script_exits_nonzero_with_the_one_line(case, existing):
    args, message = CASES[case]
    before = snapshot(existing["db"])
    result = genopt(*[a.format(**existing) for a in args])
    assert result.returncode == 2
    assert_one_line(result.returncode, result.stderr, message)
    assert snapshot(existing["db"]) == before


@pytest.mark.slow
def test_resuming_a_study_with_another_budget_is_refused_and_leaves_it_unchanged(tiny_study, capfd):
    before = snapshot(tiny_study.url, tiny_study.name)
    code, stderr = run_main(["study", *tiny_study.args, "--epochs", "2", "--trials", "1"], capfd)
    assert_one_line(code, stderr, f"study '{tiny_study.name}' was made with a different max_epochs")
    assert snapshot(tiny_study.url, tiny_study.name) == before
