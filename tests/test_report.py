"""`genopt report`: every promised figure is drawn, non-empty, and referenced by the offline page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import genopt

from genopt.report import FIGURES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    # A baseline trained to the full budget, so the curves have lines and one trial completes.
    result = genopt(
        "study", "--model", "cgan", "--storage", url, "--study", "report-test", "--trials", "2",
        "--epochs", "2", "--train-limit", "2000", "--fid-samples", "1000", "--no-progress",
        "--enqueue", "lr=1e-3,batch_size=64,noise_dim=64",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return url


def test_report_draws_every_figure_and_the_page_references_each(study_url, tmp_path, genopt_home):
    export = Path(genopt_home) / "exports" / "report-test.json"
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text(json.dumps({"scores": {"ensemble": 12.5, "best single": 14.0}, "method": "mixture"}))
    try:
        result = genopt("report", "--study", "report-test", "--storage", study_url, "--out", str(tmp_path))
    finally:
        export.unlink()
    assert result.returncode == 0, result.stderr

    page = (tmp_path / "index.html").read_text()
    for figure in FIGURES.values():
        data = (tmp_path / figure.file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, figure.file
        assert f"src='{figure.file}'" in page
    assert "Ensemble" in page and "12.50" in page
    assert "http" not in page.split("</style>")[1], "the page must work offline"


def test_report_on_a_missing_study_fails_in_one_line(study_url):
    result = genopt("report", "--study", "no-such-study", "--storage", study_url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no study 'no-such-study'" in lines[0] and "report-test" in lines[0]
