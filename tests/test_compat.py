"""A study, its checkpoints and an export made before class-aware scores still resume, ensemble and load.

The fixture (tests/data/old_cgan_study, see its README) was written by genopt at commit aeb650c.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import torch
from cli_runner import genopt, run_main

from genopt import load_ensemble
from genopt.ensemble.export import read_description

OLD = Path(__file__).parent / "data" / "old_cgan_study"


@pytest.fixture
def old(tmp_path) -> dict[str, str]:
    folder = tmp_path / "old"
    shutil.copytree(OLD, folder)
    return {
        "db": f"sqlite:///{folder / 'old.db'}",
        "artifacts": str(folder / "artifacts"),
        "dir": str(folder),
    }


@pytest.mark.slow
def test_an_old_study_resumes_with_its_stored_spec_and_ensembles(old):
    worker = genopt(
        "worker", "--study", "old-cgan", "--storage", old["db"], "--artifact-dir", old["artifacts"],
        "--trials", "1", "--no-progress",
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    trials = optuna.load_study(study_name="old-cgan", storage=old["db"]).trials
    assert len(trials) == 3 and trials[2].state == optuna.trial.TrialState.COMPLETE
    # The old study was scored by FID at the last epoch: its new trial is too, by the old study's own
    # feature network (version 1, made before versions were recorded), and the dashboard names it.
    assert trials[2].value == trials[2].user_attrs["fid"] == trials[2].user_attrs["fid_history"][-1]
    assert trials[2].user_attrs["feature_net_version"] == 1
    assert optuna.load_study(study_name="old-cgan", storage=old["db"]).metric_names == ["FID"]
    # It stores no network (it was made before networks were stored), and says so once.
    assert worker.stderr.count("predates stored feature networks") == 1, worker.stderr
    assert "feature_net_sha256" not in optuna.load_study(study_name="old-cgan", storage=old["db"]).user_attrs

    out = Path(old["dir"]) / "new.pt"
    ensemble = genopt(
        "ensemble", "--study", "old-cgan", "--storage", old["db"], "--artifact-dir", old["artifacts"],
        "--top-k", "3", "--out", str(out),
    )  # fmt: skip
    assert ensemble.returncode == 0, ensemble.stderr
    assert "top 2 trials by validation FID" in ensemble.stdout  # retention kept 2 (keep_checkpoints = 2)
    assert read_description(out).objective == "fid"
    assert ensemble.stderr.count("predates stored feature networks") == 1, ensemble.stderr


def test_resuming_an_old_study_with_todays_defaults_is_refused_naming_the_fields(old, capfd):
    code, stderr = run_main(
        ["study", "--spec", str(Path(old["dir"]) / "old.toml"), "--study", "old-cgan", "--storage", old["db"],
         "--artifact-dir", old["artifacts"], "--trials", "1", "--no-progress"],
        capfd,
    )  # fmt: skip
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "ema_decay" in lines[0] and "genopt worker" in lines[0], stderr
    assert len(optuna.load_study(study_name="old-cgan", storage=old["db"]).trials) == 2


def test_an_old_export_loads_samples_and_reads(old):
    path = Path(old["dir"]) / "old-export.pt"
    ensemble = load_ensemble(path)
    images = ensemble.sample(4, torch.tensor([0, 1, 2, 3]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    described = read_description(path)
    assert described.objective == "fid"
    assert set(described.scores["mixture"]["validation"]) == {"fid"}
