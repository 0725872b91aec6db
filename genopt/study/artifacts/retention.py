"""Which checkpoints a study keeps: those of its ``keep`` best feasible trials.

The other trials keep their sample grids and histories; ``genopt ensemble`` chooses among the kept
checkpoints (``kept_checkpoints``).
"""

from __future__ import annotations

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from genopt.study.artifacts.stores import S3ArtifactStore, artifact_exists
from genopt.study.record.records import TrialRecord


def kept_checkpoints(study: optuna.Study, store) -> dict[int, str]:
    """Trial number -> artifact id of every feasible COMPLETE trial whose checkpoint is still stored."""
    kept = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        artifact_id = record.checkpoint
        if artifact_id is None or not record.feasible:
            continue
        try:
            if not artifact_exists(store, artifact_id):  # removed by retention
                continue
        except Exception:  # the store moved, or is unreachable
            continue
        kept[t.number] = artifact_id
    return kept


def retain_best(store, keep: int):
    """A ``study.optimize`` callback that removes all but the ``keep`` best trials' checkpoints."""

    def callback(study: optuna.Study, _: FrozenTrial) -> None:
        kept = kept_checkpoints(study, store)
        # The trials read once: study.trials copies them all, once per kept checkpoint it was asked for,
        # and hundreds of workers finishing together each keep hundreds (git show d75cb9a:bench/load_test.py).
        value = {t.number: t.value for t in study.get_trials(deepcopy=False)}
        ranked = sorted(kept, key=lambda number: value[number])
        for number in ranked[keep:]:
            try:
                store.remove(kept[number])
            except ArtifactNotFound:  # another worker removed it first
                pass
            except Exception:
                if not isinstance(store, S3ArtifactStore):
                    raise
                return  # an object store that failed now: the next trial's callback removes it

    return callback
