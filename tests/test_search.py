"""The search genopt ships: replays against the committed learning-curve table, and the spec fields."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from genopt.errors import GenoptError
from genopt.spec import StudySpec, load_spec
from genopt.study.replay import Surrogate, Table, normalise, replay
from genopt.study.search import make_pruner, make_sampler

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "bench" / "data" / "curves.json.gz"
SEARCH_FIELDS = ("sampler", "multivariate", "startup_trials", "pruner", "min_resource")


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


def test_surrogate_returns_the_tables_own_curves_at_its_configurations(table):
    surrogate = Surrogate(table, k=5)
    for params, curve in zip(table.configs, table.curves, strict=True):
        predicted = surrogate.curve(params)
        for name, values in curve.scores.items():
            np.testing.assert_array_equal(predicted.scores[name], values)
        np.testing.assert_array_equal(predicted.images, curve.images)


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


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving", "median", "patient", "none"])
def test_every_named_search_builds(sampler, pruner):
    spec = StudySpec(sampler=sampler, pruner=pruner, min_resource=2, max_epochs=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(make_sampler(spec), optuna.samplers.BaseSampler)
        assert isinstance(make_pruner(spec), optuna.pruners.BasePruner)


def test_min_resource_is_capped_at_the_budget():
    pruner = make_pruner(StudySpec(pruner="successive_halving", min_resource=5, max_epochs=2))
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "cmaes"}, "unknown sampler 'cmaes'"),
        ({"pruner": "asha"}, "unknown pruner 'asha'"),
        ({"startup_trials": -1}, "startup_trials must be at least 0"),
        ({"min_resource": 0}, "min_resource must be at least 1"),
    ],
)
def test_bad_search_fields_are_refused_in_one_line(changes, message):
    with pytest.raises(GenoptError, match=message):
        dataclasses.replace(StudySpec(), **changes).validate("spec")
