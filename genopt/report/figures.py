"""``genopt report``: a study's figures as PNG files beside one offline ``index.html``.

Every plot comes from Optuna's own ``optuna.visualization.matplotlib``; this module only lays them
out. The best trial's samples are its stored sample grid, or drawn from its kept checkpoint when
the study predates sample grids. The best trials, and the export beside its members, are drawn
side by side from the same noise (``genopt.report.compare``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from genopt import paths
from genopt.checkpoints import Description, load_trial_checkpoint, read_description
from genopt.ensemble.export import default_path
from genopt.ensemble.generator import load_ensemble
from genopt.errors import GenoptError
from genopt.files import atomic_write
from genopt.grid import save_grid
from genopt.metrics.scores import SCORES
from genopt.report.compare import TOP, draw_export, draw_trials, top_trials
from genopt.report.html import render_html
from genopt.study.record.facts import stored_spec, study_artifact_store
from genopt.study.record.records import TrialRecord, best_trial
from genopt.study.storage.database import load_existing_study


def stored_objective(study: optuna.Study) -> str:
    """The study's objective (studies made before objectives were chosen were scored by FID)."""
    try:
        return stored_spec(study).objective_name
    except GenoptError:
        return "fid"


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its PNG file name (beside index.html), title and caption."""

    file: str
    title: str
    caption: str


FIGURES = {
    "history": Figure(
        "optimization-history.png",
        "Optimization history",
        "Each complete trial's value (its best epoch's validation objective) and the best so far, by trial "
        "number (lower is better).",
    ),
    "curves": Figure(
        "fid-per-epoch.png",
        "Validation objective per epoch",
        "Every trial's objective after each epoch (its "
        "intermediate values); pruned trials' lines stop at the epoch the pruner stopped them.",
    ),
    "importances": Figure(
        "param-importances.png",
        "Parameter importances",
        "How much of the variation in the objective each parameter explains over the complete trials "
        "(fANOVA).",
    ),
    "slice": Figure(
        "fid-vs-params.png",
        "Objective against each parameter",
        "The value of every complete trial against each parameter's value; colour is the trial number.",
    ),
    "samples": Figure(
        "best-samples.png", "The best trial's samples", "Fixed noise; for a cGAN one row per class."
    ),
    "compare": Figure(
        "best-trials-side-by-side.png",
        "The best trials side by side",
        f"The same noise and the same labels through the generators of the (at most {TOP}) best trials "
        "that kept a checkpoint, best first, so every difference is the generator's: a column per trial, "
        "headed by its number, scores and parameters; for a cGAN a row per class.",
    ),
    "ensemble": Figure(
        "ensemble-beside-members.png",
        "The ensemble beside its members",
        "Each member of the export (its weight below its parameters), then the export itself, all "
        "fed the same noise and labels.",
    ),
}


def write_report(
    *,
    study_name: str,
    storage_url: str | None = None,
    out_dir: Path | None = None,
    artifact_store: str | Path | None = None,
    export: Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and its figures for ``study_name``; return the HTML's path.

    Args:
        study_name: the study to report on.
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        out_dir: the report folder; default ``storage/reports/<study>``.
        artifact_store: the study's artifact store (a folder or ``s3://`` URL), when it moved;
            default the one it wrote to.
        export: the study's ensemble export (``.pt``); default ``storage/exports/<study>.pt``.

    Raises:
        GenoptError: the storage cannot be opened or holds no such study.
    """
    study = load_existing_study(study_name, storage_url)
    store = study_artifact_store(study, artifact_store)
    out_dir = Path(out_dir) if out_dir is not None else paths.reports_dir() / study_name
    out_dir.mkdir(parents=True, exist_ok=True)

    made, missing = {}, {}
    objective = SCORES.get(stored_objective(study), SCORES["fid"])
    target = f"validation {objective.label}"
    for key, render in (
        ("history", _history),
        ("curves", _curves),
        ("importances", _importances),
        ("slice", _slice),
    ):
        try:
            render(study, out_dir / FIGURES[key].file, target)
            made[key] = FIGURES[key]
        except (ValueError, RuntimeError) as exc:  # too few complete trials, no parameters, ...
            missing[key] = f"{FIGURES[key].title}: not drawn ({exc})"
    best = best_trial(study)
    reason = (
        _best_samples(best, store, out_dir / FIGURES["samples"].file) if best else "no complete trial yet"
    )
    if reason is None:
        made["samples"] = FIGURES["samples"]
    else:
        missing["samples"] = f"{FIGURES['samples'].title}: {reason}"
    export = Path(export) if export is not None else default_path(study_name)
    for key, draw in (
        ("compare", lambda: _top(study, store)),
        ("ensemble", lambda: _beside(export, study)),
    ):
        try:
            picture = draw()
        except GenoptError as exc:
            missing[key] = f"{FIGURES[key].title}: {exc}"
            continue
        if picture is not None:
            atomic_write(out_dir / FIGURES[key].file, picture.png())
            made[key] = FIGURES[key]

    ensemble_figure = made.pop("ensemble", None)
    html = render_html(
        study_name=study_name,
        study_attrs=study.user_attrs,
        trials=study.get_trials(deepcopy=False),
        best=best,
        figures=list(made.values()),
        missing=list(missing.values()),
        ensemble=_export(export),
        ensemble_figure=ensemble_figure,
    )
    index = out_dir / "index.html"
    index.write_text(html)
    return index


