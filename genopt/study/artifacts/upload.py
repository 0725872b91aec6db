"""What a trial leaves behind: its user attribute names, its files, and which checkpoints are kept.

The generator checkpoint's format is ``genopt.checkpoints``' (``save_trial_checkpoint`` writes it,
``load_trial_checkpoint`` reads it); this module uploads it and names it in the trial.

Uploads write the file first and name it in the trial afterwards, so a store that fills up (or a
worker killed mid-write) never leaves a trial pointing at a partial file: the partial file is
removed, the trial ends FAIL with a one-line ``reason``, and the ``ArtifactStoreFull`` error stops
the run with the same line. An object store (``genopt.study.stores``) that fails an upload fails
that trial alone (``ArtifactStoreUnavailable``, its ``reason`` says why); the next trial tries again.

The store is any of Optuna's artifact stores: ``open_reader``, ``write`` and ``remove``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.artifacts import ArtifactMeta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from genopt.checkpoints import save_trial_checkpoint
from genopt.errors import GenoptError
from genopt.grid import save_grid
from genopt.metrics.scores import SCORES
from genopt.models import Discriminator, Generator
from genopt.study import optuna_private
from genopt.study.stores import S3ArtifactStore, artifact_exists

# Trial user attributes. Artifact ids (in the study's artifact store):
SAMPLES_ATTR = "samples"
HISTORY_ATTR = "history_csv"
CHECKPOINT_ATTR = "checkpoint"
ARTIFACT_ATTRS = (SAMPLES_ATTR, HISTORY_ATTR, CHECKPOINT_ATTR)
# How the trial ran and ended:
BASELINE_ATTR = "baseline"
SEED_ATTR = "seed"
EPOCHS_ATTR = "epochs"
WALL_SECONDS_ATTR = "wall_seconds"
IMAGES_PER_SECOND_ATTR = "images_per_second"
# The precision the trial trained in, "fp32" or "bf16" (what the spec's "auto" chose on its device).
PRECISION_ATTR = "precision"
LOSS_HISTORY_ATTR = "loss_history"
STOP_REASON_ATTR = "stop_reason"
# Why a trial ended as FAIL, in one line: "interrupted" (Ctrl-C), or "artifact store full: ...".
REASON_ATTR = "reason"
INTERRUPTED_ATTR = REASON_ATTR
# Scores (genopt.metrics.scores.SCORES): "<name>_history" holds every epoch's value, "<name>" the
# chosen epoch's.
BEST_EPOCH_ATTR = "best_epoch"
SCORE_NAMES = tuple(SCORES)
# A COMPLETE trial that breaks the spec's constraint (min_label_accuracy): never best, never a member.
INFEASIBLE_ATTR = "infeasible"


def history_attr(score: str) -> str:
    """The user attribute holding every epoch's value of ``score``, e.g. ``fid_history``."""
    return f"{score}_history"


def write_history(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Per-epoch figures as CSV, one row per epoch, columns in the order of the first row."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(
            {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows
        )


class ArtifactStoreFull(GenoptError):
    """The artifact store's filesystem is full: no later trial could keep its files either."""


class ArtifactStoreUnavailable(GenoptError):
    """An object store refused or dropped an upload: this trial fails, the next one tries again."""


def upload_trial_artifacts(trial: optuna.Trial, store, generator: Generator, history: Sequence[dict]) -> None:
    """Upload the trial's sample grid (PNG) and history (CSV); name them in its user attributes.

    Raises:
        ArtifactStoreFull: the store has no room; the trial's ``reason`` says so.
    """
    with tempfile.TemporaryDirectory() as tmp:
        grid = save_grid(generator, os.path.join(tmp, f"samples-trial{trial.number}.png"))
        csv_path = os.path.join(tmp, f"history-trial{trial.number}.csv")
        write_history(csv_path, history)
        for attr, path, mimetype in ((SAMPLES_ATTR, grid, "image/png"), (HISTORY_ATTR, csv_path, "text/csv")):
            trial.set_user_attr(attr, upload(trial, store, str(path), mimetype))


def upload_checkpoint(
    trial: optuna.Trial,
    store,
    generator: Generator,
    *,
    discriminator: Discriminator | None = None,
    **metadata: Any,
) -> str:
    """Save ``generator`` (and ``discriminator``) as the trial's checkpoint artifact; its id is
    also the trial's attribute.

    Raises:
        ArtifactStoreFull: the store has no room; the trial's ``reason`` says so.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"generator-trial{trial.number}.pt")
        save_trial_checkpoint(path, generator, discriminator=discriminator, **metadata)
        artifact_id = upload(trial, store, path, "application/x-pytorch")
    trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
    return artifact_id


def upload(trial: optuna.Trial, store, path: str, mimetype: str) -> str:
    """``optuna.artifacts.upload_artifact`` in the safe order: the whole file first, then its name.

    Optuna names the artifact in the trial before writing it, so a write that fails half-way would
    leave the trial listing a partial file. Here a failed write is removed and never listed.

    Raises:
        ArtifactStoreFull: no space left (ENOSPC) or over quota (EDQUOT); the trial's ``reason`` says so.
        ArtifactStoreUnavailable: an object store failed the upload; the trial's ``reason`` says so.
    """
    artifact_id = str(uuid.uuid4())
    try:
        with open(path, "rb") as f:
            store.write(artifact_id, f)
    except OSError as exc:
        with contextlib.suppress(Exception):  # nothing was written, or the partial file is already gone
            store.remove(artifact_id)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = _store_full_reason(store, os.path.getsize(path), os.path.basename(path))
        trial.set_user_attr(REASON_ATTR, reason)
        raise ArtifactStoreFull(f"trial {trial.number} failed: {reason}") from None
    except Exception as exc:
        if not isinstance(store, S3ArtifactStore):
            raise
        # botocore's errors; an object is whole or absent, so nothing partial is left to remove
        reason = " ".join(f"artifact store failed: {store.location.url}: {type(exc).__name__}: {exc}".split())
        trial.set_user_attr(REASON_ATTR, reason)
        raise ArtifactStoreUnavailable(f"trial {trial.number} failed: {reason}") from None
    meta = ArtifactMeta(
        artifact_id=artifact_id, filename=os.path.basename(path), mimetype=mimetype, encoding=None
    )
    optuna_private.name_artifact(trial, meta)  # as upload_artifact does, so the dashboard lists it
    return artifact_id


def _store_full_reason(store, needed: int, filename: str) -> str:
    folder = optuna_private.artifact_store_folder(store)
    try:
        free = f"{shutil.disk_usage(folder).free} bytes free" if folder is not None else "no space"
    except OSError:
        free = "no space"
    where = folder if folder is not None else "the artifact store"
    return (
        f"artifact store full: {free} in {where}, {filename} needs {needed}: free space there "
        "(or move the folder to a larger disk and pass its new place as --artifact-store), then rerun"
    )


def feasible(trial: FrozenTrial) -> bool:
    """A COMPLETE trial that meets the study's constraint (trials made before constraints always do)."""
    return trial.state == TrialState.COMPLETE and not trial.user_attrs.get(INFEASIBLE_ATTR, False)


def kept_checkpoints(study: optuna.Study, store) -> dict[int, str]:
    """Trial number -> artifact id of every feasible COMPLETE trial whose checkpoint is still stored."""
    kept = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = t.user_attrs.get(CHECKPOINT_ATTR)
        if artifact_id is None or not feasible(t):
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
        ranked = sorted(kept, key=lambda number: study.trials[number].value)
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
