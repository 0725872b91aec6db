"""What a trial leaves behind: its sample grid, its history and its checkpoint, uploaded.

The generator checkpoint's format is ``genopt.checkpoints``' (``save_trial_checkpoint`` writes it,
``load_trial_checkpoint`` reads it); this module uploads it and names it in the trial.

Optuna's ``upload_artifact`` writes the file first and names it in the trial afterwards, so a store
that fills up (or a worker killed mid-write) never leaves a trial pointing at a partial file: the
partial file is removed, the trial ends FAIL with a one-line ``reason``, and the ``ArtifactStoreFull``
error stops the run with the same line. An object store (``genopt.study.artifacts.stores``) that
fails an upload fails that trial alone (``ArtifactStoreUnavailable``, its ``reason`` says why); the
next trial tries again.

The store is any of Optuna's artifact stores: ``open_reader``, ``write`` and ``remove``.

The file names put the sample grid first: optuna-dashboard lists a trial's artifacts by name, and
``genopt dashboard`` lists the grid first in the trials' data too (``genopt.report.dashboard``), so
the dashboard's trial selection shows each selected trial's grid, side by side. Every other name
sorts after ``SAMPLES_FILE``'s.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.artifacts import upload_artifact

from genopt.checkpoints import save_trial_checkpoint
from genopt.errors import GenoptError
from genopt.grid import save_grid
from genopt.models import Discriminator, Generator
from genopt.study.artifacts.stores import S3ArtifactStore
from genopt.study.record.attrs import CHECKPOINT_ATTR, HISTORY_ATTR, REASON_ATTR, SAMPLES_ATTR
from genopt.study.storage import optuna_private

# A trial's files: its sample grid, its per-epoch training record and its generator's weights.
SAMPLES_FILE = "samples-trial{}.png"
HISTORY_FILE = "training-trial{}.csv"
CHECKPOINT_FILE = "weights-trial{}.pt"


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
        grid = save_grid(generator, os.path.join(tmp, SAMPLES_FILE.format(trial.number)))
        csv_path = os.path.join(tmp, HISTORY_FILE.format(trial.number))
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
        path = os.path.join(tmp, CHECKPOINT_FILE.format(trial.number))
        save_trial_checkpoint(path, generator, discriminator=discriminator, **metadata)
        artifact_id = upload(trial, store, path, "application/x-pytorch")
    trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
    return artifact_id


def upload(trial: optuna.Trial, store, path: str, mimetype: str) -> str:
    """``optuna.artifacts.upload_artifact``, with a failed write removed and named in one line.

    Optuna writes the whole file before it names it in the trial, so a write that fails leaves the
    trial listing nothing; the store's partial file, if any, is removed here (``_GuardedStore``).

    Raises:
        ArtifactStoreFull: no space left (ENOSPC) or over quota (EDQUOT); the trial's ``reason`` says so.
        ArtifactStoreUnavailable: an object store failed the upload; the trial's ``reason`` says so.
    """
    guarded = _GuardedStore(store, trial, os.path.getsize(path), os.path.basename(path))
    return upload_artifact(artifact_store=guarded, file_path=path, study_or_trial=trial, mimetype=mimetype)


class _GuardedStore:
    """An artifact store whose ``write`` turns a full disk or a failed object upload into genopt's
    one-line errors, after removing what the failed write left."""

    def __init__(self, store, trial: optuna.Trial, size: int, filename: str):
        self._store, self._trial, self._size, self._filename = store, trial, size, filename

    def open_reader(self, artifact_id: str):
        return self._store.open_reader(artifact_id)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(artifact_id)

    def write(self, artifact_id: str, content_body) -> None:
        try:
            self._store.write(artifact_id, content_body)
        except OSError as exc:
            with contextlib.suppress(Exception):  # nothing was written, or the partial file is already gone
                self._store.remove(artifact_id)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            reason = _store_full_reason(self._store, self._size, self._filename)
            self._trial.set_user_attr(REASON_ATTR, reason)
            raise ArtifactStoreFull(f"trial {self._trial.number} failed: {reason}") from None
        except Exception as exc:
            if not isinstance(self._store, S3ArtifactStore):
                raise
            # botocore's errors; an object is whole or absent, so nothing partial is left to remove
            where = self._store.location.url
            reason = " ".join(f"artifact store failed: {where}: {type(exc).__name__}: {exc}".split())
            self._trial.set_user_attr(REASON_ATTR, reason)
            raise ArtifactStoreUnavailable(f"trial {self._trial.number} failed: {reason}") from None


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
