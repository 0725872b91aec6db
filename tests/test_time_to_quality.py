"""bench/time_to_quality.py's yardstick read on a real finished study: one point per finished trial, in
the order they finished, each with the best trial so far, and the bar met exactly when that trial's
scores (a cGAN's label accuracy and intra-FID) are all within it."""

from __future__ import annotations

import datetime
import math

import optuna
import pytest

from bench import time_to_quality as ttq

ANY = ttq.Bar({"label_accuracy": 0.0}, {"intra_fid": math.inf})


def cgan_bar(least_accuracy: float, most_intra: float) -> ttq.Bar:
    return ttq.Bar({"label_accuracy": least_accuracy}, {"intra_fid": most_intra})


pytestmark = pytest.mark.slow  # reads the session's tiny study, made by the console script


def test_points_follow_the_best_trial_and_the_bar(tiny_study):
    study = optuna.load_study(study_name=tiny_study.name, storage=tiny_study.url)
    trials = [t for t in study.trials if t.state.is_finished()]
    first = min(t.datetime_start for t in trials)
    launched = first - datetime.timedelta(minutes=1)

    loose = ttq.points(study, launched, ANY)
    assert len(loose) == len(trials)
    assert [p.minutes for p in loose] == sorted(p.minutes for p in loose)
    assert all(p.minutes > 1.0 for p in loose)  # counted from the launch, not from the first trial
    assert all(p.met for p in loose)
    best = study.best_trial
    assert loose[-1].best_trial == best.number
    assert loose[-1].scores == {k: best.user_attrs[k] for k in ("label_accuracy", "intra_fid")}
    # the best so far never gets worse
    values = [study.trials[p.best_trial].value for p in loose]
    assert values == sorted(values, reverse=True)

    accuracy = best.user_attrs["label_accuracy"]
    assert not ttq.points(study, launched, cgan_bar(accuracy + 1e-6, math.inf))[-1].met
    assert not ttq.points(study, launched, cgan_bar(0.0, best.user_attrs["intra_fid"] * 0.999))[-1].met
    run = ttq.Run("default", 0, points=ttq.points(study, launched, cgan_bar(2.0, math.inf)))
    assert run.ttq == math.inf


def test_trials_from_before_the_launch_never_count(tiny_study):
    # a resumed study: the launch came after some trials had started, and those are neither points
    # (with negative minutes) nor the best so far
    study = optuna.load_study(study_name=tiny_study.name, storage=tiny_study.url)
    trials = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.datetime_start)
    launched = trials[-1].datetime_start
    later = ttq.points(study, launched, ANY)
    assert [p.trial for p in later] == [trials[-1].number]
    assert later[0].best_trial == trials[-1].number
    assert later[0].minutes >= 0


def test_a_failed_export_makes_the_worst_score_nan_not_another_seeds():
    for worst in (min, max):
        assert math.isnan(ttq.worst_of([0.99, math.nan], worst))
        assert math.isnan(ttq.worst_of([math.nan, 0.99], worst))
    assert ttq.worst_of([0.99, 0.985], min) == 0.985
    assert ttq.worst_of([2.5, 3.1], max) == 3.1


def test_a_gan_bar_is_fid_near_the_floor_and_a_real_class_balance():
    quality = ttq.Bar({"class_coverage": ttq.LEAST_COVERAGE}, {"fid": 3 * 0.36})
    assert quality.met({"class_coverage": 0.975, "fid": 1.0})
    assert not quality.met({"class_coverage": 0.96, "fid": 1.0})
    assert not quality.met({"class_coverage": 0.99, "fid": 1.2})
    failed = ttq.Run("default", 1)  # no export
    assert math.isnan(ttq.exported(failed, "test", "label_accuracy"))
