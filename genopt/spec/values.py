"""Field values as a user types and reads them: command-line text in, one short line out."""

from __future__ import annotations

import math
from typing import Any

from genopt.errors import GenoptError
from genopt.spec.fields import FIELD, SEARCHABLE

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def parse_value(name: str, text: str) -> Any:
    """Command-line text for the searchable field ``name`` as that field's type.

    ``"2e-4"`` -> 0.0002 for a float, ``"64"`` -> 64 for an int, ``"true"``/``"false"`` for a bool
    (``bool("false")`` would be True), and a str field's known values as they are.

    Raises:
        GenoptError: ``name`` is not searchable, or ``text`` is not a valid value of it (one line).
    """
    if name not in SEARCHABLE:
        raise GenoptError(f"{name!r} is not a searchable field (known: {', '.join(SEARCHABLE)})")
    kind, raw = SEARCHABLE[name], text.strip()
    value: Any = None
    if kind is bool:
        value = True if raw.lower() in _TRUE else False if raw.lower() in _FALSE else None
    elif kind is str:
        value = raw
    else:
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if kind is float and value is not None and not math.isfinite(value):
            value = None
    if value is None:
        expected = "true or false" if kind is bool else f"a {kind.__name__}"
        raise GenoptError(f"{name} needs {expected}, got {text!r}")
    problem = FIELD[name].problem(value)
    if problem:
        raise GenoptError(problem)
    return value


def format_params(params: dict[str, Any]) -> str:
    """``"lr=0.00123, batch_size=64, noise_dim=100"``: floats to three significant digits."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
