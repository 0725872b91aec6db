"""Run a study's trials in this process, safely: a user's error is one line, a stall is survived.

``optimize`` wraps Optuna's ``study.optimize`` for ``genopt study`` and ``genopt worker``: a trial
out of memory or refused by an object store fails alone; a ``GenoptError`` ends the run with its one
line and without Optuna's traceback; a trial another worker took over while this one stalled is
counted and the run goes on. A time budget or a first SIGINT or SIGTERM (``genopt.study.stop``)
ends the run: no trial starts after it, the running trial completes at its best epoch so far, and
the study records why; Optuna's warnings about a trial a stop or an abort ended are dropped too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from genopt.errors import GenoptError
from genopt.study.artifacts.retention import retain_best
from genopt.study.artifacts.upload import ArtifactStoreUnavailable
from genopt.study.objective import Objective
from genopt.study.progress import TrialProgress
from genopt.study.record.facts import stored_spec
from genopt.study.search.stopping import Stagnation, record_stop, stop_when
from genopt.study.stop import Stop, Stopped


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    trials: int,
    store,
    keep: int,
    progress: bool | None,
    rule: Stagnation | None = None,
    stop: Stop | None = None,
) -> None:
    """Run ``trials`` trials of ``study`` in this process; a trial out of memory, or whose upload an
    object store failed (``ArtifactStoreUnavailable``, its ``reason`` in its line), fails alone.

    Any other ``GenoptError`` from a trial (the artifact store is full) ends that trial as FAIL and
    stops the run; the CLI prints it as one line, so Optuna's own warning with a traceback is dropped.

    A trial taken over while this process stalled (no heartbeat for the grace period, so another
    worker failed it as stale and queued it again) counts as one of the ``trials``: this says so in
    one line and goes on with the next trial (``_TrialWatch``).

    With a stopping ``rule`` (``--trials auto``), the run also ends once the rule says the study has
    converged or is at its cap; the study records why (``STOPPED_ATTR``) and its note says so.

    SIGINT and SIGTERM are caught while trials run, into ``stop`` (default: the objective's, else
    none; an ``Objective`` is given it, so that its training and scoring ask it): no trial starts
    once it has a reason (its time budget spent, a first signal), and the study records why, as for
    ``rule``. A second signal raises ``KeyboardInterrupt``.
    """
    # The per-trial lines below replace Optuna's own log line per trial.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handlers, quiet = logging.getLogger("optuna").handlers, _QuietUserErrors()
    for handler in handlers:
        handler.addFilter(quiet)
    ours = isinstance(objective, Objective)  # its training and scoring ask the run's stop
    stop = stop if stop is not None else objective.stop if ours else Stop()
    watch = _TrialWatch(objective)
    callbacks = [watch.told, retain_best(store, keep)]
    if rule is not None:
        callbacks.append(stop_when(rule, stored_spec(study).objective_name))
    callbacks.append(lambda study, trial: study.stop() if stop() else None)
    try:
        with TrialProgress(trials, bar=progress, stop=stop) as progress_callback, stop.on_signals():
            if ours:
                objective.stop, objective.progress = stop, progress_callback.running
            while watch.done < trials and not stop():
                try:
                    study.optimize(
                        watch,
                        n_trials=trials - watch.done,
                        timeout=stop.remaining(),
                        catch=(torch.OutOfMemoryError, ArtifactStoreUnavailable, Stopped),
                        callbacks=[*callbacks, progress_callback],
                    )
                    break
                except Exception as exc:
                    lost = watch.taken_over(study, exc)
                    if lost is None:
                        raise
                    tqdm.write(lost, file=sys.stdout)
                    progress_callback.bar.update(1)
        if stop.why is not None and (watch.done < trials or stop.cut):  # it ended the run, not the trials
            record_stop(study, stop.ended())
    finally:
        if ours:
            objective.progress = None  # the bar is closed
        optuna.logging.set_verbosity(verbosity)
        for handler in handlers:
            handler.removeFilter(quiet)


class _TrialWatch:
    """The objective, watched: which trial it runs, how it ended, and whether this process told it.

    A worker that stalls longer than the heartbeat grace period (a machine suspended, swapping, a
    debugger) finds on waking that another worker has failed its trial as stale and queued it
    again. Its next write to the trial raises ``UpdateFinishedTrialError``, and Optuna's
    ``study.optimize`` then fails to record the trial ("Cannot tell a FAIL trial.") and ends the
    run with that error. Only this process's own tell finishes a trial it runs, so a trial finished
    without it was taken over, and ``optimize`` goes on.
    """

    def __init__(self, objective: Callable[[optuna.Trial], float]):
        self.objective = objective
        self.done = 0  # trials of this run that ended, told or taken over
        self.trial: optuna.Trial | None = None  # the trial running or ended, until told
        self.raised: BaseException | None = None  # what the objective raised for it

    def __call__(self, trial: optuna.Trial) -> float:
        self.trial, self.raised = trial, None
        try:
            return self.objective(trial)
        except BaseException as exc:
            self.raised = exc
            raise

    def told(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """The first callback: Optuna calls it once it has recorded the trial."""
        self.trial = None
        self.done += 1

    def taken_over(self, study: optuna.Study, exc: Exception) -> str | None:
        """The line to say when ``exc`` ended a trial another worker had failed, else None.

        Optuna re-raises the objective's own error once it has recorded the trial; any other error
        while a trial is untold, with the trial already FAIL in the storage, means it was not this
        process that finished it.
        """
        trial = self.trial
        if trial is None or exc is self.raised:
            return None
        trials = study.get_trials(deepcopy=False)
        if next(t for t in trials if t.number == trial.number).state != TrialState.FAIL:
            return None
        self.trial = None
        self.done += 1
        retries = [
            t.number
            for t in trials
            if RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] == [trial.number]
        ]
        queued = f" and queued it again as trial {retries[0]}" if retries else ""
        return (
            f"trial {trial.number:>3}  taken over: this worker stalled past the heartbeat grace period, "
            f"so another worker failed the trial{queued}; going on with the next trial"
        )


class _QuietUserErrors(logging.Filter):
    """Drops Optuna's two warnings about a trial that failed with a ``GenoptError``, that another
    worker had failed while this one stalled (``UpdateFinishedTrialError``; ``_TrialWatch`` says so),
    that a stop ended before it scored an epoch (``Stopped``) or that a second signal aborted
    (``KeyboardInterrupt``): the trial's ``reason`` and the CLI's one line say each.

    The first ("Trial N failed with parameters ... because of the following error") carries the
    error and its traceback; the second ("Trial N failed with value None.") follows it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._followers: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and isinstance(record.exc_info[1], _QUIET):
            self._followers.add(message.partition(" failed")[0] + " failed with value None.")
            return False
        if message in self._followers:
            self._followers.discard(message)
            return False
        return True


_QUIET = (GenoptError, UpdateFinishedTrialError, Stopped, KeyboardInterrupt)
