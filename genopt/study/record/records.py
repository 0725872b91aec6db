"""Typed readers of a study's and a trial's attributes (``genopt.study.record.attrs``).

The progress lines, the report, the ensemble and the resume checks ask a record for a field;
attributes a study made by an earlier genopt lacks read as the defaults that study meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from genopt.metrics.scores import SCORES
from genopt.study.record import attrs as A

__all__ = ["StudyRecord", "TrialRecord", "best_trial", "format_scores"]


@dataclass(frozen=True)
class StudyRecord:
    """What a study made by ``genopt study`` remembers about how it was made."""

    spec: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    artifact_store: str | None = None
    fid_floor: float | None = None
    feature_accuracy: float | None = None
    feature_version: int = 1
    feature_sha256: str | None = None
    init: dict[str, Any] | None = None
    stopped: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        return cls.from_attrs(study.user_attrs)

    @classmethod
    def from_attrs(cls, user_attrs: dict[str, Any]) -> StudyRecord:
        """From a study's user attributes (one made before S3 stores named its folder ``artifact_dir``)."""
        return cls(
            spec=user_attrs.get(A.SPEC_ATTR) or {},
            dataset=user_attrs.get(A.DATASET_ATTR) or {},
            artifact_store=user_attrs.get(A.ARTIFACT_STORE_ATTR, user_attrs.get(A.ARTIFACT_DIR_ATTR)),
            fid_floor=user_attrs.get(A.FID_FLOOR_ATTR),
            feature_accuracy=user_attrs.get(A.FEATURE_ACCURACY_ATTR),
            feature_version=int(user_attrs.get(A.FEATURE_VERSION_ATTR, 1)),
            feature_sha256=user_attrs.get(A.FEATURE_SHA256_ATTR),
            init=user_attrs.get(A.INIT_ATTR),
            stopped=user_attrs.get(A.STOPPED_ATTR),
        )

    @property
    def made_by_genopt(self) -> bool:
        return bool(self.spec)


@dataclass(frozen=True)
class TrialRecord:
    """A finished or running trial as genopt wrote it.

    Attributes:
        scores: every registered score at the chosen epoch (``SCORES``' names).
        histories: every registered score's per-epoch values.
    """

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    samples: str | None = None
    history_csv: str | None = None
    checkpoint: str | None = None
    baseline: bool = False
    seed: int | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    wall_seconds: float | None = None
    images_per_second: float | None = None
    precision: str | None = None
    feature_version: int | None = None
    feature_sha256: str | None = None
    loss_history: list[list[float]] = field(default_factory=list)
    stop_reason: str | None = None
    reason: str | None = None
    infeasible: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        u = trial.user_attrs
        return cls(
            number=trial.number,
            state=trial.state,
            value=trial.value,
            params=dict(trial.params),
            samples=u.get(A.SAMPLES_ATTR),
            history_csv=u.get(A.HISTORY_ATTR),
            checkpoint=u.get(A.CHECKPOINT_ATTR),
            baseline=bool(u.get(A.BASELINE_ATTR, False)),
            seed=u.get(A.SEED_ATTR),
            epochs=u.get(A.EPOCHS_ATTR),
            best_epoch=u.get(A.BEST_EPOCH_ATTR),
            wall_seconds=u.get(A.WALL_SECONDS_ATTR),
            images_per_second=u.get(A.IMAGES_PER_SECOND_ATTR),
            precision=u.get(A.PRECISION_ATTR),
            feature_version=u.get(A.TRIAL_FEATURE_VERSION_ATTR),
            feature_sha256=u.get(A.TRIAL_FEATURE_SHA256_ATTR),
            loss_history=u.get(A.LOSS_HISTORY_ATTR) or [],
            stop_reason=u.get(A.STOP_REASON_ATTR),
            reason=u.get(A.REASON_ATTR),
            infeasible=bool(u.get(A.INFEASIBLE_ATTR, False)),
            scores={name: u[name] for name in SCORES if isinstance(u.get(name), int | float)},
            histories={name: u[A.history_attr(name)] for name in SCORES if A.history_attr(name) in u},
        )

    @property
    def feasible(self) -> bool:
        """COMPLETE and within the study's constraint (trials made before constraints always are)."""
        return self.state == TrialState.COMPLETE and not self.infeasible

    @property
    def shown_scores(self) -> dict[str, float]:
        """The chosen epoch's scores, or for a trial made before per-epoch scores its last FID."""
        if self.scores:
            return self.scores
        fids = self.histories.get("fid") or []
        fid = self.value if self.value is not None else (fids[-1] if fids else None)
        return {"fid": fid} if fid is not None else {}

    @property
    def why_ended(self) -> str | None:
        """Why training stopped early or the trial failed, in one line, if it did."""
        return self.stop_reason or self.reason


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The feasible COMPLETE trial with the lowest value, None when there is none."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if TrialRecord.of(t).feasible
    ]
    return min(trials, key=lambda t: (t.value, t.number)) if trials else None


def format_scores(values: dict[str, Any]) -> str:
    """``FID 41.20  intra-FID 60.10  label acc 0.953`` for the scores present in ``values``.

    Labels, order and digits are the registry's (``genopt.metrics.scores.SCORES``).
    """
    return "  ".join(
        f"{score.label} {score.format(values[name])}"
        for name, score in SCORES.items()
        if isinstance(values.get(name), int | float)
    )
