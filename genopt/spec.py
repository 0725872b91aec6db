"""Study specifications: a TOML file, validated field by field, as plain frozen dataclasses.

This layer imports neither torch nor Optuna. ``StudySpec.run_config(params)`` turns the values a
sampler chose into the complete, plain description of one training run, so any trial can be
rebuilt from its stored parameters alone.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genopt.errors import GenoptError

MODELS = ("gan", "cgan")
SAMPLERS = ("tpe", "random")
PRUNERS = ("hyperband", "none")
# Arithmetic of the training step: "bf16" runs forward passes under bfloat16 autocast (docs/benchmarks.md).
PRECISIONS = ("fp32", "bf16")
# Training fields a search space may name; the others of RunConfig are fixed per study.
SEARCHABLE = {"lr": float, "batch_size": int, "noise_dim": int, "beta1": float, "beta2": float}


@dataclass(frozen=True)
class Param:
    """One searched parameter: a range (``log`` for log-uniform) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None


# The article's search space; a spec's [search.params] replaces entries by name and adds new ones.
DEFAULT_PARAMS = (
    Param("lr", low=1e-5, high=1e-1, log=True),
    Param("batch_size", low=16, high=128),
    Param("noise_dim", low=50, high=200),
)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, as plain values: what a trial builds and trains."""

    model: str
    noise_dim: int
    lr: float
    batch_size: int
    beta1: float
    beta2: float
    epochs: int
    seed: int
    generator_widths: tuple[int, ...]
    discriminator_widths: tuple[int, ...]
    leaky_slope: float
    train_limit: int | None
    precision: str = "fp32"


@dataclass(frozen=True)
class StudySpec:
    """A study: the model and data, fixed training values, the search space and the search."""

    model: str = "gan"
    dataset: str = "mnist"
    # [training]: fixed values; those named in [search.params] are chosen per trial instead.
    max_epochs: int = 10
    lr: float = 2e-4
    batch_size: int = 64
    noise_dim: int = 100
    beta1: float = 0.5
    beta2: float = 0.999
    train_limit: int | None = None
    precision: str = "fp32"
    # [architecture]: the seed's MLPs.
    generator_widths: tuple[int, ...] = (256, 512, 1024)
    discriminator_widths: tuple[int, ...] = (512, 256)
    leaky_slope: float = 0.2
    # [evaluation]
    fid_samples: int = 10_000
    # [search]
    sampler: str = "tpe"
    pruner: str = "hyperband"
    seed: int = 0
    keep_checkpoints: int = 5
    params: tuple[Param, ...] = DEFAULT_PARAMS

    def run_config(self, params: dict[str, Any], *, seed: int) -> RunConfig:
        """The run for the sampled ``params``; unsampled fields keep the spec's fixed values."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(RunConfig) if hasattr(self, f.name)
        }
        values.update(params)
        values.update(epochs=self.max_epochs, seed=seed)
        return RunConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored with the study so a resumed study can be checked against it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudySpec:
        """The inverse of ``to_dict`` after a JSON round trip (lists back to tuples)."""

        def plain(d: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        params = tuple(Param(**plain(p)) for p in raw["params"])
        return cls(**plain({k: v for k, v in raw.items() if k != "params"}), params=params)

    def override(self, **changes: Any) -> StudySpec:
        """This spec with the given fields replaced (``None`` leaves a field as it is), re-validated."""
        spec = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        spec.validate("command line")
        return spec

    def validate(self, where: str) -> None:
        """Raise ``GenoptError`` naming the first field that is out of range."""

        def fail(message: str) -> None:
            raise GenoptError(f"{where}: {message}")

        if self.model not in MODELS:
            fail(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}")
        if self.sampler not in SAMPLERS:
            fail(f"unknown sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.precision not in PRECISIONS:
            fail(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.pruner not in PRUNERS:
            fail(f"unknown pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        for name in ("max_epochs", "batch_size", "noise_dim", "fid_samples", "keep_checkpoints"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.train_limit is not None and self.train_limit < 1:
            fail(f"train_limit must be at least 1, got {self.train_limit}")
        if self.fid_samples < 2:
            fail("fid_samples must be at least 2 (a covariance needs two samples)")
        if not self.lr > 0:
            fail(f"lr must be positive, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                fail(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("generator_widths", "discriminator_widths"):
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                fail(f"{name} must be a non-empty list of positive integers, got {list(widths)}")
        for p in self.params:
            _validate_param(p, fail)


def _validate_param(p: Param, fail) -> None:
    kind = SEARCHABLE[p.name]
    if p.choices is not None:
        if not p.choices or any(not _is_number(c, kind) for c in p.choices):
            fail(f"search.params.{p.name}: choices must be a non-empty list of {kind.__name__} values")
        return
    if not (_is_number(p.low, kind) and _is_number(p.high, kind)):
        fail(f"search.params.{p.name}: low and high must be {kind.__name__} values")
    if p.low >= p.high:
        fail(f"search.params.{p.name}: low ({p.low}) must be below high ({p.high})")
    if p.log and p.low <= 0:
        fail(f"search.params.{p.name}: a log range needs low > 0, got {p.low}")
    if p.name in ("batch_size", "noise_dim") and p.low < 1:
        fail(f"search.params.{p.name}: low must be at least 1, got {p.low}")
    if p.name == "lr" and p.low <= 0:
        fail(f"search.params.lr: low must be positive, got {p.low}")
    if p.name in ("beta1", "beta2") and not (p.low >= 0 and p.high < 1):
        fail(f"search.params.{p.name}: the range must lie in [0, 1)")


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)


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
    },
    "architecture": {"generator_widths": list, "discriminator_widths": list, "leaky_slope": float},
    "evaluation": {"fid_samples": int},
    "search": {"sampler": str, "pruner": str, "seed": int, "keep_checkpoints": int, "params": dict},
}
_PARAM_KEYS = {"low", "high", "log", "choices"}


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
    """Build a validated spec from parsed TOML (see ``studies/*.toml`` for the layout)."""

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
            ok = _is_number(value, expected) if expected in (int, float) else isinstance(value, expected)
            if not ok:
                fail(f"{key} must be {expected.__name__}, got {value!r}")
            values[key] = value

    if "betas" in values:
        betas = values.pop("betas")
        if len(betas) != 2 or not all(_is_number(b, float) for b in betas):
            fail(f"betas must be two numbers, got {betas!r}")
        values["beta1"], values["beta2"] = float(betas[0]), float(betas[1])
    for name in ("generator_widths", "discriminator_widths"):
        if name in values:
            if not all(_is_number(w, int) for w in values[name]):
                fail(f"{name} must be a list of integers, got {values[name]!r}")
            values[name] = tuple(values[name])
    if "lr" in values:
        values["lr"] = float(values["lr"])
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
        if {"low", "high", "log"} & set(table):
            fail(f"search.params.{name}: give either choices or low/high, not both")
        if not isinstance(table["choices"], list):
            fail(f"search.params.{name}: choices must be a list")
        return Param(name, choices=tuple(table["choices"]))
    if "low" not in table or "high" not in table:
        fail(f"search.params.{name} needs low and high (or choices)")
    if not isinstance(table.get("log", False), bool):
        fail(f"search.params.{name}: log must be true or false")
    return Param(name, low=table["low"], high=table["high"], log=table.get("log", False))
