"""What a trial leaves behind: its user attribute names, its files, and which checkpoints are kept.

One module owns the generator checkpoint format: ``save_checkpoint`` writes it and
``load_checkpoint`` is its only reader (the ensemble, the report and warm starts all use it).

Uploads write the file first and name it in the trial afterwards, so a store that fills up (or a
worker killed mid-write) never leaves a trial pointing at a partial file: the partial file is
removed, the trial ends FAIL with a one-line ``reason``, and the ``ArtifactStoreFull`` error stops
the run with the same line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from typing import IO, Any

import optuna
import torch
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from genopt.errors import GenoptError
from genopt.grid import save_grid
from genopt.models import Discriminator, Generator, GeneratorConfig
from genopt.study import optuna_private

CHECKPOINT_FORMAT = "genopt-generator/1"

# Trial user attributes. Artifact ids (in the study's artifact store):
SAMPLES_ATTR = "samples"
HISTORY_ATTR = "history_csv"
CHECKPOINT_ATTR = "checkpoint"
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
# Scores: "<name>_history" holds every epoch's value, "<name>" the chosen epoch's.
BEST_EPOCH_ATTR = "best_epoch"
SCORE_NAMES = ("fid", "intra_fid", "label_accuracy", "class_coverage")
# A COMPLETE trial that breaks the spec's constraint (min_label_accuracy): never best, never a member.
INFEASIBLE_ATTR = "infeasible"


def history_attr(score: str) -> str:
    """The user attribute holding every epoch's value of ``score``, e.g. ``fid_history``."""
    return f"{score}_history"


# Optional fields: the discriminator's architecture and weights, kept for warm starts since these
# fields exist (genopt.study.warm); older checkpoints lack them.
DISCRIMINATOR_FIELDS = ("discriminator_config", "discriminator_state_dict")


def save_checkpoint(
    path: str, generator: Generator, *, discriminator: Discriminator | None = None, **metadata: Any
) -> None:
    """A generator checkpoint of tensors and plain values only (``torch.load(weights_only=True)``).

    With ``discriminator``, its config and weights are kept too, so a warm start can begin both.
    """
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "generator_config": generator.config.to_dict(),
        "state_dict": state,
    }
    if discriminator is not None:
        checkpoint["discriminator_config"] = discriminator.config.to_dict()
        checkpoint["discriminator_state_dict"] = {
            k: v.detach().cpu() for k, v in discriminator.state_dict().items()
        }
    torch.save(checkpoint | metadata, path)


def read_checkpoint(source: str | os.PathLike | IO[bytes], *, name: str) -> dict[str, Any]:
    """Everything a checkpoint ``save_checkpoint`` wrote holds, read without running any code.

    Args:
        source: a path or an open binary file.
        name: what to call the checkpoint in an error, e.g. ``"trial 3's checkpoint"``.

    Raises:
        GenoptError: the file holds more than tensors and plain values, or is not a generator's.
    """
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything that would run code; pages of advice
        refused = f"{name} holds more than tensors and plain values: refusing to unpickle it"
        raise GenoptError(refused) from None
    except Exception as exc:  # not a torch file, or a truncated one
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenoptError(f"{name} cannot be read safely: {reason}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise GenoptError(f"{name} is not a {CHECKPOINT_FORMAT} file")
    return checkpoint


def load_checkpoint(source: str | os.PathLike | IO[bytes], *, name: str) -> tuple[Generator, dict[str, Any]]:
    """The generator (CPU, eval mode) and the metadata of a checkpoint ``save_checkpoint`` wrote.

    The metadata leaves out the weights (and the discriminator's, when the checkpoint has them).

    Raises:
        GenoptError: as ``read_checkpoint``, or the weights do not fit the generator's own config.
    """
    checkpoint = read_checkpoint(source, name=name)
    try:
        generator = Generator(GeneratorConfig.from_dict(checkpoint["generator_config"]))
        generator.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise GenoptError(f"{name} does not fit its own generator config: {exc}") from None
    weights = ("generator_config", "state_dict", *DISCRIMINATOR_FIELDS)
    metadata = {k: v for k, v in checkpoint.items() if k not in weights}
    return generator.requires_grad_(False).eval(), metadata


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


def upload_trial_artifacts(
    trial: optuna.Trial, store: FileSystemArtifactStore, generator: Generator, history: Sequence[dict]
) -> None:
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
    store: FileSystemArtifactStore,
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
        save_checkpoint(path, generator, discriminator=discriminator, **metadata)
        artifact_id = upload(trial, store, path, "application/x-pytorch")
    trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
    return artifact_id


def upload(trial: optuna.Trial, store: FileSystemArtifactStore, path: str, mimetype: str) -> str:
    """``optuna.artifacts.upload_artifact`` in the safe order: the whole file first, then its name.

    Optuna names the artifact in the trial before writing it, so a write that fails half-way would
    leave the trial listing a partial file. Here a failed write is removed and never listed.

    Raises:
        ArtifactStoreFull: no space left (ENOSPC) or over quota (EDQUOT); the trial's ``reason`` says so.
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
    meta = ArtifactMeta(
        artifact_id=artifact_id, filename=os.path.basename(path), mimetype=mimetype, encoding=None
    )
    optuna_private.name_artifact(trial, meta)  # as upload_artifact does, so the dashboard lists it
    return artifact_id


def _store_full_reason(store: FileSystemArtifactStore, needed: int, filename: str) -> str:
    folder = optuna_private.artifact_store_folder(store)
    try:
        free = f"{shutil.disk_usage(folder).free} bytes free" if folder is not None else "no space"
    except OSError:
        free = "no space"
    where = folder if folder is not None else "the artifact store"
    return (
        f"artifact store full: {free} in {where}, {filename} needs {needed}: free space there "
        "(or move the folder to a larger disk and pass its new place as --artifact-dir), then rerun"
    )


def feasible(trial: FrozenTrial) -> bool:
    """A COMPLETE trial that meets the study's constraint (trials made before constraints always do)."""
    return trial.state == TrialState.COMPLETE and not trial.user_attrs.get(INFEASIBLE_ATTR, False)


def kept_checkpoints(study: optuna.Study, store: FileSystemArtifactStore) -> dict[int, str]:
    """Trial number -> artifact id of every feasible COMPLETE trial whose checkpoint is still stored."""
    kept = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        artifact_id = t.user_attrs.get(CHECKPOINT_ATTR)
        if artifact_id is None or not feasible(t):
            continue
        try:
            store.open_reader(artifact_id).close()
        except Exception:  # removed by retention, or the store moved
            continue
        kept[t.number] = artifact_id
    return kept


def retain_best(store: FileSystemArtifactStore, keep: int):
    """A ``study.optimize`` callback that removes all but the ``keep`` best trials' checkpoints."""

    def callback(study: optuna.Study, _: FrozenTrial) -> None:
        kept = kept_checkpoints(study, store)
        ranked = sorted(kept, key=lambda number: study.trials[number].value)
        for number in ranked[keep:]:
            with contextlib.suppress(ArtifactNotFound):  # another worker removed it first
                store.remove(kept[number])

    return callback
