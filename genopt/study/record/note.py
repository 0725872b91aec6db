"""The study note optuna-dashboard shows above a study: what was searched, on what, and how to read it.

A pure function of the study's user attributes, so the note and the stored facts cannot disagree.
Its picture of the best trials side by side is drawn when it is shown, by ``genopt dashboard`` at
``comparison_url`` (``genopt.report.dashboard``), so it follows the study as trials finish.
"""

from __future__ import annotations

import json
import shlex
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genopt.spec import StudySpec
from genopt.study.artifacts.stores import ArtifactLocation
from genopt.study.record.records import StudyRecord


def study_note(study_name: str, user_attrs: dict[str, Any], command: str | None = None) -> str:
    """The note's Markdown for a study made by genopt.

    Args:
        study_name: the study's name.
        user_attrs: the study's user attributes (``spec``, ``dataset``, ``fid_floor``,
            ``feature_net_validation_accuracy``) as ``run_study`` stores them.
        command: the command line that made the study; left out when unknown.
    """
    record = StudyRecord.from_attrs(user_attrs)
    spec, dataset, floor, accuracy = record.spec, record.dataset, record.fid_floor, record.feature_accuracy
    objective = StudySpec.from_dict(spec).objective_name if spec else "fid"
    lines = [
        f"## {study_name}",
        "",
        f"A {spec.get('model', '?')} on **{dataset.get('name', '?')}**, scored by validation "
        f"{_OBJECTIVES[objective]} (lower is better) after every epoch, up to {spec.get('max_epochs', '?')} "
        "epochs a trial; a trial's value is its best epoch's.",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {dataset.get('name', '?')} |",
        f"| source | `{dataset.get('source', '?')}` |",
        f"| sha256 | `{dataset.get('sha256', '?')}` |",
        *_data_rows(dataset),
        f"| feature network validation accuracy, {feature_task(dataset)} task | {_fmt(accuracy, '.4f')} |",
        f"| feature network version | {record.feature_version} |",
        f"| feature network sha256 | {_sha_row(record.feature_sha256)} |",
        f"| FID floor (validation vs test) | {_fmt(floor, '.2f')} |",
        *_init_rows(record.init),
        "",
        "### How to read the numbers",
        "",
        "- FID is computed in the 128-d features of a small CNN trained on the training split "
        f"{_TRAINED_TO[feature_task(dataset)]}, between "
        f"{spec.get('fid_samples', '?')} generated images and the validation split. It is **not** "
        "comparable with published Inception-FID figures; compare trials of this study with each other.",
        f"- The floor ({_fmt(floor, '.2f')}) is what two real samples score: no generator can be expected "
        "to go below it.",
        "- A cGAN is also scored by **label accuracy** (how often the feature network, a classifier, "
        "sees the class it asked for) and **intra-FID** (FID within each class, averaged): pooled FID "
        "cannot see a cGAN that ignores its label, intra-FID can.",
        "- A trial's intermediate values are its per-epoch objective. PRUNED trials were stopped early "
        "by the spec's pruner (or diverged: see their `stop_reason`); their curves end early.",
        "- Every trial has a sample grid (`samples`, fixed noise, one row per class for a cGAN) and its "
        "per-epoch losses and scores (`history_csv`) among its artifacts; the best ones also keep a "
        "generator `checkpoint`. The grid is each trial's first artifact: select trials and turn on "
        "*Show Artifacts* to see their grids side by side.",
        "",
        *comparison_section(study_name),
    ]
    if command:
        lines += ["", "### Reproduce", "", "```sh", command, "```"]
    lines += ["", "### Spec", "", "```json", json.dumps(spec, indent=1, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


# Where `genopt dashboard` draws a study's best trials side by side (genopt.report.dashboard).
COMPARISON_PATH = "/genopt/compare.png"
COMPARISON_HEADING = "### The best trials side by side"


def comparison_url(study_name: str) -> str:
    """The path at which ``genopt dashboard`` serves the picture of ``study_name``'s best trials."""
    return f"{COMPARISON_PATH}?study={urllib.parse.quote(study_name, safe='')}"


def comparison_section(study_name: str) -> list[str]:
    """The note's lines that show the best trials side by side, drawn when the note is shown."""
    return [
        COMPARISON_HEADING,
        "",
        f"![The best trials side by side]({comparison_url(study_name)})",
        "",
        "The same noise and the same labels through the generators of the best trials that kept a "
        "checkpoint, best first: a column per trial, headed by its number, scores and parameters; for a "
        "cGAN a row per class. Drawn afresh as trials finish (reload the page); `genopt compare` draws "
        "any trials, and an export beside its members.",
    ]


# What the feature network learns: the classes, or (data without classes) which of four rotations was
# applied to an image, a self-supervised task (Gidaris et al. 2018).
_TRAINED_TO = {
    "class": "to tell the classes apart",
    "rotation": "to tell which of four rotations was applied to an image (the data has no classes: a "
    "self-supervised task, Gidaris et al. 2018)",
}


def feature_task(dataset: dict[str, Any]) -> str:
    """``"class"``, or ``"rotation"`` for data without classes: what the feature network was trained on."""
    return "class" if dataset.get("labelled", True) else "rotation"


def data_line(dataset: dict[str, Any]) -> str:
    """``3x32x32, 10 classes (1 other file ignored)``: the study's images in one line."""
    shape = (
        "x".join(str(dataset[k]) for k in ("channels", "image_size", "image_size"))
        if "channels" in dataset
        else "?"
    )
    names = dataset.get("class_names", [])
    text = f"{shape}, {len(names)} classes" if dataset.get("labelled", True) else f"{shape}, no classes"
    skipped, ignored = dataset.get("skipped_files", 0), dataset.get("ignored_files", 0)
    notes = [f"{skipped} image file{'s' * (skipped != 1)} that did not decode skipped"] if skipped else []
    notes += [f"{ignored} other file{'s' * (ignored != 1)} ignored"] if ignored else []
    return f"{text} ({', '.join(notes)})" if notes else text


def _data_rows(dataset: dict[str, Any]) -> list[str]:
    if "channels" not in dataset:  # recorded before image folders
        return []
    rows = [f"| images | {data_line(dataset)} |"]
    if dataset.get("class_names"):
        rows.append(f"| classes | {', '.join(dataset['class_names'])} |")
    if "split" in dataset:
        rows.append(f"| split | {dataset['split']} |")
    if "background" in dataset:
        rows.append(f"| transparency composited on | {dataset['background']} |")
    return rows


_STOPPED = "### Stopped"


def with_stop(note: str, reason: str | None) -> str:
    """``note`` saying why an auto study stopped (``--trials auto``), or, with None, no longer saying it."""
    kept = note.split(f"\n{_STOPPED}\n")[0].rstrip("\n")
    return f"{kept}\n\n{_STOPPED}\n\n{reason}.\n" if reason else f"{kept}\n"


def _init_rows(init: dict[str, Any] | None) -> list[str]:
    if not init:
        return []
    member = f" (member {init['member']})" if init.get("member") is not None else ""
    return [
        f"| warm start from | `{init.get('path', '?')}`{member} |",
        f"| its sha256 | `{init.get('sha256', '?')}` |",
    ]


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "?"


_OBJECTIVES = {"fid": "FID", "intra_fid": "intra-FID (FID per class, averaged)"}


def reproduce_command(
    spec: StudySpec,
    *,
    study_name: str,
    trials: int,
    spec_path: Path | None = None,
    data_dir: Path | None = None,
    strict: bool = False,
    storage_url: str | None = None,
    artifact_store: str | None = None,
    enqueue: Sequence[str] = (),
    init_from: Path | None = None,
    init_member: int | None = None,
) -> str:
    """The ``genopt study`` line that makes this study again, every budget spelled out."""
    words = ["genopt", "study", "--model", spec.model, "--dataset", spec.dataset, "--study", study_name]
    if spec_path is not None:
        words += ["--spec", str(spec_path)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
        if spec.image_size is not None:
            words += ["--image-size", str(spec.image_size)]
        if spec.channels != "auto":
            words += ["--channels", spec.channels]
        if strict:
            words.append("--strict")
    if storage_url is not None:
        words += ["--storage", storage_url]
    if artifact_store is not None:  # a folder or an s3:// URL, never its credentials
        words += ["--artifact-store", ArtifactLocation.parse(artifact_store).url]
    words += ["--trials", str(trials), "--epochs", str(spec.max_epochs), "--seed", str(spec.seed)]
    words += ["--fid-samples", str(spec.fid_samples)]
    if spec.train_limit is not None:
        words += ["--train-limit", str(spec.train_limit)]
    for text in enqueue:
        words += ["--enqueue", text]
    if init_from is not None:
        words += ["--init-from", str(init_from)]
    if init_member is not None:
        words += ["--init-member", str(init_member)]
    return shlex.join(words)


def _sha_row(sha256: str | None) -> str:
    """The network's file sha256, or what an older study's network is (docs/scoring.md)."""
    return (
        f"`{sha256}`"
        if sha256
        else "none stored: trained on each machine (a study made before genopt stored it)"
    )
