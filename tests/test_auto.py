"""``--trials auto``: a study that stops when its best value stops improving, at most at its cap."""

from __future__ import annotations

import optuna
import optuna_dashboard
import pytest
from cli_runner import ROOT, genopt

from genopt.study.record.attrs import STOPPED_ATTR
from genopt.study.search.stopping import Stagnation

RULE = Stagnation(patience=3, min_improvement=0.01, max_trials=10)


def test_the_rule_stops_when_the_best_gained_at_most_the_threshold_over_the_last_patience_trials():
    assert RULE.stops_after([100, 90, 80]) is None  # it needs patience + 1 scored trials
    # the last three trials took the best from 80 to 79.5, a gain under 1 %: converged
    assert RULE.stops_after([100, 90, 80, 85, 79.5, 81]) == 6
    # unscored trials do not count toward the patience
    assert RULE.stops_after([100, 99.5, 99.6, 97.5, None, 97.4, 98, 97.3]) == 8
    assert RULE.stops_after([]) is None
    assert Stagnation(1, 0.0, 10).stops_after([5, 5]) == 2  # an equal value is no gain
    assert RULE.stops_after([100 - i for i in range(12)]) == 10  # the cap, however it improves


def test_steady_small_gains_that_add_up_over_the_window_keep_the_study_going():
    # 0.3 % a trial, under the shipped threshold of 0.5 % each time, 7 % over 25 trials: the best is
    # still moving, so the study goes on to its cap
    shipped = Stagnation(patience=25, min_improvement=0.005, max_trials=100)
    steady = [100 * 0.997**i for i in range(120)]
    assert shipped.stops_after(steady) == 100
    # when the gains end at trial 40, the first window of 25 holding less than 0.5 % ends at trial 64
    # (its one gain, trial 40's, is 0.3 %)
    assert shipped.stops_after(steady[:40] + [steady[39]] * 60) == 64


def study_with(values: list[float], pruned: int = 0) -> optuna.Study:
    study = optuna.create_study()
    for value in values:
        study.add_trial(optuna.trial.create_trial(value=value))
    for _ in range(pruned):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


def test_the_verdict_names_the_best_value_the_patience_and_the_cap():
    assert RULE.verdict(study_with([100, 90, 80]), "fid") is None
    reason = RULE.verdict(study_with([100, 90, 80, 85, 81, 82]), "fid")
    assert reason == (
        "converged: the best fid (80) gained at most 1 % over the last 3 scored trials "
        "(6 trials in all, the cap is 10)"
    )
    # pruned trials count toward the cap, not toward the patience
    assert RULE.verdict(study_with([100, 50], pruned=7), "fid") is None
    assert RULE.verdict(study_with([100, 50], pruned=8), "fid") == "stopped at the cap of 10 trials"


@pytest.mark.slow
def test_a_tiny_auto_study_stops_says_why_and_adds_nothing_once_converged(tmp_path):
    text = (ROOT / "studies" / "gan-article.toml").read_text()
    for old, new in (
        ("auto_patience = 25", "auto_patience = 2"),
        ("auto_max_trials = 100", "auto_max_trials = 5"),
    ):
        assert old in text
        text = text.replace(old, new)
    spec = tmp_path / "auto.toml"
    spec.write_text(text)
    db = f"sqlite:///{tmp_path / 'auto.db'}"
    args = ["--spec", str(spec), "--storage", db, "--study", "auto", "--epochs", "1", "--train-limit", "500"]
    args += ["--fid-samples", "200", "--no-progress", "--trials", "auto"]
    first = genopt("study", *args)
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="auto", storage=db)
    ran = len(study.trials)
    assert 3 <= ran <= 5, first.stdout  # the patience needs 3 scored trials; the cap is 5
    reason = study.user_attrs[STOPPED_ATTR]
    assert reason.startswith(("converged: the best fid", "stopped at the cap of 5 trials")), reason
    assert f"stopped               {reason.removeprefix('stopped ')}" in first.stdout, first.stdout
    assert f"### Stopped\n\n{reason}." in optuna_dashboard.get_note(study)

    again = genopt("study", *args)
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="auto", storage=db).trials) == ran
    assert reason in again.stdout
