"""Searches replayed against a learning-curve table instead of training (surrogate benchmarking).

A table (``curves.py``) holds real learning curves: for each of a few hundred configurations of
a search space, every epoch's scores, wall seconds and images trained. ``Surrogate`` maps any
configuration of that space to a curve by inverse-distance weighting of its nearest table
configurations in the normalised space (log-scaled where the parameter is searched on a log scale),
as surrogate benchmarks such as HPOBench and YAHPO Gym do with their models. ``replay`` runs a
search with genopt's own suggesting (``objective.suggest``), sampler and pruner
(``genopt.study.search``) and epoch judging (``objective.EpochJudge``), training replaced by the
surrogate: a search of a hundred trials takes seconds instead of hours, so candidates can be
compared over many seeds.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from genopt.metrics import Scores
from genopt.spec import Param, StudySpec
from genopt.study.objective import EpochJudge, suggest, trial_seed
from genopt.study.search.pruners import make_pruner
from genopt.study.search.samplers import make_sampler

# Scores averaged in log space: FIDs span three orders of magnitude across a search space.
LOG_SCORES = ("fid", "intra_fid")


@dataclass(frozen=True)
class Curve:
    """One configuration's learning curve: per epoch, each score and the cumulative cost (the mean
    over ``replicates`` training runs)."""

    scores: dict[str, np.ndarray]
    seconds: np.ndarray
    images: np.ndarray
    replicates: int = 1

    @property
    def epochs(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Table:
    """A learning-curve table: the setting it was trained in, its configurations and curves."""

    setting: StudySpec
    configs: list[dict[str, Any]]
    curves: list[Curve]
    command: str = ""
    machine: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Table:
        with gzip.open(path, "rt") as f:
            document = json.load(f)
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Table:
        """The table's configurations in order, each with the mean curve of its replicates (rows of
        the same configuration, trained with other seeds: ``curves.py --replicates``)."""
        setting = StudySpec.from_dict(document["setting"])
        replicates: dict[str, list[dict]] = {}
        for row in document["rows"]:
            if row["epochs"]:
                replicates.setdefault(json.dumps(row["params"], sort_keys=True), []).append(row)
        configs, curves = [], []
        for rows in replicates.values():
            epochs = min(len(r["epochs"]) for r in rows)
            names = [k for k in document["scores"] if k in rows[0]["epochs"][0]]

            weights = np.full(len(rows), 1.0 / len(rows))

            def mean(key: str, rows=rows, epochs=epochs, weights=weights) -> np.ndarray:
                values = np.array([[_finite(e.get(key)) for e in r["epochs"][:epochs]] for r in rows])
                return average(values, weights, key in LOG_SCORES)

            configs.append(rows[0]["params"])
            curves.append(
                Curve(
                    scores={k: mean(k) for k in names},
                    seconds=mean("seconds"),
                    images=np.array([e["images"] for e in rows[0]["epochs"][:epochs]], dtype=float),
                    replicates=len(rows),
                )
            )
        return cls(setting, configs, curves, document.get("command", ""), document.get("machine", ""))

    def subset(self, indices) -> Table:
        return dataclasses.replace(
            self, configs=[self.configs[i] for i in indices], curves=[self.curves[i] for i in indices]
        )


def average(stacked: np.ndarray, weights: np.ndarray, log: bool) -> np.ndarray:
    """The weighted mean of curves (one per row of ``stacked``), in log space where ``log`` (FIDs,
    ``LOG_SCORES``: they span three orders of magnitude), epoch by epoch."""
    if log:
        with np.errstate(divide="ignore"):
            return np.exp(weights @ np.log(stacked))
    return weights @ stacked


def _finite(value: float | None) -> float:
    return math.inf if value is None or not math.isfinite(value) else float(value)


def normalise(params: dict[str, Any], space: tuple[Param, ...]) -> np.ndarray:
    """A configuration as a point of the unit cube: each range mapped to [0, 1], log where searched so."""
    point = []
    for p in space:
        value = float(params[p.name])
        if p.log:
            point.append((math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low)))
        else:
            point.append((value - p.low) / (p.high - p.low))
    return np.array(point)


class Surrogate:
    """Any configuration of the table's space -> a learning curve.

    The curve is the inverse-distance-weighted mean of the ``k`` nearest table curves (FIDs averaged
    in log space), over the epochs all of them ran; at a table configuration it is that
    configuration's own curve.
    """

    def __init__(self, table: Table, k: int = 3):
        if any(p.choices is not None for p in table.setting.params):
            raise ValueError("the surrogate maps numeric search spaces only")
        self.table = table
        self.k = k
        self.space = table.setting.params
        self.points = np.stack([normalise(c, self.space) for c in table.configs])

    def curve(self, params: dict[str, Any]) -> Curve:
        distance = np.linalg.norm(self.points - normalise(params, self.space), axis=1)
        nearest = np.argsort(distance, kind="stable")[: self.k]
        if distance[nearest[0]] < 1e-12:
            return self.table.curves[nearest[0]]
        curves = [self.table.curves[i] for i in nearest]
        weights = 1.0 / distance[nearest]
        weights /= weights.sum()
        epochs = min(c.epochs for c in curves)

        def mean(values: list[np.ndarray], log: bool) -> np.ndarray:
            return average(np.stack([v[:epochs] for v in values]), weights, log)

        names = curves[0].scores.keys()
        return Curve(
            scores={k: mean([c.scores[k] for c in curves], k in LOG_SCORES) for k in names},
            seconds=mean([c.seconds for c in curves], False),
            images=curves[0].images[:epochs],
        )


def held_out_rank_correlation(
    table: Table, score: str, k: int, fraction: float = 0.1, seed: int = 0
) -> float:
    """Spearman correlation of predicted against real best scores on a held-out share of the table."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table.configs))
    cut = max(2, round(fraction * len(order)))
    held, kept = order[:cut], order[cut:]
    surrogate = Surrogate(table.subset(kept), k=k)
    real = [np.min(table.curves[i].scores[score]) for i in held]
    predicted = [np.min(surrogate.curve(table.configs[i]).scores[score]) for i in held]
    return float(spearmanr(real, predicted).statistic)