def _export(path: Path) -> Description | str | None:
    """The export's description, why it cannot be read, or None when there is none."""
    if not path.with_suffix(".json").is_file():
        return None
    try:
        return read_description(path)
    except GenoptError as exc:
        return str(exc)


def _top(study: optuna.Study, store):
    numbers = top_trials(study, store, TOP)
    if not numbers:
        raise GenoptError("no complete trial has a stored checkpoint yet")
    return draw_trials(study, store, numbers)


def _beside(export: Path, study: optuna.Study):
    """The export beside its members, or None when there is no export (or it cannot be read: the
    report's Ensemble section says why)."""
    if not export.with_suffix(".json").is_file():
        return None
    try:
        ensemble = load_ensemble(export)
    except GenoptError:
        return None
    return draw_export(ensemble, study=study)


def _best_samples(best: FrozenTrial, store, path: Path) -> str | None:
    """Write the best trial's sample grid to ``path``; None on success, else why not."""
    record = TrialRecord.of(best)
    samples_id, checkpoint_id = record.samples, record.checkpoint
    if samples_id is not None:
        try:
            with store.open_reader(samples_id) as f:
                path.write_bytes(f.read())
            return None
        except Exception:  # removed from the store, or the store moved: try the checkpoint
            pass
    if checkpoint_id is not None:
        try:
            with store.open_reader(checkpoint_id) as f:
                generator, _ = load_trial_checkpoint(f, name=f"trial {best.number}'s checkpoint")
        except GenoptError as exc:
            return str(exc)
        except Exception:
            return f"trial {best.number}'s sample grid and checkpoint are not in its artifact store"
        save_grid(generator, path)
        return None
    return f"trial {best.number} has no stored sample grid or checkpoint"


# Optuna's plots, one function each: the Axes they return are saved as they are drawn.


def _plots():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from optuna.visualization import matplotlib as plots

    return plots


def _save(axes, path: Path, size: tuple[float, float] = (9, 5)) -> None:
    import matplotlib.pyplot as plt

    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(*size)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _history(study: optuna.Study, path: Path, target: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save(_plots().plot_optimization_history(study, target_name=target), path)


def _curves(study: optuna.Study, path: Path, target: str) -> None:
    from matplotlib.ticker import MaxNLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = _plots().plot_intermediate_values(study)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(target)
        _save(axes, path)


def _importances(study: optuna.Study, path: Path, target: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save(_plots().plot_param_importances(study, target_name=target), path, (8, 3.5))


def _slice(study: optuna.Study, path: Path, target: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = _plots().plot_slice(study, target_name=target)
        columns = len(axes.flat) if hasattr(axes, "flat") else 1
        _save(axes, path, (4 * columns, 4))
