"""``--trials auto``: a study that stops when its best value stops improving, at most at its cap."""

from __future__ import annotations

import optuna
import optuna_dashboard
import pytest
from cli_runner import ROOT, genopt

from genopt.study.record.attrs import STOPPED_ATTR
from genopt.study.search.stopping import Stagnation

RULE = Stagnation(patience=3, min_improvement=0.01, max_trials=10)


def test_the_rule_waits_out_its_patience_after_the_last_meaningful_gain():
    assert RULE.stops_after([100, 90, 80]) is None
    # 80 is the last gain of at least 1 %: three scored trials later the study has converged
    assert RULE.stops_after([100, 90, 80, 85, 79.5, 81]) == 6
    # a gain of 2 % restarts the count; unscored trials do not count toward the patience
    assert RULE.stops_after([100, 99.5, 99.6, 97.5, None, 97.4, 98, 97.3]) == 8
    assert RULE.stops_after([]) is None
    assert Stagnation(1, 0.0, 10).stops_after([5, 5]) == 2  # an equal value is no gain
    assert RULE.stops_after([100 - i for i in range(12)]) == 10  # the cap, however it improves


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
        "converged: the best fid (80) gained less than 1 % over the last 3 scored trials "
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
