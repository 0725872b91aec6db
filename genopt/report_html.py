"""The report's one HTML page: plain markup, inline CSS, figures by relative path, no scripts."""

from __future__ import annotations

import html
from typing import Any

from optuna.trial import FrozenTrial

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
    ensemble: dict[str, Any] | None,
) -> str:
    """The whole page; ``figures`` are ``report.Figure``s whose files lie beside it."""
    e = html.escape
    dataset = study_attrs.get("dataset", {})
    spec = study_attrs.get("spec", {})
    states = [t.state.name.lower() for t in trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)) or "no trials"
    facts = [
        ("model", spec.get("model")),
        ("dataset", f"{dataset.get('name', '?')} (sha256 {dataset.get('sha256', '?')[:16]}…)"),
        ("trials", f"{len(trials)} ({counts})"),
        ("max epochs per trial", spec.get("max_epochs")),
        ("FID samples", spec.get("fid_samples")),
        ("FID floor (validation vs test)", _num(study_attrs.get("fid_floor"))),
        ("feature net validation accuracy", _num(study_attrs.get("feature_net_validation_accuracy"), 4)),
    ]
    if best is not None:
        facts += [("best trial", f"{best.number}: FID {best.value:.2f}, {_params(best.params)}")]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>genopt report: {e(study_name)}"
        f"</title><style>{_STYLE}</style></head><body>",
        f"<h1>Study {e(study_name)}</h1>",
        "<p class='muted'>Validation FID in a small CNN's features: lower is better, the floor is what two "
        "real samples score, and the numbers compare within this study, not with Inception-FID tables.</p>",
        _table(["", ""], [[k, "" if v is None else v] for k, v in facts], header=False),
    ]
    for figure in figures:
        parts.append(
            f"<h2>{e(figure.title)}</h2><figure><img src='{e(figure.file)}' alt='{e(figure.title)}'>"
            f"<figcaption>{e(figure.caption)}</figcaption></figure>"
        )
    for line in missing:
        parts.append(f"<p class='muted'>{e(line)}</p>")
    if ensemble is not None:
        parts.append("<h2>Ensemble</h2>" + _ensemble(ensemble))
    parts.append("<h2>Trials</h2>" + _trials(trials))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _ensemble(export: dict[str, Any]) -> str:
    # The export format belongs to `genopt ensemble`; show what is there without relying on more.
    if "error" in export:
        return f"<p class='muted'>{html.escape(str(export['error']))}</p>"
    out = []
    scores = export.get("scores")
    if isinstance(scores, dict):
        out.append(_table(["", "FID"], [[k, _num(v)] for k, v in scores.items()]))
    scalars = [[k, v] for k, v in export.items() if k != "scores" and isinstance(v, str | int | float | bool)]
    members = export.get("members") or export.get("trials")
    if isinstance(members, list):
        scalars.append(
            ["members", ", ".join(str(m.get("trial", m) if isinstance(m, dict) else m) for m in members)]
        )
    if scalars:
        out.append(_table(["", ""], scalars, header=False))
    return "".join(out) or "<p class='muted'>the export holds nothing this report knows how to show</p>"


def _trials(trials: list[FrozenTrial]) -> str:
    rows = []
    for t in trials:
        fids = t.user_attrs.get("fid_history") or []
        fid = t.value if t.value is not None else (fids[-1] if fids else None)
        rows.append(
            [
                t.number,
                t.state.name.lower(),
                _num(fid),
                t.user_attrs.get("epochs", ""),
                _params(t.params),
                t.user_attrs.get("stop_reason", ""),
            ]
        )
    return _table(["trial", "state", "FID", "epochs", "parameters", "stopped"], rows)


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


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