@dataclass(frozen=True)
class ReplayedTrial:
    """What one replayed trial cost and scored (``value`` None when pruned)."""

    number: int
    params: dict[str, Any]
    epochs: int
    images: float
    seconds: float
    value: float | None


class ReplayObjective:
    """``Objective`` with training replaced by the surrogate: same suggesting, judging and pruning."""

    def __init__(self, spec: StudySpec, surrogate: Surrogate):
        self.spec = spec
        self.surrogate = surrogate
        self.trials: list[ReplayedTrial] = []

    def __call__(self, trial: optuna.Trial) -> float:
        spec = self.spec
        params = suggest(trial, spec)
        config = spec.run_config(params, seed=trial_seed(spec, trial.number))
        curve = self.surrogate.curve(params)
        judge = EpochJudge(trial, spec, config.epochs)
        epochs = min(config.epochs, curve.epochs)
        reason, ran = None, 0
        for epoch in range(1, epochs + 1):
            ran = epoch
            scores = Scores(**{k: float(v[epoch - 1]) for k, v in curve.scores.items()})
            reason = judge(epoch, scores)
            if reason is not None:
                break
        if reason is None and epochs < config.epochs:
            reason = "diverged"  # the table's run stopped early
        pruned = reason is not None and not judge.stopped_early
        value = None if pruned or judge.chosen is None else judge.chosen.value
        self.trials.append(
            ReplayedTrial(
                trial.number, params, ran, float(curve.images[ran - 1]), float(curve.seconds[ran - 1]), value
            )
        )
        if value is None:
            raise optuna.TrialPruned(reason)
        return value


def replay(
    spec: StudySpec, surrogate: Surrogate, trials: int, *, sampler=None, pruner=None
) -> list[ReplayedTrial]:
    """One search of ``trials`` trials against the surrogate; the spec's sampler and pruner unless given.

    The study name is fixed: Hyperband assigns trials to brackets by a hash of it, so the same spec
    and seed replay the same search.
    """
    objective = ReplayObjective(spec, surrogate)
    study = optuna.create_study(
        study_name="replay",
        direction="minimize",
        sampler=sampler if sampler is not None else make_sampler(spec),
        pruner=pruner if pruner is not None else make_pruner(spec),
    )
    study.optimize(objective, n_trials=trials)
    return objective.trials
