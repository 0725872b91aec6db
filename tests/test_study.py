"""The main job end to end: `genopt study` on real MNIST in SQLite, resumed, and refusing bad input."""

from __future__ import annotations

import optuna
import pytest
import torch
from cli_runner import genopt
from optuna.trial import TrialState

from genopt.checkpoints import TRIAL_FORMAT
from genopt.study.artifacts.stores import artifact_store
from genopt.study.record.facts import study_artifact_store

QUICK = ["--trials", "2", "--epochs", "1", "--train-limit", "2000", "--fid-samples", "1000", "--no-progress"]
# For what does not depend on how well a trial learns.
SMALL = ["--epochs", "1", "--train-limit", "500", "--fid-samples", "200", "--no-progress"]


def trials_of(url: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=url).trials


def check_trial_checkpoint(trial, objective: str, num_classes: int, store=None) -> None:
    """A complete trial's value is its objective at its chosen epoch; its kept checkpoint is that epoch's."""
    assert trial.state == TrialState.COMPLETE and 0 < trial.value < float("inf")
    for key in ("seed", "epochs", "wall_seconds", "images_per_second", "checkpoint"):
        assert key in trial.user_attrs
    with (store or artifact_store()).open_reader(trial.user_attrs["checkpoint"]) as f:
        checkpoint = torch.load(f, weights_only=True)
    assert checkpoint["format"] == TRIAL_FORMAT
    assert checkpoint["scores"][objective] == trial.value == trial.user_attrs[objective]
    assert checkpoint["epoch"] == trial.user_attrs["best_epoch"]
    assert trial.intermediate_values[checkpoint["epoch"]] == trial.value
    assert checkpoint["generator_config"]["num_classes"] == num_classes
    assert checkpoint["generator_config"]["noise_dim"] == trial.params["noise_dim"]


@pytest.mark.slow
def test_study_runs_on_real_mnist_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = genopt("study", "--model", "gan", "--storage", url, *QUICK)
    assert first.returncode == 0, first.stderr
    assert "study gan-mnist: 2 trials" in first.stdout
    assert len(trials_of(url, "gan-mnist")) == 2

    again = [a if a != "2" else "1" for a in QUICK]  # --trials 1
    second = genopt("study", "--model", "gan", "--storage", url, *again)
    assert second.returncode == 0, second.stderr
    trials = trials_of(url, "gan-mnist")
    assert len(trials) == 3
    # One epoch is the whole budget: nothing is pruned after it, so every trial completes.
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3, "a resumed study replayed a draw"
    for t in trials:
        assert t.intermediate_values == {1: t.value} and t.user_attrs["best_epoch"] == 1
        check_trial_checkpoint(t, "fid", num_classes=0)  # the spec's objective "auto": FID for a gan


@pytest.mark.slow
def test_a_cgan_study_scores_each_trial_by_intra_fid_at_its_best_epoch(tiny_study):
    assert f"study {tiny_study.name}: 4 trials" in tiny_study.stdout
    trials = trials_of(tiny_study.url, tiny_study.name)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    store = study_artifact_store(optuna.load_study(study_name=tiny_study.name, storage=tiny_study.url))
    for t in trials:
        check_trial_checkpoint(t, "intra_fid", num_classes=10, store=store)  # "auto": intra-FID for a cgan


@pytest.mark.slow
def test_best_checkpoints_are_kept_and_the_rest_removed(tmp_path):
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    spec = tmp_path / "keep.toml"
    spec.write_text(
        "[search]\nkeep_checkpoints = 1\n[search.params.lr]\nlow = 1e-4\nhigh = 1e-2\nlog = true\n"
    )
    result = genopt("study", "--spec", str(spec), "--storage", url, "--trials", "3", *SMALL)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="gan-mnist", storage=url)
    from genopt.study.artifacts.retention import kept_checkpoints

    kept = kept_checkpoints(study, artifact_store())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert list(kept) == [study.best_trial.number]


def test_help_lists_subcommands():
    result = genopt("--help")
    assert result.returncode == 0
    for command in ("study", "worker", "ensemble", "sample", "report", "dashboard"):
        assert command in result.stdout
    result = genopt("study", "--help")
    assert result.returncode == 0
    for option in (
        "--dataset",
        "--data-dir",
        "--epochs",
        "--storage",
        "--study",
        "--spec",
        "--seed",
        "--fid-samples",
        "--train-limit",
        "--trials",
        "--model",
    ):
        assert option in result.stdout


@pytest.mark.slow
def test_diverging_trials_end_pruned_with_the_reason_and_the_study_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'diverge.db'}"
    spec = tmp_path / "diverge.toml"
    spec.write_text("[search.params.lr]\nlow = 1e29\nhigh = 1e30\n")
    result = genopt("study", "--spec", str(spec), "--storage", url, "--trials", "2", *SMALL)
    assert result.returncode == 0, result.stderr
    trials = trials_of(url, "gan-mnist")
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all("non-finite loss" in t.user_attrs["stop_reason"] for t in trials)
    assert "no trial completed yet" in result.stdout


def test_a_trial_behind_best_stops_is_complete_with_its_best_epoch(mnist, tmp_path):
    """Under a pruner that completes its stops (the shipped behind_best) a stopped trial ends as
    COMPLETE with its own score and checkpoint, so the GP sampler, which learns from complete trials
    only, steers away from it. (Which trials behind_best stops is tests/test_search.py's; here a
    pruner of the same kind stops every trial at its first epoch.)"""
    from genopt.metrics import FidEvaluator
    from genopt.spec import StudySpec
    from genopt.study.objective import Objective
    from genopt.study.search.pruners import BehindBestPruner, make_pruner

    class StopsEveryTrial(optuna.pruners.ThresholdPruner):
        completes_stops = BehindBestPruner.completes_stops

    spec = StudySpec(model="cgan", max_epochs=3, train_limit=2_000, fid_samples=500)
    assert isinstance(make_pruner(spec), BehindBestPruner)
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(pruner=StopsEveryTrial(upper=0.0))
    objective = Objective(spec, mnist, FidEvaluator(mnist), store, torch.device("cpu"))
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["epochs"] == 1
    assert trial.user_attrs["stop_reason"].startswith("stopped at epoch 1")
    assert trial.value == trial.intermediate_values[1] == trial.user_attrs["intra_fid"]
    assert "checkpoint" in trial.user_attrs

    # Any other pruner's stop ends the trial as PRUNED, as before, whatever the spec names.
    pruned = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    pruned.optimize(objective, n_trials=1)
    assert pruned.trials[0].state == TrialState.PRUNED
