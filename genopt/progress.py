"""Progress a person can follow: a bar over trials with the best FID so far, a line per finished trial."""

from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm


def trial_line(trial: FrozenTrial) -> str:
    """``trial   3  complete  FID   41.20  epochs  4  lr=0.00123, batch_size=64, noise_dim=100``."""
    fids = trial.user_attrs.get("fid_history") or []
    fid = trial.value if trial.value is not None else (fids[-1] if fids else None)
    fid_text = f"{fid:8.2f}" if fid is not None else f"{'-':>8}"
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    line = (
        f"trial {trial.number:>3}  {trial.state.name.lower():<8}  FID {fid_text}  "
        f"epochs {trial.user_attrs.get('epochs', '-'):>2}  {params}"
    )
    reason = trial.user_attrs.get("stop_reason")
    return f"{line}  ({reason})" if reason and trial.state != TrialState.COMPLETE else line


class TrialProgress:
    """A ``study.optimize`` callback; use as a context manager so the bar is closed.

    Args:
        total: trials this run adds.
        bar: show the bar (on stderr); the per-trial lines go to stdout either way.
    """

    def __init__(self, total: int, *, bar: bool = True):
        self.bar = tqdm(total=total, unit="trial", disable=not bar, file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tqdm.write(trial_line(trial), file=sys.stdout)
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if complete:
            best = min(complete, key=lambda t: t.value)
            self.bar.set_postfix_str(f"best FID {best.value:.2f} (trial {best.number})", refresh=False)
        self.bar.update(1)
