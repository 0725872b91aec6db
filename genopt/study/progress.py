"""Progress a person can follow: a line per finished trial, a bar on a terminal, a summary at the end,
and the commands to go on with.

A log file or CI output gets the plain lines only: the bar's carriage-return frames are for a
terminal (stderr a TTY). The bar shows the running trial (its epoch, its best score so far, its
time left) and the time left in the budget, refreshed every second.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.spec import format_params
from genopt.study.record.note import data_line, feature_task
from genopt.study.record.records import StudyRecord, TrialRecord, best_trial, format_scores
from genopt.study.stop import Stop, format_duration, format_left


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


@dataclass
class _Running:
    number: int
    epochs: int
    started: float
    epoch: int = 0
    best: float | None = None


class TrialProgress:
    """A ``study.optimize`` callback; use as a context manager so the bar is closed.

    Args:
        total: trials this run adds.
        bar: show the bar on stderr; default only when stderr is a terminal. The per-trial lines
            go to stdout either way.
        stop: the run's stop, whose budget the bar counts down.
    """

    def __init__(self, total: int, *, bar: bool | None = None, stop: Stop | None = None):
        if bar is None:
            bar = sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="trial", disable=not bar, file=sys.stderr, dynamic_ncols=True)
        self.stop = stop
        self.best = ""
        self._running: _Running | None = None
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="genopt-progress", daemon=True)
        if bar:  # the times left tick between epochs too
            self._ticker.start()

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._closed.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self.bar.close()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tqdm.write(trial_line(trial), file=sys.stdout)
        best = best_trial(study)
        if best is not None:
            self.best = f"best {best.value:.2f} (trial {best.number})"
        self._running = None
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(1)

    def running(self, number: int, epoch: int, epochs: int, best: float | None) -> None:
        """The objective's news: trial ``number`` has judged ``epoch`` of ``epochs`` (0: it starts)."""
        if self._running is None or self._running.number != number:
            self._running = _Running(number, epochs, time.monotonic())
        self._running.epoch, self._running.best = epoch, best
        self.bar.set_postfix_str(self.postfix())

    def postfix(self) -> str:
        """``trial 3 epoch 4/15, best 45.12, ~6m left | budget 22m left | best 41.20 (trial 2)``."""
        parts = []
        budget = self.stop.remaining() if self.stop is not None else None
        run = self._running
        if run is not None:
            text = f"trial {run.number} epoch {run.epoch}/{run.epochs}"
            if run.best is not None:
                text += f", best {run.best:.2f}"
            if run.epoch:  # the epochs so far, training and scoring, say how long the rest takes
                left = (run.epochs - run.epoch) * (time.monotonic() - run.started) / run.epoch
                text += f", ~{format_left(left if budget is None else min(left, budget))} left"
            parts.append(text)
        if budget is not None:
            parts.append(f"budget {format_left(budget)} left")
        return " | ".join([*parts, self.best] if self.best else parts)

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            self.bar.set_postfix_str(self.postfix())


def study_summary(
    study: optuna.Study, *, fid_floor: float, feature_accuracy: float, timeout: float | None = None
) -> str:
    """The short table printed at the end of a run: trial counts, the best trial, the floor, and what
    ended the run when it was not its trials (``--trials auto``, the time budget, a signal); with a
    ``timeout`` (seconds) that did not end it, that the trials ran within it."""
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
    if record.stopped:  # "stopped by SIGTERM: ..." reads "stopped   by SIGTERM: ..."
        lines.append(f"  {'stopped':<22}{record.stopped.removeprefix('stopped ')}")
    elif timeout is not None:
        lines.append(f"  {'ended':<22}its trials ran within the time budget ({format_duration(timeout)})")
    return "\n".join(lines)


def next_steps(study_name: str, storage_url: str, *, program: str = "genopt") -> str:
    """The last lines of a run: the commands that browse and export the study, ready to paste."""
    browse = shlex.join([*shlex.split(program), "dashboard", "--storage", storage_url])
    export = shlex.join([*shlex.split(program), "ensemble", "--study", study_name, "--storage", storage_url])
    return f"next:\n  {'browse it':<22}{browse}\n  {'export its best':<22}{export}"


def _epochs(record: TrialRecord) -> str:
    if record.best_epoch is None:
        return str(record.epochs)
    return f"{record.epochs} (scored at epoch {record.best_epoch})"
