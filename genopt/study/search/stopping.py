"""``--trials auto``: when a study has converged, by best-value stagnation.

A search that has not improved its best value by a meaningful amount for a while is unlikely to do
so soon: that is the rule of Optuna's ``BestValueStagnationEvaluator`` (with a static error of 0,
the Terminator's setting for studies without cross-validation folds), here with a relative
threshold, since the Gaussian process keeps finding improvements of a fraction of a percent that no
sample grid shows. Optuna's Terminator itself is deprecated since Optuna 4.9, so genopt keeps the
rule to itself, a few lines over the finished trials in the order they finished.

The stop is a verdict on the study, not on one run: ``auto`` on a study that has already converged
adds no trial, and every worker of the study reaches the same verdict from the same trials.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.errors import GenoptError
from genopt.spec import StudySpec
from genopt.study.record.attrs import STOPPED_ATTR
from genopt.study.record.note import with_stop
from genopt.study.record.records import StudyRecord

AUTO = "auto"


@dataclass(frozen=True)
class Stagnation:
    """Stop once the best value has gained at most ``min_improvement`` (relative) over the last
    ``patience`` scored trials, or once the study holds ``max_trials`` finished trials.

    Attributes:
        patience: the window of scored trials over which the best must gain more than
            ``min_improvement``; the rule says "converged" after ``patience + 1`` scored trials at
            the earliest.
        min_improvement: the relative gain over the window that keeps the study going, e.g. 0.01
            for 1 %.
        max_trials: the cap, however the search goes.
    """

    patience: int
    min_improvement: float
    max_trials: int

    @classmethod
    def of(cls, spec: StudySpec) -> Stagnation:
        return cls(spec.auto_patience, spec.auto_min_improvement, spec.auto_max_trials)

    def stagnant(self, scored: Sequence[float]) -> bool:
        """Whether the best of ``scored`` (finite values, lower is better, in the order the trials
        finished) gained at most ``min_improvement`` over its last ``patience`` values: the best
        now against the best before them. Fewer than ``patience + 1`` values are never stagnant.

        The gain is over the whole window, so steady small gains that add up to more than the
        threshold keep the study going even when no single one reaches it.
        """
        if len(scored) <= self.patience:
            return False
        before = min(scored[: len(scored) - self.patience])
        return min(scored) >= before * (1 - self.min_improvement)

    def stops_after(self, values: Sequence[float | None]) -> int | None:
        """After how many finished trials the rule first stops a study, else None (it would go on).

        Args:
            values: each finished trial's objective (lower is better) in the order they finished,
                None for a trial without a score (pruned, failed); those count toward the cap only.
        """
        scored: list[float] = []
        for i, value in enumerate(values, start=1):
            if value is not None and math.isfinite(value):
                scored.append(value)
            if i >= self.max_trials or self.stagnant(scored):
                return i
        return None

    def verdict(self, study: optuna.Study, objective: str) -> str | None:
        """Why ``study`` should stop now, in one line, or None to go on."""
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) >= self.max_trials:
            return f"stopped at the cap of {self.max_trials} trials"
        done = sorted((t for t in finished if t.state == TrialState.COMPLETE), key=_finished_order)
        values = [t.value for t in done if t.value is not None and math.isfinite(t.value)]
        if not self.stagnant(values):
            return None
        return (
            f"converged: the best {objective} ({min(values):.4g}) gained at most "
            f"{100 * self.min_improvement:g} % over the last {self.patience} scored trials "
            f"({len(finished)} trials in all, the cap is {self.max_trials})"
        )


def _finished_order(trial: optuna.trial.FrozenTrial) -> tuple:
    return (trial.datetime_complete is None, trial.datetime_complete, trial.number)


def check_trials(trials: int | str) -> None:
    """``trials`` must be a positive integer or ``"auto"``.

    Raises:
        GenoptError: it is neither.
    """
    if trials == AUTO:
        return
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise GenoptError(f"the number of trials must be a positive integer or auto, got {trials!r}")


def trial_budget(study: optuna.Study, spec: StudySpec, trials: int | str) -> tuple[int, Stagnation | None]:
    """How many trials this run may add, and the stopping rule that may end it sooner (``auto``).

    With ``auto`` the budget is what the cap leaves, and 0 when the study has already converged;
    either way the reason is recorded and printed. A fixed number of trials clears an earlier
    run's reason, since the study goes on past it.
    """
    if StudyRecord.of(study).stopped:
        record_stop(study, None)
    if trials != AUTO:
        return int(trials), None
    rule = Stagnation.of(spec)
    reason = rule.verdict(study, spec.objective_name)
    if reason is not None:
        record_stop(study, reason)
        return 0, rule
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    return rule.max_trials - finished, rule


def stop_when(rule: Stagnation, objective: str) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback that stops the run once ``rule`` has a verdict on the study."""

    def stop(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = rule.verdict(study, objective)
        if reason is not None:
            record_stop(study, reason)
            study.stop()

    return stop


def record_stop(study: optuna.Study, reason: str | None) -> None:
    """Record why the study stopped (None: it goes on after all) in its attributes and its note: the
    ``auto`` rule's verdict here, or a time budget or a signal (``genopt.study.optimize``)."""
    study.set_user_attr(STOPPED_ATTR, reason)
    optuna_dashboard.save_note(study, with_stop(optuna_dashboard.get_note(study), reason))
    if reason is not None:
        tqdm.write(f"study {study.study_name}: {reason}", file=sys.stdout)
