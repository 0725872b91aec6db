"""``genopt compare``: a study's trials, or an export beside its members, fed the same noise and labels.

What each column is and how it is headed lives here; ``genopt.report.sidebyside`` draws them. A
trial's column comes from its kept checkpoint in the study's artifact store (a folder or ``s3://``)
and is headed by its number, scores and parameters. An export's members come from the export
itself, headed by trial number and weight (and, with the study, the trial's scores and parameters),
and the export's own column draws what ``genopt.load_ensemble`` draws.

``genopt report`` and ``genopt dashboard`` (the note's picture of the best trials) draw with the
same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from genopt import paths
from genopt.checkpoints import load_trial_checkpoint
from genopt.ensemble.generator import EnsembleGenerator, load_ensemble
from genopt.errors import GenoptError
from genopt.files import atomic_write
from genopt.grid import GRID_NOISE_SEED
from genopt.metrics.scores import SCORES
from genopt.report.sidebyside import (
    PER_CELL,
    Column,
    Comparison,
    draw_comparison,
    generator_column,
    placeholder,
)
from genopt.study.artifacts.stores import artifact_exists
from genopt.study.record.facts import study_artifact_store
from genopt.study.record.records import StudyRecord, TrialRecord
from genopt.study.storage.database import load_existing_study

# The best trials compared by default (``--top``, the report) and in the study note's picture.
TOP = 5
NOTE_TOP = 4
WAITING = "No trial has kept a checkpoint yet: the best trials appear here side by side as they finish."


def write_comparison(*, out: Path | None = None, **choice) -> Path:
    """Draw ``comparison(**choice)`` into one PNG and return its path.

    Args:
        out: the PNG; default ``storage/reports/<study or export>/compare.png``.
        choice: ``comparison``'s arguments.

    Raises:
        GenoptError: ``out``'s folder does not exist, or as ``comparison``.
    """
    if out is not None and not Path(out).parent.is_dir():
        raise GenoptError(f"--out: folder {Path(out).parent} does not exist")
    picture = comparison(**choice)
    if out is None:
        name = choice.get("study_name") or Path(choice["checkpoint"]).stem
        out = paths.reports_dir() / paths.file_safe(name, keep="-_.") / "compare.png"
    return atomic_write(out, picture.png())


def comparison(
    *,
    study_name: str | None = None,
    trials: Sequence[int] | None = None,
    top: int | None = None,
    checkpoint: Path | None = None,
    storage_url: str | None = None,
    artifact_store: str | Path | None = None,
    per_cell: int = PER_CELL,
) -> Comparison:
    """Trials (and an export) side by side, the same noise and labels through each.

    Args:
        study_name: the study whose trials are drawn (and whose scores and parameters head an
            export's members).
        trials: these trial numbers, in this order.
        top: the ``top`` best trials with a stored checkpoint (default ``TOP`` with a study and
            neither ``trials`` nor ``checkpoint``).
        checkpoint: an export (``genopt ensemble``'s ``.pt``), drawn last; beside its members
            unless ``trials`` or ``top`` name the other columns.
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        artifact_store: the study's artifact store, when it moved; default the one it wrote to.
        per_cell: images per cell.

    Raises:
        GenoptError: bad input: no study nor export, an unknown trial, a trial without a stored
            checkpoint, columns of different image shapes, an export that does not load.
    """
    if study_name is None and checkpoint is None:
        raise GenoptError("name a study (--study) or an export (--checkpoint) to compare")
    if trials is not None and top is not None:
        raise GenoptError("--trials and --top both choose the trials: give one")
    if study_name is None and (trials is not None or top is not None):
        raise GenoptError("--trials and --top choose among a study's trials: give --study too")
    study = store = None
    if study_name is not None:
        study = load_existing_study(study_name, storage_url)
        store = study_artifact_store(study, artifact_store)
    if study is not None and trials is None and (top is not None or checkpoint is None):
        trials = top_trials(study, store, top or TOP)
        if not trials:
            raise GenoptError(
                f"study {study_name!r} has no COMPLETE trial with a stored checkpoint: "
                "run `genopt study` until one completes"
            )
    columns = trial_columns(study, store, trials) if trials is not None else []
    names = class_names(study) if study is not None else ()
    if checkpoint is not None:
        ensemble = load_ensemble(checkpoint)
        columns += export_columns(ensemble, study=study, members=trials is None)
        names = names or ensemble.class_names
    return draw_comparison(columns, row_names=names, per_cell=per_cell)


# -- a study's trials -----------------------------------------------------------------------------


def trial_heading(record: TrialRecord) -> tuple[str, ...]:
    """``trial 3``, then a line per score (``intra-FID 60.10``), then a line per parameter (``lr=0.001``)."""
    scores = record.shown_scores
    lines = [f"trial {record.number}"]
    lines += [f"{s.label} {s.format(scores[n])}" for n, s in SCORES.items() if _number(scores.get(n))]
    lines += [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.params.items()]
    return tuple(lines)


def class_names(study: optuna.Study) -> tuple[str, ...]:
    """The study's class names in label order, as its dataset record holds them (empty: none recorded)."""
    return tuple(str(n) for n in StudyRecord.of(study).dataset.get("class_names") or ())


def trial_columns(study: optuna.Study, store, numbers: Sequence[int]) -> list[Column]:
    """One column per trial number, in the order given, each drawn by the trial's stored checkpoint.

    Raises:
        GenoptError: a number the study has no trial for, a trial that kept no checkpoint (pruned,
            failed, running, or not among the best that the study keeps), or a checkpoint that is
            not a generator's.
    """
    trials = study.get_trials(deepcopy=False)
    columns = []
    for number in numbers:
        if not 0 <= number < len(trials):
            have = f"its trials are 0 to {len(trials) - 1}" if trials else "it has no trials yet"
            raise GenoptError(f"study {study.study_name!r} has no trial {number}: {have}")
        record = TrialRecord.of(trials[number])
        generator = _trial_generator(record, study, store)
        columns.append(generator_column(generator, name=f"trial {number}", heading=trial_heading(record)))
    return columns


def _trial_generator(record: TrialRecord, study: optuna.Study, store):
    name = f"trial {record.number}"
    if record.checkpoint is None:
        why = {
            TrialState.PRUNED: "was pruned, so it kept no checkpoint",
            TrialState.RUNNING: "is still running: it has no checkpoint yet",
        }.get(record.state, f"is {record.state.name.lower()} and kept no checkpoint")
        raise GenoptError(f"{name} {why}: {_kept_line(study, store)}")
    try:
        with store.open_reader(record.checkpoint) as f:
            generator, _ = load_trial_checkpoint(f, name=f"{name}'s checkpoint")
    except ArtifactNotFound:
        raise GenoptError(
            f"{name}'s checkpoint is no longer stored (a study keeps only its best trials' checkpoints): "
            f"{_kept_line(study, store)}"
        ) from None
    return generator


def _kept_line(study: optuna.Study, store) -> str:
    kept = top_trials(study, store, len(study.get_trials(deepcopy=False)))
    if not kept:
        return "no trial of this study has a stored checkpoint yet"
    return f"compare trials with a stored checkpoint ({', '.join(map(str, sorted(kept)))})"


def top_trials(study: optuna.Study, store, n: int) -> list[int]:
    """The numbers of the ``n`` best feasible COMPLETE trials whose checkpoint is still stored, best first.

    Only as many checkpoints are looked up as it takes to find ``n`` (one request each on S3).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(
        (r for r in map(TrialRecord.of, complete) if r.feasible and r.checkpoint and _number(r.value)),
        key=lambda r: (r.value, r.number),
    )
    found = []
    for record in ranked:
        if len(found) == n:
            break
        try:
            if artifact_exists(store, record.checkpoint):
                found.append(record.number)
        except Exception:  # the store moved, or is unreachable: as if removed
            continue
    return found


def draw_top(study: optuna.Study, store, n: int = NOTE_TOP) -> Comparison:
    """The ``n`` best trials with a stored checkpoint side by side, or one line saying there are none."""
    return draw_trials(study, store, top_trials(study, store, n))


def draw_trials(study: optuna.Study, store, numbers: Sequence[int]) -> Comparison:
    """Trials ``numbers`` side by side, leaving out any whose checkpoint is gone (a worker's retention
    may remove one between listing and reading it); one line saying so when none is left."""
    columns = []
    for number in numbers:
        try:
            columns += trial_columns(study, store, [number])
        except GenoptError:  # removed since it was listed
            continue
    if not columns:
        return placeholder(WAITING)
    return draw_comparison(columns, row_names=class_names(study))


# -- an export ------------------------------------------------------------------------------------


def export_columns(
    ensemble: EnsembleGenerator, *, study: optuna.Study | None = None, members: bool = True
) -> list[Column]:
    """The export's members (``members``) and then the export itself, as ``load_ensemble`` gave it.

    A member is headed by its trial number and weight, and, when ``study`` holds that trial, its
    scores and parameters; the export by its mode, its validation scores and its members.
    """
    described = ensemble.metadata.get("members", [])
    numbers = [m.get("trial_number") for m in described]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)} if study is not None else {}
    columns = []
    for generator, weight, number in zip(ensemble.members, ensemble.weights, numbers, strict=True):
        if members:
            heading = (
                trial_heading(TrialRecord.of(trials[number])) if number in trials else (f"trial {number}",)
            )
            columns.append(
                generator_column(
                    generator, name=f"trial {number}", heading=(*heading, f"weight {weight:.2f}")
                )
            )
    mode = ensemble.mode
    validation = ensemble.metadata.get("scores", {}).get(mode, {}).get("validation", {})
    scores = [f"{s.label} {s.format(validation[n])}" for n, s in SCORES.items() if _number(validation.get(n))]
    heading = (f"export ({mode})", *scores, "members " + ", ".join(map(str, numbers)))
    columns.append(
        Column(
            name="the export",
            heading=heading,
            draw=_ensemble_draw(ensemble),
            noise_dim=ensemble.noise_dim,
            image_shape=tuple(ensemble.image_shape),
            num_classes=ensemble.num_classes,
        )
    )
    return columns


def draw_export(ensemble: EnsembleGenerator, *, study: optuna.Study | None = None) -> Comparison:
    """An export beside its members (``export_columns``), rows named as the study (or export) names them."""
    names = class_names(study) if study is not None else ()
    return draw_comparison(export_columns(ensemble, study=study), row_names=names or ensemble.class_names)


def _ensemble_draw(ensemble: EnsembleGenerator):
    @torch.no_grad()
    def draw(noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        args = [noise, labels]
        if ensemble.mode == "mixture":  # each image's member, drawn from a fixed seed of its own
            args.append(torch.rand(len(noise), generator=torch.Generator().manual_seed(GRID_NOISE_SEED + 1)))
        return ensemble(*args)

    return draw


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
