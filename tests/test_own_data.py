"""The user's own data end to end: a 5-class IDX folder through study, ensemble, sample and report.

After the study, no command is told where the data or the artifacts are: the study remembers both.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from cli_runner import article_spec, genopt, run_main
from mnist_subsets import write_class_subset

from genopt.data.idx import IDX_NAMES, write_idx

CLASSES = 5


def ensemble_numbers(stdout: str) -> list[str]:
    """The figures `genopt ensemble` printed on its best single, mean and mixture rows."""
    rows = [
        line
        for line in stdout.splitlines()
        if line.strip().startswith(("best single", "mean ", "mixture ")) and "weights" not in line
    ]
    assert len(rows) == 3, stdout
    return [n for row in rows for n in re.findall(r"(?<![\w.])\d+\.\d+", row.split(")")[-1])]


@pytest.fixture(scope="module")
def digits04(mnist, tmp_path_factory) -> Path:
    """MNIST digits 0-4 as a gzipped IDX folder: 3,000 training images, 600 test images."""
    return write_class_subset(mnist, tmp_path_factory.mktemp("digits04"), CLASSES, 3000, 600, ".gz")


# With --artifact-dir, the harder case: the study remembers the folder. The default folder is what
# the shared tiny study (conftest.py) and tests/test_ensemble.py and test_report.py use.
@pytest.mark.slow
def test_study_ensemble_sample_report_on_own_data_without_repeating_where_it_is(digits04, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(digits04, data)
    db = f"sqlite:///{tmp_path / 'own.db'}"
    study = genopt(
        "study", *article_spec("cgan"), "--data-dir", str(data), "--dataset", "digits04", "--study", "own",
        "--storage", db, "--trials", "2", "--epochs", "1", "--fid-samples", "500", "--no-progress",
        "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64", "--artifact-dir", str(tmp_path / "artifacts"),
    )  # fmt: skip
    assert study.returncode == 0, study.stderr
    assert any((tmp_path / "artifacts").iterdir()), "the trials wrote elsewhere than --artifact-dir"

    export = tmp_path / "own.pt"
    ensemble = genopt("ensemble", "--study", "own", "--storage", db, "--top-k", "2", "--out", str(export))
    assert ensemble.returncode == 0, ensemble.stderr
    printed = ensemble_numbers(ensemble.stdout)

    grid = tmp_path / "grid.png"
    sample = genopt("sample", "--checkpoint", str(export), "--n", "10", "--out", str(grid))
    assert sample.returncode == 0, sample.stderr
    assert grid.read_bytes().startswith(b"\x89PNG")

    out = tmp_path / "report"
    report = genopt("report", "--study", "own", "--storage", db, "--export", str(export), "--out", str(out))
    assert report.returncode == 0, report.stderr
    page = (out / "index.html").read_text()
    ensemble_section = page.split("<h2>Ensemble</h2>")[1].split("<h2>")[0]
    for number in printed:  # validation and test FID, intra-FID and label accuracy of every mode
        assert f">{number}<" in ensemble_section, number
    assert (out / "best-samples.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_data_that_differs_from_the_studys_is_refused_in_one_line(digits04, mnist, tmp_path, capfd):
    data = tmp_path / "data"
    shutil.copytree(digits04, data)
    db = f"sqlite:///{tmp_path / 'own.db'}"
    study = genopt(
        "study", *article_spec(), "--data-dir", str(data), "--dataset", "digits04", "--study", "own",
        "--storage", db, "--trials", "1", "--epochs", "1", "--fid-samples", "500", "--no-progress",
    )  # fmt: skip
    assert study.returncode == 0, study.stderr
    other = tmp_path / "other"
    other.mkdir()
    for name in IDX_NAMES:  # the same files with one test label changed
        shutil.copy(data / f"{name}.gz", other / f"{name}.gz")
    labels = mnist.test.labels[(mnist.test.labels < CLASSES).nonzero().squeeze(1)[:600]].clone()
    labels[0] = (labels[0] + 1) % CLASSES
    write_idx(other / f"{IDX_NAMES[3]}.gz", labels.numpy())

    code, stderr = run_main(["ensemble", "--study", "own", "--storage", db, "--data-dir", str(other)], capfd)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "sha256 differs" in lines[0], stderr

    shutil.rmtree(data)  # the study's own folder is gone: the user is told to pass --data-dir
    code, stderr = run_main(["ensemble", "--study", "own", "--storage", db], capfd)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "pass --data-dir" in lines[0], stderr
