"""When a run ends before its trials are done: a wall-clock budget (``--timeout``), or a signal.

A person's Ctrl-C and a scheduler's SIGTERM (Kubernetes, Slurm, systemd) ask the same thing: stop
soon and keep what was learnt. ``Stop`` is that request, shared by everything that runs a trial.
Training asks it before every step and scoring before every batch it draws, so a stop lands within
one step; the trial then completes at its best epoch so far (``genopt.study.objective``). No trial
starts after the budget or a signal.

The first SIGINT or SIGTERM asks for the stop; a second aborts at once (``KeyboardInterrupt``: the
running trial ends FAIL, as Ctrl-C always did). A SIGKILL cannot be caught: its trial is left
RUNNING, and the heartbeat's stale-trial reaping fails it and queues it again (docs/distributed.md).

Only the standard library here: the CLI makes a ``Stop`` before torch and Optuna are imported, so a
budget counts from the moment the command starts.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator

# The exit status of a run stopped by a signal, its running trial kept: sysexits.h's EX_TEMPFAIL, "a
# temporary failure; the user is invited to retry". It is neither an error (1, or 2 for bad input)
# nor an abort (130), and a scheduler can be told to treat it as "rerun me" (a Kubernetes Job's
# podFailurePolicy, systemd's RestartForceExitStatus, Slurm's --requeue).
EXIT_STOPPED = 75

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class Stopped(Exception):
    """Work given up because a stop was asked for: scoring that a stop interrupted, or a trial that a
    stop ended before any of its epochs was scored (Optuna records it as FAIL, with its reason)."""


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h`` or ``1h30m`` as seconds: each unit at most once, in that order.

    Raises:
        ValueError: anything else, and a duration of zero; the message says what is accepted.
    """
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if stripped.isdigit() and int(stripped):  # seconds or minutes? a unit says
        raise ValueError(f"{text!r} needs a unit: {stripped}s, {stripped}m or {stripped}h")
    if not stripped.isdigit() and (not stripped or match is None):
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups()) if match else (0, 0, 0)
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return float(total)


def format_duration(seconds: float) -> str:
    """Whole seconds as ``parse_duration`` reads them back: 5400 -> ``1h30m``, 90 -> ``1m30s``."""
    seconds = max(0, math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(
        f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if value
    )
    return text or "0s"


def format_left(seconds: float) -> str:
    """A time left for a person, rounded up to what matters: ``1h05m``, ``26m``, ``6m05s``, ``45s``."""
    seconds = max(0, math.ceil(seconds))
    if seconds >= 600:
        minutes = math.ceil(seconds / 60)
        return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Stop:
    """A run's stop: its wall-clock budget's deadline, and the first SIGINT or SIGTERM it caught.

    Call it to ask whether to stop now: the reason (``"stopped by SIGTERM"``, ``"stopped by the time
    budget (30m)"``) or None. The first cause seen is kept: a budget that runs out while a signal's
    stop lands does not change why the run stopped.

    Args:
        timeout: the budget in seconds; None for none.
        started: when the budget began, in seconds since the epoch (``time.time()``); default now. A
            local worker counts the budget of the ``genopt study`` that started it.

    Attributes:
        why: what stopped the run (``"SIGINT"``, ``"SIGTERM"``, ``"the time budget (30m)"``), or None.
        by_signal: whether that was a signal (the run exits ``EXIT_STOPPED``) rather than the budget (0).
        cut: the trials this stop cut short in this process, with the epoch each kept (None: none
            was scored yet, so the trial ended FAIL).
    """

    def __init__(self, timeout: float | None = None, *, started: float | None = None):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self.started = time.time() if started is None else started
        # on the monotonic clock, which a change of the system's time does not move
        self.deadline = None if timeout is None else time.monotonic() + timeout - (time.time() - self.started)
        self.why: str | None = None
        self.by_signal = False
        self.cut: list[tuple[int, int | None]] = []

    def __call__(self) -> str | None:
        if self.why is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.why = f"the time budget ({format_duration(self.timeout)})"
        return None if self.why is None else f"stopped by {self.why}"

    def remaining(self) -> float | None:
        """Seconds left in the budget (0 once spent), None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def signalled(self, signum: int) -> None:
        """Record that signal ``signum`` asked for the stop (unless something asked first)."""
        if self.why is None:
            self.why, self.by_signal = signal.Signals(signum).name, True

    def ended(self) -> str | None:
        """What the stop did, in one line for the summary, the note and stderr; None when nothing
        stopped the run. ``cut`` names the trials it cut short in this process."""
        if self() is None:
            return None
        kept = [
            f"trial {number} kept its best epoch so far ({epoch})"
            if epoch is not None
            else f"trial {number} had no epoch scored yet and ended FAIL"
            for number, epoch in self.cut
        ]
        return f"{self()}: " + "; ".join([*kept, "no trial started after it"])

    @contextlib.contextmanager
    def on_signals(self, handler: Callable[[int], None] | None = None) -> Iterator[None]:
        """SIGINT and SIGTERM ask for the stop while inside: the first is recorded and a second
        raises ``KeyboardInterrupt``; or, with ``handler``, each calls it with the signal number.

        A signal the process ignores stays ignored (a job started in the background with ``&``
        ignores SIGINT, so that the terminal's Ctrl-C is not its). Outside the main thread, where
        Python cannot set handlers, nothing changes.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in _SIGNALS}
        caught = [s for s in _SIGNALS if previous[s] is not signal.SIG_IGN]

        def abort(signum, frame) -> None:
            raise KeyboardInterrupt

        def first(signum, frame) -> None:
            self.signalled(signum)
            for s in caught:
                signal.signal(s, abort)

        def forward(signum, frame) -> None:
            self.signalled(signum)
            handler(signum)

        for s in caught:
            signal.signal(s, first if handler is None else forward)
        try:
            yield
        finally:
            for s in caught:
                signal.signal(s, previous[s])
