"""Browsing a study: per-trial sample grids and histories, the study note, and `genopt dashboard`."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.request

import pytest
from cli_runner import running_dashboard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), response.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def dashboard(tiny_study):
    with running_dashboard(tiny_study.url) as url:
        yield url


@pytest.mark.slow
def test_every_finished_trial_prints_one_plain_line_with_its_scores_and_epochs(tiny_study):
    lines = [line for line in tiny_study.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4
    score = r"\d+\.\d+"
    for number, line in enumerate(lines):
        pattern = (
            rf"trial +{number} +(complete|pruned) +FID +{score} +intra-FID +{score} +label acc +{score} "
            r"+epoch 1 of 1 +lr="
        )
        assert re.match(pattern, line), line
    # Output that is not a terminal gets the lines only: no progress bar frames.
    assert "\r" not in tiny_study.stdout + tiny_study.stderr


@pytest.mark.slow
def test_dashboard_lists_each_trials_sample_grid_and_history_and_shows_the_note(dashboard, tiny_study):
    body, _ = get(f"{dashboard}/api/studies")
    studies = {s["study_name"]: s["study_id"] for s in json.loads(body)["study_summaries"]}
    study_id = studies[tiny_study.name]
    detail = json.loads(get(f"{dashboard}/api/studies/{study_id}")[0])

    # The dashboard's plots name the objective, not "Objective 0".
    assert detail["objective_names"] == ["intra-FID"]
    note = detail["note"]["body"]
    for promised in (
        "sha256",
        "feature network validation accuracy",
        "feature network version | 2",
        "FID floor",
        "genopt study --model cgan",
    ):
        assert promised in note
    assert len(detail["trials"]) == 4
    for trial in detail["trials"]:
        artifacts = {a["filename"]: a for a in trial["artifacts"]}
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        grid = artifacts[f"samples-trial{trial['number']}.png"]
        history = artifacts[f"training-trial{trial['number']}.csv"]
        assert grid["mimetype"] == "image/png" and attrs["samples"] == grid["artifact_id"]
        assert attrs["history_csv"] == history["artifact_id"]
        # The grid is the trial's first artifact, as listed and by name: the trial selection shows
        # each selected trial's first artifact, and the trial page lists them by name.
        assert trial["artifacts"][0] == grid
        assert min(artifacts) == grid["filename"]

        base = f"{dashboard}/artifacts/{study_id}/{trial['trial_id']}"
        png, content_type = get(f"{base}/{grid['artifact_id']}")
        assert content_type == "image/png" and png.startswith(PNG_MAGIC)
        csv, _ = get(f"{base}/{history['artifact_id']}")
        assert csv.decode().splitlines()[0] == "epoch,d_loss,g_loss,fid,intra_fid,label_accuracy,seconds"


def test_a_cgan_grid_has_one_row_per_class():
    import torch

    from genopt.grid import GRID_COLUMNS, GRID_SCALE, sample_grid
    from genopt.models import Generator, GeneratorConfig

    generator = Generator(GeneratorConfig(8, (16,), (1, 28, 28), num_classes=10))
    grid = sample_grid(generator)
    pad, side = 2 * GRID_SCALE, 28 * GRID_SCALE
    assert grid.shape == (3, pad + 10 * (side + pad), pad + GRID_COLUMNS * (side + pad))
    assert torch.equal(grid, sample_grid(generator)), "the same generator must draw the same grid"


@pytest.mark.slow
def test_dashboard_draws_the_notes_picture_of_the_best_trials_side_by_side(dashboard, tiny_study):
    from PIL import Image

    from genopt.study.record.note import comparison_url

    png, content_type = get(f"{dashboard}{comparison_url(tiny_study.name)}")
    assert content_type == "image/png" and png.startswith(PNG_MAGIC)
    # Four columns of ten class rows: far more than the one line drawn before any trial finished.
    width, height = Image.open(io.BytesIO(png)).size
    assert width > 600 and height > 500
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(f"{dashboard}{comparison_url('no-such-study')}")
