"""``genopt report``: a study's figures as PNG files beside one offline ``index.html``.

Every plot comes from Optuna's own ``optuna.visualization.matplotlib``; this module only lays them
out. The best trial's samples are its stored sample grid, or drawn from its kept checkpoint when
the study predates sample grids.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from genopt import paths
from genopt.models import Generator, GeneratorConfig
from genopt.objective import CHECKPOINT_ATTR, SAMPLES_ATTR
from genopt.report_html import render_html
from genopt.samples import save_grid
from genopt.storage import artifact_store, load_existing_study


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
        "Each complete trial's final validation FID and the best so far, by trial number (lower is better).",
    ),
    "curves": Figure(
        "fid-per-epoch.png",
        "Validation FID per epoch",
        "Every trial's FID after each epoch (its "
        "intermediate values); pruned trials' lines stop at the epoch Hyperband stopped them.",
    ),
    "importances": Figure(
        "param-importances.png",
        "Parameter importances",
        "How much of the variation in final FID each parameter explains over the complete trials (fANOVA).",
    ),
    "slice": Figure(
        "fid-vs-params.png",
        "FID against each parameter",
        "Final FID of every complete trial against each parameter's value; colour is the trial number.",
    ),
    "samples": Figure(
        "best-samples.png", "The best trial's samples", "Fixed noise; for a cGAN one row per class."
    ),
}


def write_report(*, study_name: str, storage_url: str | None = None, out_dir: Path | None = None) -> Path:
    """Write ``out_dir/index.html`` and its figures for ``study_name``; return the HTML's path.

    Args:
        study_name: the study to report on.
        storage_url: an Optuna RDB URL; default ``sqlite:///storage/genopt.db``.
        out_dir: the report folder; default ``storage/reports/<study>``.

    Raises:
        GenoptError: the storage cannot be opened or holds no such study.
    """
    study = load_existing_study(study_name, storage_url)
    out_dir = Path(out_dir) if out_dir is not None else paths.reports_dir() / study_name
    out_dir.mkdir(parents=True, exist_ok=True)

    made, missing = {}, {}
    for key, render in (
        ("history", _history),
        ("curves", _curves),
        ("importances", _importances),
        ("slice", _slice),
    ):
        try:
            render(study, out_dir / FIGURES[key].file)
            made[key] = FIGURES[key]
        except (ValueError, RuntimeError) as exc:  # too few complete trials, no parameters, ...
            missing[key] = f"{FIGURES[key].title}: not drawn ({exc})"
    best = _best(study)
    reason = _best_samples(best, out_dir / FIGURES["samples"].file) if best else "no complete trial yet"
    if reason is None:
        made["samples"] = FIGURES["samples"]
    else:
        missing["samples"] = f"{FIGURES['samples'].title}: {reason}"

    html = render_html(
        study_name=study_name,
        study_attrs=study.user_attrs,
        trials=study.get_trials(deepcopy=False),
        best=best,
        figures=list(made.values()),
        missing=list(missing.values()),
        ensemble=read_export(paths.exports_dir() / f"{study_name}.json"),
    )
    index = out_dir / "index.html"
    index.write_text(html)
    return index


def read_export(path: Path) -> dict[str, Any] | None:
    """An ensemble export as a dict, ``{"error": ...}`` when unreadable, None when there is none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}: {exc}"}
    return data if isinstance(data, dict) else {"error": f"{path} is not a JSON object"}


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def _best_samples(best: FrozenTrial, path: Path) -> str | None:
    """Write the best trial's sample grid to ``path``; None on success, else why not."""
    store = artifact_store()
    samples_id = best.user_attrs.get(SAMPLES_ATTR)
    checkpoint_id = best.user_attrs.get(CHECKPOINT_ATTR)
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
                checkpoint = torch.load(f, weights_only=True, map_location="cpu")
        except Exception:
            return f"trial {best.number}'s sample grid and checkpoint are not in {paths.artifacts_dir()}"
        generator = Generator(GeneratorConfig.from_dict(checkpoint["generator_config"]))
        generator.load_state_dict(checkpoint["state_dict"])
        save_grid(generator.eval(), path)
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


def _history(study: optuna.Study, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save(_plots().plot_optimization_history(study, target_name="validation FID"), path)


def _curves(study: optuna.Study, path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = _plots().plot_intermediate_values(study)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("validation FID")
        _save(axes, path)


def _importances(study: optuna.Study, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save(_plots().plot_param_importances(study, target_name="validation FID"), path, (8, 3.5))


def _slice(study: optuna.Study, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = _plots().plot_slice(study, target_name="validation FID")
        columns = len(axes.flat) if hasattr(axes, "flat") else 1
        _save(axes, path, (4 * columns, 4))
