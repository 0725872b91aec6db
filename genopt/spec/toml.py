"""The TOML layout of a study spec (``studies/*.toml``) and its parsing, field by field.

The layout is the field table's: each field sits in its section under its name (or, for a pair such as
Adam's ``betas``, under one key as a list). Like the rest of ``genopt.spec``, this imports neither torch
nor Optuna.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from genopt.errors import GenoptError
from genopt.spec.config import DEFAULT_PARAMS, Param, StudySpec
from genopt.spec.fields import FIELDS, SEARCHABLE, WIDTHS, Field, is_number


def _layout() -> dict[str, dict[str, list[Field]]]:
    """Section -> TOML key -> the fields it holds (two for a pair). Top-level keys live under ""."""
    layout: dict[str, dict[str, list[Field]]] = {}
    for f in FIELDS:
        layout.setdefault(f.section, {}).setdefault(f.toml or f.name, []).append(f)
    return layout


_FIELDS_AT = _layout()
# The TOML layout: section -> {key: the type its value must have}; [search.params] is the search space.
_LAYOUT: dict[str, dict[str, Any]] = {
    section: {key: list if len(fs) > 1 or fs[0].type is WIDTHS else fs[0].type for key, fs in keys.items()}
    for section, keys in _FIELDS_AT.items()
}
_LAYOUT["search"]["params"] = dict
_PARAM_KEYS = {"low", "high", "log", "step", "choices"}
_TYPE_NAMES = {bool: "true or false", list: "a list", dict: "a table"}
_COUNTS = {2: "two", 3: "three"}


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a spec file.

    Raises:
        GenoptError: the file is missing, is not TOML, or has an unknown, mistyped or out-of-range field.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GenoptError(f"spec file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GenoptError(f"cannot read spec file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GenoptError(f"{path} is not valid TOML: {exc}") from None
    return spec_from_dict(raw, where=str(path))


def spec_from_dict(raw: dict[str, Any], *, where: str) -> StudySpec:
    """Build a validated spec from parsed TOML (see ``studies/*.toml`` for the layout).

    A field absent here takes ``StudySpec``'s default: a new spec gets today's defaults, unlike a
    spec stored with an old study (``StudySpec.from_dict``), which gets the article's behaviour.
    """

    def fail(message: str) -> None:
        raise GenoptError(f"{where}: {message}")

    values: dict[str, Any] = {}
    for section, fields in _LAYOUT.items():
        table = raw if section == "" else raw.get(section, {})
        if not isinstance(table, dict):
            fail(f"[{section}] must be a table")
        for key, value in table.items():
            if section == "" and key in _LAYOUT:
                continue
            if key not in fields:
                label = f"[{section}] " if section else ""
                fail(f"unknown field {key!r} {label}(known: {', '.join(fields)})")
            expected = fields[key]
            choices = _FIELDS_AT[section][key][0].choices if expected is str else None
            if choices and is_number(value, int) and str(value) in choices:
                value = str(value)  # channels = 3 means "3"
            ok = is_number(value, expected) if expected in (int, float) else isinstance(value, expected)
            if not ok and choices:
                fail(f"unknown {key} {value!r}: choose one of {', '.join(choices)}")
            if not ok:
                fail(f"{key} must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {value!r}")
            values[key] = float(value) if expected is float else value

    for key, fields in ((k, fs) for keys in _FIELDS_AT.values() for k, fs in keys.items() if k in values):
        if len(fields) > 1:  # a pair of float fields under one key
            pair = values.pop(key)
            if len(pair) != len(fields) or not all(is_number(v, float) for v in pair):
                fail(f"{key} must be {_COUNTS.get(len(fields), len(fields))} numbers, got {pair!r}")
            values.update((f.name, float(v)) for f, v in zip(fields, pair, strict=True))
        elif fields[0].type is WIDTHS:
            if not all(is_number(w, int) for w in values[key]):
                fail(f"{key} must be a list of integers, got {values[key]!r}")
            values[key] = tuple(values[key])
    params = {p.name: p for p in DEFAULT_PARAMS}
    params.update((name, _param(name, table, fail)) for name, table in values.get("params", {}).items())
    values["params"] = tuple(params.values())

    spec = StudySpec(**values)
    spec.validate(where)
    return spec


def _param(name: str, table: Any, fail) -> Param:
    if name not in SEARCHABLE:
        fail(f"search.params.{name}: not a searchable field (known: {', '.join(SEARCHABLE)})")
    if not isinstance(table, dict):
        fail(f"search.params.{name} must be a table with low/high or choices")
    unknown = set(table) - _PARAM_KEYS
    if unknown:
        known = ", ".join(sorted(_PARAM_KEYS))
        fail(f"search.params.{name}: unknown field {sorted(unknown)[0]!r} (known: {known})")
    if "choices" in table:
        if {"low", "high", "log", "step"} & set(table):
            fail(f"search.params.{name}: give either choices or low/high, not both")
        if not isinstance(table["choices"], list):
            fail(f"search.params.{name}: choices must be a list")
        return Param(name, choices=tuple(table["choices"]))
    if SEARCHABLE[name] in (str, bool):
        fail(f"search.params.{name}: a {SEARCHABLE[name].__name__} field is searched over choices only")
    if "low" not in table or "high" not in table:
        fail(f"search.params.{name} needs low and high (or choices)")
    if not isinstance(table.get("log", False), bool):
        fail(f"search.params.{name}: log must be true or false")
    return Param(
        name, low=table["low"], high=table["high"], log=table.get("log", False), step=table.get("step")
    )


def find_spec(model: str | None, path: Path | None = None) -> tuple[StudySpec, Path | None]:
    """The spec a study runs with, and the file it came from (None: the built-in defaults).

    ``path`` when given; else ``studies/<model>.toml`` when this is a checkout; else the built-in
    defaults, which ``studies/*.toml`` spell out.
    """
    default = Path("studies") / f"{model or 'gan'}.toml"
    if path is None and default.is_file():
        path = default
    return (load_spec(path), path) if path is not None else (StudySpec(), None)
