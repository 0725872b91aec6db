"""The score registry (genopt.metrics.scores.SCORES): it names every score ``Scores`` holds, the spec's
objectives are among its scores, and lines, tables and the report show what it says."""

from __future__ import annotations

import math
from dataclasses import fields
from types import SimpleNamespace

import optuna
import pytest
import torch

from genopt.checkpoints import Description
from genopt.cli.ensemble import summary
from genopt.metrics.scores import SCORES, ScoreInfo, Scores, class_scores
from genopt.metrics.statistics import statistics_from_features
from genopt.report.html import render_html
from genopt.spec import OBJECTIVES
from genopt.study.progress import trial_line
from genopt.study.record.records import format_scores


def test_the_registry_names_every_score_field_in_order():
    assert list(SCORES) == [f.name for f in fields(Scores)]


def test_every_objective_the_spec_accepts_is_a_registered_score_a_study_can_minimise():
    # The study's direction is minimize: an objective where higher is better would be optimised backwards.
    for name in set(OBJECTIVES) - {"auto"}:
        assert SCORES[name].direction == "minimize", name


@pytest.mark.parametrize("conditional", [True, False])
def test_scores_computed_and_diverged_are_those_the_registry_says_apply(conditional):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    logits = torch.randn(60, 3, generator=gen)
    labels = torch.arange(60) % 3
    stats = statistics_from_features(features, logits, labels, conditional=conditional)
    applies = [name for name, score in SCORES.items() if score.applies(conditional)]
    assert list(class_scores(stats, stats, fid=1.0).as_dict()) == applies
    diverged = Scores.diverged(conditional=conditional).as_dict()
    assert list(diverged) == applies and all(math.isnan(v) for v in diverged.values())


def test_a_loss_is_lower_for_the_better_value_and_nan_is_worst():
    fid, accuracy = SCORES["fid"], SCORES["label_accuracy"]
    assert fid.loss(10.0) < fid.loss(20.0)
    assert accuracy.loss(0.9) < accuracy.loss(0.5)
    assert fid.loss(math.nan) == accuracy.loss(math.nan) == math.inf


def test_lines_show_each_score_with_its_registered_label_and_digits():
    values = {"fid": 41.2, "label_accuracy": 0.95321, "steps": 7}
    assert format_scores(values) == "FID 41.20  label acc 0.953"


@pytest.fixture
def sharpness(monkeypatch) -> ScoreInfo:
    """A score added the way a new one is: one registry entry (its computation is not needed here)."""
    score = ScoreInfo("sharpness", "maximize", rate=True, format_spec=".4f")
    monkeypatch.setitem(SCORES, "sharpness", score)
    return score


def test_a_registered_score_shows_in_trial_lines_and_the_report(sharpness):
    trial = optuna.trial.create_trial(
        value=41.2,
        params={"lr": 1e-3},
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        user_attrs={"fid": 41.2, "sharpness": 0.123456, "epochs": 3, "best_epoch": 2},
    )
    assert "FID 41.20  sharpness 0.1235  epoch 2 of 3" in trial_line(trial)
    scores = {"validation": {"fid": 41.2, "sharpness": 0.5}, "test": {"fid": 43.0, "sharpness": 0.25}}
    raw = {"study": "s", "mode": "mean", "members": [], "best_single_trial": 0, "fid_samples": 10}
    export = Description(
        study="s",
        mode="mean",
        objective="fid",
        scores={"best_single": scores, "mean": scores},
        members=[(0, 1.0)],
        best_single_trial=0,
        fid_samples=10,
        file="s.pt",
        sha256="0" * 64,
        program=None,
        raw=raw,
    )
    page = render_html(
        study_name="s", study_attrs={}, trials=[trial], best=trial, figures=[], missing=[], ensemble=export
    )
    assert "<th>sharpness</th>" in page and "0.1235" in page  # the trials table
    assert "<th>test sharpness</th>" in page and "0.2500" in page  # the ensemble table
    assert "FID 41.20  sharpness 0.1235" in page  # the best trial


def test_genopt_ensembles_summary_shows_a_registered_score(sharpness):
    scores = {"validation": {"fid": 41.2, "sharpness": 0.5}, "test": {"fid": 43.0, "sharpness": 0.25}}
    build = SimpleNamespace(
        objective="fid", members=[None], scores={k: scores for k in ("best_single", "mean", "mixture")}
    )
    described = {
        "study": "s",
        "candidates": [{"trial_number": 0, "value": 41.2, "mixture_weight": 1.0}],
        "best_single_trial": 0,
        "mode": "mean",
        "fid_samples": 10,
    }
    table = summary(SimpleNamespace(build=build, description=described, path="s.pt"))
    assert "top 1 trials by validation FID: 0 (41.20)" in table
    assert "val sharpness" in table and "test sharpness" in table and "0.2500" in table
