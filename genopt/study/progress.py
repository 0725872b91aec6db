"""Progress a person can follow: a line per finished trial, a bar on a terminal, a summary at the end.

A log file or CI output gets the plain lines only: the bar's carriage-return frames are for a
terminal (stderr a TTY).
"""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.metrics.scores import SCORES
from genopt.spec import format_params
from genopt.study import artifacts
from genopt.study.note import data_line, feature_task
from genopt.study.stopping import STOPPED_ATTR
from genopt.study.stored import DATASET_ATTR


def format_scores(values: dict[str, Any]) -> str:
    """``FID 41.20  intra-FID 60.10  label acc 0.953`` for the scores present in ``values``.

    Labels, order and digits are the registry's (``genopt.metrics.scores.SCORES``).
    """
    return "  ".join(
        f"{score.label} {score.format(values[name])}"
        for name, score in SCORES.items()
        if isinstance(values.get(name), int | float)
    )


def trial_scores(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's scores at its chosen epoch, or at its last scored epoch when it has none."""
    chosen = {name: trial.user_attrs[name] for name in SCORES if name in trial.user_attrs}
    if chosen:
        return chosen
    # Trials made before per-epoch scores: the last FID of the history, or the value.
    fids = trial.user_attrs.get(artifacts.history_attr("fid")) or []
    fid = trial.value if trial.value is not None else (fids[-1] if fids else None)
    return {"fid": fid} if fid is not None else {}


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The feasible COMPLETE trial with the lowest value, None when there is none."""
    trials = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if artifacts.feasible(t)
    ]
    return min(trials, key=lambda t: (t.value, t.number)) if trials else None


def trial_line(trial: FrozenTrial) -> str:
    """``trial   3  complete  FID 41.20  intra-FID 60.10  label acc 0.953  epoch 4 of 5  lr=...``."""
    scores = format_scores(trial_scores(trial)) or "no score"
    epochs = trial.user_attrs.get(artifacts.EPOCHS_ATTR, "-")
    best = trial.user_attrs.get(artifacts.BEST_EPOCH_ATTR)
    ran = f"epoch {best} of {epochs}" if best is not None else f"epochs {epochs}"
    state = trial.state.name.lower()
    line = f"trial {trial.number:>3}  {state:<8}  {scores}  {ran}  {format_params(trial.params)}"
    if trial.user_attrs.get(artifacts.INFEASIBLE_ATTR):
        return f"{line}  (below min_label_accuracy)"
    reason = trial.user_attrs.get(artifacts.STOP_REASON_ATTR) or trial.user_attrs.get(artifacts.REASON_ATTR)
    return f"{line}  ({reason})" if reason else line


class TrialProgress:
    """A ``study.optimize`` callback; use as a context manager so the bar is closed.

    Args:
        total: trials this run adds.
        bar: show the bar on stderr; default only when stderr is a terminal. The per-trial lines
            go to stdout either way.
    """

    def __init__(self, total: int, *, bar: bool | None = None):
        if bar is None:
            bar = sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="trial", disable=not bar, file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tqdm.write(trial_line(trial), file=sys.stdout)
        best = best_trial(study)
        if best is not None:
            self.bar.set_postfix_str(f"best {best.value:.2f} (trial {best.number})", refresh=False)
        self.bar.update(1)


def study_summary(study: optuna.Study, *, fid_floor: float, feature_accuracy: float) -> str:
    """The short table printed at the end of a run: trial counts, the best trial, the floor."""
    states = [t.state for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in TrialState if states.count(s))
    lines = [f"study {study.study_name}: {len(states)} trials ({counts})"]
    best = best_trial(study)
    if best is not None:
        lines += [
            f"  {'best trial':<22}{best.number}",
            f"  {'parameters':<22}{format_params(best.params)}",
            f"  {'validation':<22}{format_scores(trial_scores(best))}",
            f"  {'epochs':<22}{_epochs(best)}",
        ]
    else:
        lines.append("  no trial completed yet")
    dataset = study.user_attrs.get(DATASET_ATTR, {})
    lines += [
        f"  {'floor (val vs test)':<22}{fid_floor:.2f}",
        f"  {'feature net accuracy':<22}{feature_accuracy:.4f}"
        + (" (rotation task: the data has no classes)" if feature_task(dataset) == "rotation" else ""),
    ]
    if "channels" in dataset:
        lines.append(f"  {'images':<22}{data_line(dataset)}")
    if study.user_attrs.get(STOPPED_ATTR):
        lines.append(f"  {'stopped (auto)':<22}{study.user_attrs[STOPPED_ATTR]}")
    return "\n".join(lines)


def _epochs(trial: FrozenTrial) -> str:
    ran, best = trial.user_attrs.get(artifacts.EPOCHS_ATTR), trial.user_attrs.get(artifacts.BEST_EPOCH_ATTR)
    return f"{ran} (scored at epoch {best})" if best is not None else str(ran)
