"""What a trial is worth: its best epoch is kept, and a cGAN below min_label_accuracy is never chosen.

Training, the study and the artifact store are real; only the scores are scripted, so the test can
say which epoch should win.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import optuna
import pytest
import torch
from tiny import tiny_spec

from genopt.checkpoints import load_trial_checkpoint
from genopt.ensemble.build import load_members
from genopt.metrics import EVAL_NOISE_SEED, Scores
from genopt.spec import Param, StudySpec
from genopt.study.artifacts.stores import artifact_store
from genopt.study.objective import Objective
from genopt.study.record import attrs as A
from genopt.study.record.records import best_trial
from genopt.study.search.pruners import make_pruner
from genopt.study.search.samplers import make_sampler

TINY = tiny_spec(
    model="cgan",
    max_epochs=4,
    batch_size=32,
    train_limit=256,
    fid_samples=10,
    pruner="none",
    params=(Param("lr", low=1e-3, high=2e-3, log=True),),
    ema_decay=StudySpec().ema_decay,  # the shipped weight average
)
PROBE_LABELS = torch.arange(10)


class ScriptedScores:
    """Stands in for the evaluator's scores: the next value of a script each call, and a record of
    what the generator drew from the evaluation noise at that call."""

    feature_version = 2
    feature_net = SimpleNamespace(sha256="0" * 64)  # what a trial records of the network that scored it

    def __init__(self, values: list[float], accuracy: float):
        self.values, self.accuracy, self.drawn = list(values), accuracy, []

    def evaluate(self, sample, n, *, conditional):
        self.drawn.append(sample(PROBE_LABELS).clone())
        value = self.values.pop(0)
        return Scores(fid=value + 1.0, intra_fid=value, label_accuracy=self.accuracy)


def run(spec: StudySpec, scripts: list[ScriptedScores], mnist, tmp_path) -> optuna.Study:
    store = artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'q.db'}", sampler=make_sampler(spec), pruner=make_pruner(spec)
    )
    for script in scripts:
        study.optimize(Objective(spec, mnist, script, store, torch.device("cpu")), n_trials=1)
    return study


def test_a_trial_whose_objective_rises_after_epoch_2_keeps_epoch_2(mnist, tmp_path):
    script = ScriptedScores([300.0, 200.0, 250.0, 400.0], accuracy=0.9)
    study = run(TINY, [script], mnist, tmp_path)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == 200.0 and trial.user_attrs[A.BEST_EPOCH_ATTR] == 2
    assert trial.user_attrs["intra_fid"] == 200.0 and trial.user_attrs["fid"] == 201.0
    assert trial.user_attrs[A.history_attr("intra_fid")] == [300.0, 200.0, 250.0, 400.0]
    assert trial.intermediate_values == {1: 300.0, 2: 200.0, 3: 250.0, 4: 400.0}

    store = artifact_store(tmp_path / "artifacts")
    with store.open_reader(trial.user_attrs[A.CHECKPOINT_ATTR]) as f:
        generator, metadata = load_trial_checkpoint(f, name="checkpoint")
    assert metadata["epoch"] == 2
    drawn = generator.sample(PROBE_LABELS, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    assert torch.equal(drawn, script.drawn[1]), "the checkpoint is not epoch 2's generator"
    assert not torch.equal(drawn, script.drawn[3])


def test_select_epoch_last_keeps_the_last_epoch_as_the_article_did(mnist, tmp_path):
    spec = dataclasses.replace(TINY, select_epoch="last")
    study = run(spec, [ScriptedScores([300.0, 200.0, 250.0, 400.0], accuracy=0.9)], mnist, tmp_path)
    assert study.trials[0].value == 400.0 and study.trials[0].user_attrs[A.BEST_EPOCH_ATTR] == 4


def test_a_trial_below_min_label_accuracy_is_never_best_nor_a_member(mnist, tmp_path):
    spec = dataclasses.replace(TINY, min_label_accuracy=0.5, max_epochs=1)
    study = run(
        spec,
        [ScriptedScores([10.0], accuracy=0.2), ScriptedScores([50.0], accuracy=0.9)],
        mnist,
        tmp_path,
    )
    low, ok = study.trials
    assert low.value == 10.0 and low.user_attrs[A.INFEASIBLE_ATTR] is True
    assert A.CHECKPOINT_ATTR not in low.user_attrs
    assert best_trial(study).number == ok.number
    assert study.best_trial.number == ok.number  # Optuna's own view, through the trial constraint
    members = load_members(study, artifact_store(tmp_path / "artifacts"), top_k=5)
    assert [m.trial_number for m in members] == [ok.number]


@pytest.mark.parametrize("objective, expected", [("fid", 201.0), ("intra_fid", 200.0)])
def test_the_spec_objective_is_what_the_trial_reports(mnist, tmp_path, objective, expected):
    spec = dataclasses.replace(TINY, objective=objective, max_epochs=1)
    study = run(spec, [ScriptedScores([200.0], accuracy=0.9)], mnist, tmp_path)
    assert study.trials[0].value == expected
