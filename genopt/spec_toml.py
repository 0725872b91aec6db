"""The TOML layout of a study spec (``studies/*.toml``) and its parsing, field by field.

Kept apart from ``genopt.spec`` (the dataclasses and their validation) so each stays short; like
it, this module imports neither torch nor Optuna.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from genopt.errors import GenoptError
from genopt.spec import DEFAULT_PARAMS, SEARCHABLE, Param, StudySpec, is_number

# The TOML layout: section -> {field: type}. Top-level keys live under "".
_LAYOUT: dict[str, dict[str, Any]] = {
    "": {"model": str, "dataset": str},
    "training": {
        "max_epochs": int,
        "lr": float,
        "batch_size": int,
        "noise_dim": int,
        "betas": list,
        "train_limit": int,
        "precision": str,
        "ema_decay": float,
        "augment": str,
        "augment_probability": float,
    },
    "architecture": {
        "generator_widths": list,
        "discriminator_widths": list,
        "leaky_slope": float,
        "conditioning": str,
        "spectral_norm": bool,
        "kind": str,
        "generator_channels": list,
        "discriminator_channels": list,
    },
    "evaluation": {
        "fid_samples": int,
        "objective": str,
        "min_label_accuracy": float,
        "select_epoch": str,
    },
    "search": {
        "sampler": str,
        "multivariate": bool,
        "startup_trials": int,
        "pruner": str,
        "min_resource": int,
        "behind_factor": float,
        "seed": int,
        "keep_checkpoints": int,
        "params": dict,
    },
}
_PARAM_KEYS = {"low", "high", "log", "step", "choices"}
_TYPE_NAMES = {bool: "true or false", list: "a list", dict: "a table"}


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
            ok = is_number(value, expected) if expected in (int, float) else isinstance(value, expected)
            if not ok:
                fail(f"{key} must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {value!r}")
            values[key] = float(value) if expected is float else value

    if "betas" in values:
        betas = values.pop("betas")
        if len(betas) != 2 or not all(is_number(b, float) for b in betas):
            fail(f"betas must be two numbers, got {betas!r}")
        values["beta1"], values["beta2"] = float(betas[0]), float(betas[1])
    for name in ("generator_widths", "discriminator_widths", "generator_channels", "discriminator_channels"):
        if name in values:
            if not all(is_number(w, int) for w in values[name]):
                fail(f"{name} must be a list of integers, got {values[name]!r}")
            values[name] = tuple(values[name])
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
