"""Progress a person can follow: a line per finished trial, a bar on a terminal, a summary at the end.

A log file or CI output gets the plain lines only: the bar's carriage-return frames are for a
terminal (stderr a TTY).
"""

from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.spec import format_params
from genopt.study.record.note import data_line, feature_task
from genopt.study.record.records import StudyRecord, TrialRecord, best_trial, format_scores


def trial_line(trial: FrozenTrial) -> str:
    """``trial   3  complete  FID 41.20  intra-FID 60.10  label acc 0.953  epoch 4 of 5  lr=...``."""
    record = TrialRecord.of(trial)
    scores = format_scores(record.shown_scores) or "no score"
    epochs = "-" if record.epochs is None else record.epochs
    ran = f"epoch {record.best_epoch} of {epochs}" if record.best_epoch is not None else f"epochs {epochs}"
    state = trial.state.name.lower()
    line = f"trial {trial.number:>3}  {state:<8}  {scores}  {ran}  {format_params(trial.params)}"
    if record.infeasible:
        return f"{line}  (below min_label_accuracy)"
    return f"{line}  ({record.why_ended})" if record.why_ended else line


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
        best_record = TrialRecord.of(best)
        lines += [
            f"  {'best trial':<22}{best.number}",
            f"  {'parameters':<22}{format_params(best.params)}",
            f"  {'validation':<22}{format_scores(best_record.shown_scores)}",
            f"  {'epochs':<22}{_epochs(best_record)}",
        ]
    else:
        lines.append("  no trial completed yet")
    record = StudyRecord.of(study)
    dataset = record.dataset
    lines += [
        f"  {'floor (val vs test)':<22}{fid_floor:.2f}",
        f"  {'feature net accuracy':<22}{feature_accuracy:.4f}"
        + (" (rotation task: the data has no classes)" if feature_task(dataset) == "rotation" else ""),
    ]
    if "channels" in dataset:
        lines.append(f"  {'images':<22}{data_line(dataset)}")
    if record.stopped:
        lines.append(f"  {'stopped (auto)':<22}{record.stopped}")
    return "\n".join(lines)


def _epochs(record: TrialRecord) -> str:
    if record.best_epoch is None:
        return str(record.epochs)
    return f"{record.epochs} (scored at epoch {record.best_epoch})"
