"""`genopt report`: every promised figure is drawn, non-empty, and referenced by the offline page."""

from __future__ import annotations

import json

import pytest
from cli_runner import article_spec, genopt

from genopt.report.figures import FIGURES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.slow  # every test reads a study trained here


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    # A baseline trained to the full budget, so the curves have lines and one trial completes.
    result = genopt(
        "study", *article_spec("cgan"), "--storage", url, "--study", "report-test", "--trials", "2",
        "--epochs", "2", "--train-limit", "2000", "--fid-samples", "1000", "--no-progress",
        "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return url


def test_report_draws_every_figure_and_the_ensemble_that_genopt_ensemble_exported(study_url, tmp_path):
    export = tmp_path / "report-test.pt"
    ensemble = genopt(
        "ensemble", "--study", "report-test", "--storage", study_url, "--top-k", "2", "--out", str(export)
    )
    assert ensemble.returncode == 0, ensemble.stderr
    out = tmp_path / "report"
    result = genopt(
        "report", "--study", "report-test", "--storage", study_url, "--out", str(out), "--export", str(export)
    )
    assert result.returncode == 0, result.stderr

    page = (out / "index.html").read_text()
    for figure in FIGURES.values():
        data = (out / figure.file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, figure.file
        assert f"src='{figure.file}'" in page
    described = json.loads(export.with_suffix(".json").read_text())
    section = page.split("<h2>Ensemble</h2>")[1].split("<h2>")[0]
    for split in ("validation", "test"):
        assert f">{described['scores']['mixture'][split]['fid']:.2f}<" in section
    members = ", ".join(f"trial {m['trial_number']} ({m['weight']:.2f})" for m in described["members"])
    assert members in section
    # The best trials side by side, and in the ensemble's section the export beside its members.
    assert "<h2>The best trials side by side</h2>" in page
    assert f"src='{FIGURES['ensemble'].file}'" in section
    assert "http" not in page.split("</style>")[1], "the page must work offline"


def test_an_unreadable_export_is_named_in_the_report_not_a_crash(study_url, tmp_path):
    export = tmp_path / "broken.pt"
    export.with_suffix(".json").write_text('{"scores": {"ensemble": 12.5}}')
    result = genopt(
        "report", "--study", "report-test", "--storage", study_url, "--out", str(tmp_path / "r"),
        "--export", str(export),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "r" / "index.html").read_text()
    assert "is not a genopt-ensemble/1 description" in page


def test_report_on_a_missing_study_fails_in_one_line(study_url):
    result = genopt("report", "--study", "no-such-study", "--storage", study_url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no study 'no-such-study'" in lines[0] and "report-test" in lines[0]
