"""The report's one HTML page: plain markup, inline CSS, figures by relative path, no scripts."""

from __future__ import annotations

import html
from typing import Any

from optuna.trial import FrozenTrial

from genopt.checkpoints import Description
from genopt.metrics.scores import SCORES
from genopt.spec import format_params
from genopt.study.record.records import StudyRecord, TrialRecord, format_scores

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; }
td, th { padding: .2em .8em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; } .muted { color: #777; } code { font-size: 90%; }
"""


def render_html(
    *,
    study_name: str,
    study_attrs: dict[str, Any],
    trials: list[FrozenTrial],
    best: FrozenTrial | None,
    figures: list,
    missing: list[str],
    ensemble: Description | str | None,
    ensemble_figure=None,
) -> str:
    """The whole page; ``figures`` are ``report.Figure``s whose files lie beside it.

    ``ensemble`` is the study's export description, a one-line reason it cannot be read, or None;
    ``ensemble_figure`` the figure of the export beside its members, shown in its section.
    """
    e = html.escape
    record = StudyRecord.from_attrs(study_attrs)
    dataset, spec = record.dataset, record.spec
    states = [t.state.name.lower() for t in trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)) or "no trials"
    facts = [
        ("model", spec.get("model")),
        ("dataset", f"{dataset.get('name', '?')} (sha256 {dataset.get('sha256', '?')[:16]}…)"),
        ("trials", f"{len(trials)} ({counts})"),
        ("max epochs per trial", spec.get("max_epochs")),
        ("FID samples", spec.get("fid_samples")),
        ("FID floor (validation vs test)", _num(record.fid_floor)),
        ("feature net validation accuracy", _num(record.feature_accuracy, 4)),
        ("feature net sha256", record.feature_sha256 or "none stored (trained on each machine)"),
    ]
    if best is not None:
        facts += [
            (
                "best trial",
                f"{best.number}: {format_scores(TrialRecord.of(best).shown_scores)}, "
                f"{format_params(best.params)}",
            )
        ]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>genopt report: {e(study_name)}"
        f"</title><style>{_STYLE}</style></head><body>",
        f"<h1>Study {e(study_name)}</h1>",
        "<p class='muted'>Validation FID in a small CNN's features: lower is better, the floor is what two "
        "real samples score, and the numbers compare within this study, not with Inception-FID tables.</p>",
        "<p class='muted'>A cGAN is scored by intra-FID, the FID within each class averaged over classes, "
        "and by label accuracy, how often the feature network (a classifier) sees the requested class. "
        "Pooled FID compares all samples at once, so a cGAN that ignores its label can score as well as "
        "one that obeys it; intra-FID cannot be fooled that way.</p>",
        _table(["", ""], [[k, "" if v is None else v] for k, v in facts], header=False),
    ]
    for figure in figures:
        parts.append(f"<h2>{e(figure.title)}</h2>" + _figure(figure))
    for line in missing:
        parts.append(f"<p class='muted'>{e(line)}</p>")
    if ensemble is not None:
        shown = f"<h3>{e(ensemble_figure.title)}</h3>" + _figure(ensemble_figure) if ensemble_figure else ""
        parts.append("<h2>Ensemble</h2>" + _ensemble(ensemble) + shown)
    parts.append("<h2>Trials</h2>" + _trials(trials))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure(figure) -> str:
    e = html.escape
    return (
        f"<figure><img src='{e(figure.file)}' alt='{e(figure.title)}'>"
        f"<figcaption>{e(figure.caption)}</figcaption></figure>"
    )


def _ensemble(export: Description | str) -> str:
    if isinstance(export, str):
        return f"<p class='muted'>{html.escape(export)}</p>"
    names = [n for n in SCORES if any(n in v for by in export.scores.values() for v in by.values())]
    head = ["", *(f"{split} {SCORES[n].label}" for split in ("validation", "test") for n in names)]
    labels = {
        "best_single": f"best single (trial {export.best_single_trial})",
        "mean": "mean",
        "mixture": "mixture",
        "rejection": f"{export.mode} + rejection sampling",
    }
    rows = [
        [
            labels.get(kind, kind),
            *(_score(n, by.get(split, {}).get(n)) for split in ("validation", "test") for n in names),
        ]
        for kind, by in export.scores.items()
    ]
    members = ", ".join(f"trial {number} ({weight:.2f})" for number, weight in export.members)
    facts = [
        ["exported mode", export.mode],
        ["chosen by", f"validation {_label(export.objective)}"],
        ["members (weight)", members],
        ["samples per score", export.fid_samples],
        ["file", f"{export.file} (sha256 {export.sha256[:16]}…)"],
    ]
    if export.image_shape:
        c, h, w = export.image_shape
        kind = {1: "grey", 3: "colour (RGB)"}.get(c, f"{c} channels")
        facts.append(["images", f"{h}x{w}, {kind}"])
    if export.class_names:
        facts.append(["classes", ", ".join(export.class_names)])
    return _table(head, rows) + _table(["", ""], facts, header=False)


def _label(name: str) -> str:
    return SCORES[name].label if name in SCORES else name


def _score(name: str, value: Any) -> str:
    return SCORES[name].format(value) if isinstance(value, int | float) else ""


def _trials(trials: list[FrozenTrial]) -> str:
    rows = []
    for t in trials:
        record = TrialRecord.of(t)
        scores = record.shown_scores
        rows.append(
            [
                t.number,
                t.state.name.lower(),
                *(_score(n, scores.get(n)) for n in SCORES),
                "" if record.best_epoch is None else record.best_epoch,
                "" if record.epochs is None else record.epochs,
                format_params(t.params),
                "below min_label_accuracy" if record.infeasible else record.stop_reason or "",
            ]
        )
    head = [
        "trial",
        "state",
        *(s.label for s in SCORES.values()),
        "best epoch",
        "epochs",
        "parameters",
        "note",
    ]
    return _table(head, rows)


def _table(head: list[str], rows: list[list[Any]], *, header: bool = True) -> str:
    e = html.escape
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = "".join(
            f"<td class='num'>{e(str(v))}</td>" if isinstance(v, int | float) else f"<td>{e(str(v))}</td>"
            for v in row
        )
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) + "</table>"


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else ""
