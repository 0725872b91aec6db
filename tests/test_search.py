"""The search genopt ships: replays against the committed learning-curve table, and the spec fields."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from bench import curves, search_efficiency
from bench.replay import Surrogate, Table, normalise, replay
from genopt.errors import GenoptError
from genopt.files import plain
from genopt.spec import StudySpec, load_spec
from genopt.study.record.attrs import SPEC_ATTR
from genopt.study.record.resume import RESUMABLE_FIELDS, check_resumable
from genopt.study.search.pruners import BehindBestPruner, make_pruner
from genopt.study.search.samplers import Handover, make_sampler

ROOT = Path(__file__).resolve().parent.parent

TABLE = ROOT / "bench" / "data" / "curves.json.gz"
DCGAN_TABLE = ROOT / "bench" / "data" / "curves-dcgan.json.gz"
SEARCH_FIELDS = (
    "sampler", "multivariate", "startup_trials", "tpe_after", "pruner", "min_resource", "behind_factor"
)  # fmt: skip


@pytest.fixture(scope="module")
def table() -> Table:
    return Table.load(TABLE)


def test_committed_table_is_what_the_issue_asks(table):
    assert TABLE.stat().st_size <= 5_000_000
    assert len(table.configs) >= 400
    assert all(c.epochs == table.setting.max_epochs for c in table.curves)
    for curve in table.curves:
        assert set(curve.scores) >= {"fid", "intra_fid", "label_accuracy"}
        assert np.all(np.diff(curve.images) > 0) and np.all(np.diff(curve.seconds) > 0)


def test_the_shipped_dcgans_table_is_of_its_model_and_space():
    dcgan = Table.load(DCGAN_TABLE)
    shipped = load_spec(ROOT / "studies" / "cgan.toml")
    assert DCGAN_TABLE.stat().st_size <= 5_000_000 and len(dcgan.configs) >= 96
    assert (dcgan.setting.kind, dcgan.setting.generator_channels) == (
        shipped.kind,
        shipped.generator_channels,
    )
    ranges = {p.name: (p.low, p.high, p.log) for p in shipped.params}
    assert {p.name: (p.low, p.high, p.log) for p in dcgan.setting.params} == ranges
    for curve in dcgan.curves:
        assert curve.epochs == dcgan.setting.max_epochs
        assert set(curve.scores) >= {"fid", "intra_fid", "label_accuracy"}
        assert curve.replicates >= 2  # one run's score varies by ~7 % with its seed


def test_the_default_search_is_replayed_on_the_grid_genopt_ships():
    dcgan = Table.load(DCGAN_TABLE)
    space = search_efficiency.search_space(dcgan.setting)
    assert {p.name: p.step for p in space} == {"lr": None, "batch_size": 4, "noise_dim": 10}
    spec = dataclasses.replace(dcgan.setting, params=space, **search_efficiency.default_search())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = replay(spec, Surrogate(dcgan, k=5), 12)
    assert all(t.params["batch_size"] % 4 == 0 and t.params["noise_dim"] % 10 == 0 for t in trials)
    # a table of other ranges (the article's MLP table) is refused, not replayed on the wrong space
    with pytest.raises(ValueError, match="search space is not"):
        search_efficiency.search_space(Table.load(TABLE).setting)


def test_surrogate_returns_the_tables_own_curves_at_its_configurations(table):
    surrogate = Surrogate(table, k=5)
    for params, curve in zip(table.configs, table.curves, strict=True):
        predicted = surrogate.curve(params)
        for name, values in curve.scores.items():
            np.testing.assert_array_equal(predicted.scores[name], values)
        np.testing.assert_array_equal(predicted.images, curve.images)


def test_a_configurations_replicates_are_averaged(table):
    """Rows of one configuration trained with other seeds (curves.py --replicates) are one curve:
    FIDs' geometric mean, the rest's arithmetic mean, over the epochs every replicate ran."""
    document = curves.load(TABLE)
    row = document["rows"][0]
    other = {**row, "replicate": 1, "epochs": [dict(e) for e in row["epochs"]][:-1]}
    for e in other["epochs"]:
        e.update(intra_fid=4 * e["intra_fid"], label_accuracy=0.0, seconds=3 * e["seconds"])
    twice = Table.from_document({**document, "rows": [row, other, *document["rows"][1:]]})
    assert len(twice.configs) == len(table.configs) and twice.configs[0] == table.configs[0]
    curve, once = twice.curves[0], table.curves[0]
    assert (curve.replicates, curve.epochs) == (2, once.epochs - 1)
    np.testing.assert_allclose(curve.scores["intra_fid"], 2 * once.scores["intra_fid"][:-1])
    np.testing.assert_allclose(curve.scores["label_accuracy"], once.scores["label_accuracy"][:-1] / 2)
    np.testing.assert_allclose(curve.seconds, 2 * once.seconds[:-1])
    np.testing.assert_array_equal(curve.images, once.images[:-1])
    for a, b in zip(twice.curves[1:], table.curves[1:], strict=True):  # the others: as they were
        np.testing.assert_array_equal(a.scores["intra_fid"], b.scores["intra_fid"])


def test_surrogate_interpolates_between_neighbours(table):
    surrogate = Surrogate(table, k=3)
    a, b = table.configs[0], table.configs[1]
    between = {"lr": (a["lr"] * b["lr"]) ** 0.5, "batch_size": a["batch_size"], "noise_dim": a["noise_dim"]}
    curve = surrogate.curve(between)
    assert curve.epochs == table.setting.max_epochs
    lowest = min(c.scores["intra_fid"].min() for c in table.curves)
    highest = max(c.scores["intra_fid"].max() for c in table.curves)
    assert np.all((curve.scores["intra_fid"] >= lowest) & (curve.scores["intra_fid"] <= highest))


def test_normalise_maps_the_space_to_the_unit_cube(table):
    space = table.setting.params
    low = {p.name: p.low for p in space}
    high = {p.name: p.high for p in space}
    np.testing.assert_allclose(normalise(low, space), 0.0)
    np.testing.assert_allclose(normalise(high, space), 1.0)


@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving", "median"])
def test_a_replayed_search_is_the_same_for_the_same_seed(table, pruner):
    spec = dataclasses.replace(table.setting, pruner=pruner, seed=7)
    surrogate = Surrogate(table, k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = replay(spec, surrogate, 25), replay(spec, surrogate, 25)
        other = replay(dataclasses.replace(spec, seed=8), surrogate, 25)
    assert first == second
    assert first != other
    # The pruner really pruned some trials short of the budget, and each cost what it ran.
    assert any(t.value is None and t.epochs < spec.max_epochs for t in first)
    for t in first:
        assert t.images == t.epochs * table.setting.train_limit


def test_the_shipped_default_search_is_what_the_study_specs_ship():
    default = StudySpec()
    for path in sorted((ROOT / "studies").glob("*.toml")):
        spec = load_spec(path)
        shipped = {f: getattr(spec, f) for f in SEARCH_FIELDS}
        assert shipped == {f: getattr(default, f) for f in SEARCH_FIELDS}, path


def test_a_resumed_study_may_change_how_it_searches_and_nothing_else():
    auto = {"auto_patience", "auto_min_improvement", "auto_max_trials"}  # how long it searches
    assert {"seed", "keep_checkpoints", *SEARCH_FIELDS, *auto} == RESUMABLE_FIELDS
    study = optuna.create_study(study_name="s")
    study.set_user_attr(SPEC_ATTR, plain(StudySpec().to_dict()))
    how = {"sampler": "tpe", "pruner": "none", "behind_factor": 2.0, "seed": 3, "keep_checkpoints": 1}
    how |= {"auto_patience": 40}
    check_resumable(study, dataclasses.replace(StudySpec(), **how), "sha")
    with pytest.raises(GenoptError, match="made with a different kind, lr: use the same spec"):
        check_resumable(study, dataclasses.replace(StudySpec(), lr=1e-3, kind="dcgan", **how), "sha")


def test_a_study_of_a_shipped_spec_is_pointed_at_that_file():
    study = optuna.create_study(study_name="s")
    study.set_user_attr(SPEC_ATTR, plain(load_spec(ROOT / "studies" / "cgan-article.toml").to_dict()))
    with pytest.raises(GenoptError, match=r"resumes with --spec studies/cgan-article\.toml\)$"):
        check_resumable(study, load_spec(ROOT / "studies" / "cgan.toml"), "sha")
    check_resumable(study, load_spec(ROOT / "studies" / "cgan-article.toml"), "sha")
    # a spec no shipped file matches gets no file named: that file would be refused too
    custom = dataclasses.replace(load_spec(ROOT / "studies" / "cgan-article.toml"), generator_widths=(64,))
    study.set_user_attr(SPEC_ATTR, plain(custom.to_dict()))
    with pytest.raises(GenoptError, match=r"or a new --study name$"):
        check_resumable(study, load_spec(ROOT / "studies" / "cgan.toml"), "sha")


class OnePoint(optuna.samplers.BaseSampler):
    """A sampler that always draws ``x``, whatever it saw."""

    def __init__(self, x: float):
        self.x = x

    def infer_relative_search_space(self, study, trial):
        return {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    def sample_relative(self, study, trial, search_space):
        return {"x": self.x}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.x


def test_the_handover_draws_with_the_second_sampler_from_its_trial_on():
    study = optuna.create_study(sampler=Handover(OnePoint(0.25), OnePoint(0.75), at=5))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=8)
    assert [t.params["x"] for t in study.trials] == [0.25] * 5 + [0.75] * 3
    # a resumed study (a new sampler object) hands over by the trial's number, not its own count
    study.sampler = Handover(OnePoint(0.25), OnePoint(0.75), at=5)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    assert [t.params["x"] for t in study.trials[-2:]] == [0.75, 0.75]


def test_the_spec_says_when_gp_hands_over_to_tpe():
    spec = StudySpec(sampler="gp", startup_trials=4, tpe_after=0)
    assert isinstance(make_sampler(spec), optuna.samplers.GPSampler)
    sampler = make_sampler(dataclasses.replace(spec, tpe_after=6))
    assert isinstance(sampler, Handover) and sampler.at == 6
    assert isinstance(sampler.first, optuna.samplers.GPSampler)
    assert isinstance(sampler.then, optuna.samplers.TPESampler)
    # a real study: GP's draws (random for the 4 startup trials), then TPE's; each trial is drawn once
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: (trial.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=10)
    assert len({t.params["x"] for t in study.trials}) == 10
    # TPE, which the spec names for itself, never hands over
    assert isinstance(
        make_sampler(dataclasses.replace(spec, sampler="tpe", tpe_after=6)), optuna.samplers.TPESampler
    )


def test_min_resource_is_capped_at_the_budget():
    pruner = make_pruner(StudySpec(pruner="successive_halving", min_resource=5, max_epochs=2))
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "cmaes"}, "unknown sampler 'cmaes'"),
        ({"pruner": "asha"}, "unknown pruner 'asha'"),
        ({"startup_trials": -1}, "startup_trials must be at least 0"),
        ({"tpe_after": -2}, "tpe_after must be at least 0"),
        ({"min_resource": 0}, "min_resource must be at least 1"),
        ({"behind_factor": 0.9}, "behind_factor must be at least 1"),
        ({"behind_factor": float("nan")}, "behind_factor must be at least 1"),
    ],
)
def test_bad_search_fields_are_refused_in_one_line(changes, message):
    with pytest.raises(GenoptError, match=message):
        dataclasses.replace(StudySpec(), **changes).validate("spec")


def _finished_trial(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
    study.tell(trial, min(curve))


def _running_trial(study: optuna.Study, curve: list[float]) -> optuna.Trial:
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
    return trial


def test_behind_best_stops_only_trials_far_behind_the_best_at_the_same_epoch():
    study = optuna.create_study(pruner=BehindBestPruner(1.5, min_resource=2))
    _finished_trial(study, [1000.0, 600.0, 300.0])
    _finished_trial(study, [900.0, 800.0, 700.0])
    # 1.5 x the best epoch-2 score (600) is 900: above it is stopped, at or below it goes on.
    assert _running_trial(study, [1200.0, 901.0]).should_prune()
    assert not _running_trial(study, [1200.0, 900.0]).should_prune()
    # Epoch 1 is before min_resource, however far behind.
    assert not _running_trial(study, [5000.0]).should_prune()
    # Epoch 3's best is 300: 451 is behind it, though it would lead at epoch 2.
    assert _running_trial(study, [700.0, 500.0, 451.0]).should_prune()


def test_behind_best_never_stops_the_first_trial():
    study = optuna.create_study(pruner=BehindBestPruner(1.5, min_resource=1))
    assert not _running_trial(study, [1e6, 1e6]).should_prune()


def test_trials_behind_best_stops_complete_with_their_best_epoch(table):
    """The GP sampler learns from complete trials only: a stopped trial must complete, with the
    score of its best epoch so far, and have cost only the epochs it ran."""
    spec = dataclasses.replace(table.setting, sampler="tpe", pruner="behind_best", min_resource=2, seed=3)
    surrogate = Surrogate(table, k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = replay(spec, surrogate, 30)
    stopped = [t for t in trials if t.epochs < spec.max_epochs]
    assert stopped, "no trial was stopped"
    for t in stopped:
        assert t.epochs >= spec.min_resource
        assert t.value == pytest.approx(surrogate.curve(t.params).scores["intra_fid"][: t.epochs].min())
        assert t.images == t.epochs * table.setting.train_limit
    assert all(t.value is not None for t in trials)


def test_a_replayed_search_reaches_the_reference_within_the_tolerance():
    reference = [(100, 1.0, 20.0), (100, 1.0, 10.0)]  # best 10.0, 200 images in all
    close = [(50, 1.0, 10.05), (50, 1.0, 9.0)]  # within 1 % after 50 images; at most it after 100
    off = [(50, 1.0, 10.2), (50, 1.0, None)]  # 2 % behind, then pruned
    assert search_efficiency.ratios([close], [reference], 2) == [0.25]
    assert search_efficiency.ratios([close], [reference], 2, tolerance=0.0) == [0.5]
    assert search_efficiency.ratios([off], [reference], 2) == [float("inf")]
    # the tolerance serves both sides: a reference that comes within 1 % of its best in its first
    # trial needs only that trial's compute
    early = [(100, 1.0, 10.05), (100, 1.0, 10.0)]
    assert search_efficiency.ratios([close], [early], 2) == [0.5]
    assert search_efficiency.ratios([close], [early], 2, tolerance=0.0) == [0.5]
