"""The study note optuna-dashboard shows above a study: what was searched, on what, and how to read it.

A pure function of the study's user attributes, so the note and the stored facts cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any


def study_note(study_name: str, user_attrs: dict[str, Any], command: str | None = None) -> str:
    """The note's Markdown for a study made by genopt.

    Args:
        study_name: the study's name.
        user_attrs: the study's user attributes (``spec``, ``dataset``, ``fid_floor``,
            ``feature_net_validation_accuracy``) as ``run_study`` stores them.
        command: the command line that made the study; left out when unknown.
    """
    spec = user_attrs.get("spec", {})
    dataset = user_attrs.get("dataset", {})
    floor = user_attrs.get("fid_floor")
    accuracy = user_attrs.get("feature_net_validation_accuracy")
    lines = [
        f"## {study_name}",
        "",
        f"A {spec.get('model', '?')} on **{dataset.get('name', '?')}**, scored by validation FID "
        f"(lower is better) after every epoch, up to {spec.get('max_epochs', '?')} epochs a trial.",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {dataset.get('name', '?')} |",
        f"| source | `{dataset.get('source', '?')}` |",
        f"| sha256 | `{dataset.get('sha256', '?')}` |",
        f"| feature network validation accuracy | {_fmt(accuracy, '.4f')} |",
        f"| FID floor (validation vs test) | {_fmt(floor, '.2f')} |",
        "",
        "### How to read the numbers",
        "",
        "- FID is computed in the 128-d features of a small CNN trained on the training split, between "
        f"{spec.get('fid_samples', '?')} generated images and the validation split. It is **not** "
        "comparable with published Inception-FID figures; compare trials of this study with each other.",
        f"- The floor ({_fmt(floor, '.2f')}) is what two real samples score: no generator can be expected "
        "to go below it.",
        "- A trial's intermediate values are its per-epoch FID. PRUNED trials were stopped early by "
        "Hyperband (or diverged: see their `stop_reason`); their curves end early.",
        "- Every trial has a sample grid (`samples`, fixed noise, one row per class for a cGAN) and its "
        "per-epoch losses and FID (`history_csv`) among its artifacts; the best ones also keep a "
        "generator `checkpoint`.",
    ]
    if command:
        lines += ["", "### Reproduce", "", "```sh", command, "```"]
    lines += ["", "### Spec", "", "```json", json.dumps(spec, indent=1, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "?"
