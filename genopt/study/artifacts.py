"""What a trial leaves behind: its user attribute names, its files, and which checkpoints are kept.

One module owns the generator checkpoint format: ``save_checkpoint`` writes it and
``load_checkpoint`` is its only reader (the ensemble, the report and warm starts all use it).
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from genopt.errors import GenoptError
from genopt.grid import save_grid
from genopt.models import Generator, GeneratorConfig

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
LOSS_HISTORY_ATTR = "loss_history"
STOP_REASON_ATTR = "stop_reason"
# Why a trial ended as FAIL without an error of its own (Ctrl-C).
INTERRUPTED_ATTR = "reason"
# Scores: "<name>_history" holds every epoch's value, "<name>" the chosen epoch's.
BEST_EPOCH_ATTR = "best_epoch"
SCORE_NAMES = ("fid", "intra_fid", "label_accuracy", "class_coverage")
# A COMPLETE trial that breaks the spec's constraint (min_label_accuracy): never best, never a member.
INFEASIBLE_ATTR = "infeasible"


def history_attr(score: str) -> str:
    """The user attribute holding every epoch's value of ``score``, e.g. ``fid_history``."""
    return f"{score}_history"


def save_checkpoint(path: str, generator: Generator, **metadata: Any) -> None:
    """A generator checkpoint of tensors and plain values only (``torch.load(weights_only=True)``)."""
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    torch.save(
        {"format": CHECKPOINT_FORMAT, "generator_config": generator.config.to_dict(), "state_dict": state}
        | metadata,
        path,
    )


def load_checkpoint(source: str | os.PathLike | IO[bytes], *, name: str) -> tuple[Generator, dict[str, Any]]:
    """The generator (CPU, eval mode) and the metadata of a checkpoint ``save_checkpoint`` wrote.

    Args:
        source: a path or an open binary file.
        name: what to call the checkpoint in an error, e.g. ``"trial 3's checkpoint"``.

    Raises:
        GenoptError: the file holds more than tensors and plain values, or is not a generator's.
    """
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything that would run code
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenoptError(f"{name} cannot be read safely: {reason}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise GenoptError(f"{name} is not a {CHECKPOINT_FORMAT} file")
    try:
        generator = Generator(GeneratorConfig.from_dict(checkpoint["generator_config"]))
        generator.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise GenoptError(f"{name} does not fit its own generator config: {exc}") from None
    metadata = {k: v for k, v in checkpoint.items() if k not in ("generator_config", "state_dict")}
    return generator.requires_grad_(False).eval(), metadata


def write_history(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Per-epoch figures as CSV, one row per epoch, columns in the order of the first row."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(
            {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows
        )


def upload_trial_artifacts(
    trial: optuna.Trial, store: FileSystemArtifactStore, generator: Generator, history: Sequence[dict]
) -> None:
    """Upload the trial's sample grid (PNG) and history (CSV); name them in its user attributes."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = save_grid(generator, os.path.join(tmp, f"samples-trial{trial.number}.png"))
        csv_path = os.path.join(tmp, f"history-trial{trial.number}.csv")
        write_history(csv_path, history)
        for attr, path, mimetype in ((SAMPLES_ATTR, grid, "image/png"), (HISTORY_ATTR, csv_path, "text/csv")):
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
            )
            trial.set_user_attr(attr, artifact_id)


def upload_checkpoint(
    trial: optuna.Trial, store: FileSystemArtifactStore, generator: Generator, **metadata: Any
) -> str:
    """Save ``generator`` as the trial's checkpoint artifact; its id is also the trial's attribute."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"generator-trial{trial.number}.pt")
        save_checkpoint(path, generator, **metadata)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=path, study_or_trial=trial, mimetype="application/x-pytorch"
        )
    trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
    return artifact_id


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
