"""Study specifications: a TOML file, validated field by field, as plain frozen dataclasses.

This layer imports neither torch nor Optuna. ``StudySpec.run_config(params)`` turns the values a
sampler chose into the complete, plain description of one training run, so any trial can be
rebuilt from its stored parameters alone. The TOML layout and its parsing live in
``genopt.spec_toml``; ``load_spec`` and ``spec_from_dict`` are importable from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genopt.errors import GenoptError

MODELS = ("gan", "cgan")
# How a study searches (genopt.study.search; chosen by replay, docs/benchmarks.md).
SAMPLERS = ("tpe", "gp", "random")
PRUNERS = ("behind_best", "hyperband", "successive_halving", "median", "patient", "none")
# Arithmetic of the training step: "bf16" runs forward passes under bfloat16 autocast (docs/benchmarks.md);
# "auto" is bf16 where the device multiplies bf16 natively, else fp32 (genopt.device.resolve_precision).
PRECISIONS = ("fp32", "bf16", "auto")
# How a cGAN's discriminator sees the label: the article's one-hot appended to the image, a
# projection (Miyato & Koyama 2018), or an auxiliary classifier head (Odena et al. 2017).
CONDITIONINGS = ("concat", "projection", "acgan")
# Augmentation of the images D sees (genopt.augment): none, the article's flips and rotations of
# real images only, or DiffAugment's translation and cutout of real and generated images alike.
AUGMENTS = ("none", "article", "diffaugment")
# The networks: the article's MLPs, or DCGAN-style convolutional ones (Radford et al. 2016).
KINDS = ("mlp", "dcgan")
# What a trial minimises: "auto" is intra_fid (mean per-class FID) for a cgan, fid for a gan.
OBJECTIVES = ("auto", "fid", "intra_fid")
# Which epoch gives a trial its value and checkpoint: its best one, or its last (the article's).
SELECT_EPOCHS = ("best", "last")
# Training fields a search space may name; the others of RunConfig are fixed per study.
# str and bool fields are searched over ``choices`` only.
SEARCHABLE: dict[str, type] = {
    "lr": float,
    "batch_size": int,
    "noise_dim": int,
    "beta1": float,
    "beta2": float,
    "ema_decay": float,
    "conditioning": str,
    "spectral_norm": bool,
    "augment": str,
    "augment_probability": float,
    "kind": str,
}
# The values a str field may take.
KNOWN_VALUES: dict[str, tuple[str, ...]] = {"conditioning": CONDITIONINGS, "augment": AUGMENTS, "kind": KINDS}
# What a field absent from a stored spec means: the article's behaviour, which a spec stored before
# the field existed was run with. New specs default differently (see ``StudySpec``).
ARTICLE_BEHAVIOUR: dict[str, Any] = {
    "objective": "fid",
    "select_epoch": "last",
    "ema_decay": 0.0,
    "conditioning": "concat",
    "spectral_norm": False,
    "min_label_accuracy": None,
    "precision": "fp32",
    # The search before these fields existed: multivariate TPE after 10 random trials, Hyperband from 1 epoch.
    "multivariate": True,
    "startup_trials": 10,
    "min_resource": 1,
}


@dataclass(frozen=True)
class Param:
    """One searched parameter: a range (``log`` for log-uniform, ``step`` for a grid from ``low``)
    or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None
    step: float | None = None


# The article's search space; a spec's [search.params] replaces entries by name and adds new ones.
DEFAULT_PARAMS = (
    Param("lr", low=1e-5, high=1e-1, log=True),
    Param("batch_size", low=16, high=128),
    Param("noise_dim", low=50, high=200),
)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, as plain values: what a trial builds and trains.

    Fields after ``precision`` default to the article's behaviour, so ``RunConfig(**stored)`` of a
    run config stored before they existed still builds the same run.
    """

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
    ema_decay: float = 0.0
    conditioning: str = "concat"
    spectral_norm: bool = False
    augment: str = "none"
    augment_probability: float = 1.0
    kind: str = "mlp"
    generator_channels: tuple[int, ...] = (128, 64)
    discriminator_channels: tuple[int, ...] = (64, 128)


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
    # bf16 on a CPU with native bf16, else fp32: no worse by FID, intra-FID or label accuracy over
    # 5 seeds, faster (docs/benchmarks.md, bench/precision_quality.py).
    precision: str = "auto"
    # Generator weight averaging (0 is off): measured in docs/quality.md (bench/levers.py).
    ema_decay: float = 0.999
    # Augmentation (genopt.augment): each image is transformed with augment_probability. Like kind
    # below, the default is what specs stored before the field ran with (docs/strategies.md).
    augment: str = "none"
    augment_probability: float = 1.0
    # [architecture]: the seed's MLPs.
    generator_widths: tuple[int, ...] = (256, 512, 1024)
    discriminator_widths: tuple[int, ...] = (512, 256)
    leaky_slope: float = 0.2
    conditioning: str = "concat"
    spectral_norm: bool = False
    # "dcgan": convolutional networks with these channels per stage (G from its smallest image up,
    # D from the image down) instead of the widths above (docs/strategies.md).
    kind: str = "mlp"
    generator_channels: tuple[int, ...] = (128, 64)
    discriminator_channels: tuple[int, ...] = (64, 128)
    # [evaluation]
    fid_samples: int = 10_000
    objective: str = "auto"
    min_label_accuracy: float | None = None
    select_epoch: str = "best"
    # [search]
    # The search: chosen by replaying candidates on a learning-curve table (docs/benchmarks.md).
    sampler: str = "gp"
    multivariate: bool = True  # TPE only: one joint model of all parameters
    startup_trials: int = 8  # TPE and GP: random trials before the model is used
    pruner: str = "behind_best"
    # behind_best, hyperband and successive_halving: epochs every trial runs (at most max_epochs)
    min_resource: int = 2
    behind_factor: float = 1.5  # behind_best: stop a trial scoring over this times the epoch's best
    seed: int = 0
    keep_checkpoints: int = 5
    params: tuple[Param, ...] = DEFAULT_PARAMS

    @property
    def objective_name(self) -> str:
        """The metric a trial minimises, ``"fid"`` or ``"intra_fid"``, with ``"auto"`` resolved."""
        if self.objective == "auto":
            return "intra_fid" if self.model == "cgan" else "fid"
        return self.objective

    def run_config(self, params: dict[str, Any], *, seed: int) -> RunConfig:
        """The run for the sampled ``params``; unsampled fields keep the spec's fixed values."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(RunConfig) if hasattr(self, f.name)
        }
        values.update(params)
        values.update(epochs=self.max_epochs, seed=seed)
        return RunConfig(**values)

    def architectures(self) -> list[RunConfig]:
        """A run config (the fixed values) per network ``kind`` the study may build, its own last."""
        searched = next((p for p in self.params if p.name == "kind" and p.choices), None)
        kinds = sorted(set(searched.choices) if searched else {self.kind}, key=lambda k: (k == self.kind, k))
        return [self.run_config({"kind": kind}, seed=self.seed) for kind in kinds]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored with the study so a resumed study can be checked against it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudySpec:
        """The inverse of ``to_dict`` after a JSON round trip (lists back to tuples).

        A field absent from ``raw`` was stored by an older genopt, whose studies ran the article's
        behaviour, so it takes its value from ``ARTICLE_BEHAVIOUR`` rather than today's default.
        """

        def plain(d: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        params = tuple(Param(**plain(p)) for p in raw["params"])
        values = ARTICLE_BEHAVIOUR | plain({k: v for k, v in raw.items() if k != "params"})
        return cls(**values, params=params)

    def override(self, **changes: Any) -> StudySpec:
        """This spec with the given fields replaced (``None`` leaves a field as it is), re-validated."""
        spec = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        spec.validate("command line")
        return spec

    def validate(self, where: str) -> None:
        """Raise ``GenoptError`` naming the first field that is out of range."""

        def fail(message: str) -> None:
            raise GenoptError(f"{where}: {message}")

        for name, known in (
            ("model", MODELS),
            ("sampler", SAMPLERS),
            ("precision", PRECISIONS),
            ("pruner", PRUNERS),
            ("conditioning", CONDITIONINGS),
            ("objective", OBJECTIVES),
            ("select_epoch", SELECT_EPOCHS),
            ("augment", AUGMENTS),
            ("kind", KINDS),
        ):
            if getattr(self, name) not in known:
                fail(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(known)}")
        for name in ("max_epochs", "batch_size", "noise_dim", "fid_samples", "keep_checkpoints"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.min_resource < 1:
            fail(f"min_resource must be at least 1, got {self.min_resource}")
        if not self.behind_factor >= 1.0:
            fail(f"behind_factor must be at least 1, got {self.behind_factor}")
        if self.startup_trials < 0:
            fail(f"startup_trials must be at least 0, got {self.startup_trials}")
        if not isinstance(self.multivariate, bool):
            fail(f"multivariate must be true or false, got {self.multivariate!r}")
        if self.train_limit is not None and self.train_limit < 1:
            fail(f"train_limit must be at least 1, got {self.train_limit}")
        if self.fid_samples < 2:
            fail("fid_samples must be at least 2 (a covariance needs two samples)")
        for name in ("lr", "beta1", "beta2", "ema_decay", "augment_probability"):
            problem = _out_of_range(name, getattr(self, name))
            if problem:
                fail(problem)
        if not isinstance(self.spectral_norm, bool):
            fail(f"spectral_norm must be true or false, got {self.spectral_norm!r}")
        if self.objective == "intra_fid" and self.model != "cgan":
            fail("objective 'intra_fid' needs model 'cgan' (a gan draws no class on demand)")
        if self.min_label_accuracy is not None:
            if self.model != "cgan":
                fail("min_label_accuracy needs model 'cgan' (a gan's images have no requested label)")
            if not 0 <= self.min_label_accuracy <= 1:
                fail(f"min_label_accuracy must be in [0, 1], got {self.min_label_accuracy}")
        for name in (
            "generator_widths",
            "discriminator_widths",
            "generator_channels",
            "discriminator_channels",
        ):
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                fail(f"{name} must be a non-empty list of positive integers, got {list(widths)}")
        for p in self.params:
            _validate_param(p, fail)


def _out_of_range(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for the searchable or fixed field ``name``, or None if it is."""
    if name in ("batch_size", "noise_dim") and value < 1:
        return f"{name} must be at least 1, got {value}"
    if name == "lr" and not value > 0:
        return f"lr must be positive, got {value}"
    if name in ("beta1", "beta2", "ema_decay") and not 0 <= value < 1:
        return f"{name} must be in [0, 1), got {value}"
    if name == "augment_probability" and not 0 <= value <= 1:
        return f"{name} must be in [0, 1], got {value}"
    if name in KNOWN_VALUES and value not in KNOWN_VALUES[name]:
        return f"unknown {name} {value!r}: choose one of {', '.join(KNOWN_VALUES[name])}"
    return None


def _is_value(value: Any, kind: type) -> bool:
    """Whether ``value`` is of a searchable field's ``kind``; bool is a kind, never a number."""
    if kind is bool or kind is str:
        return isinstance(value, kind)
    return is_number(value, kind)


def _validate_param(p: Param, fail) -> None:
    kind = SEARCHABLE[p.name]
    where = f"search.params.{p.name}"
    if p.choices is not None:
        if not p.choices or any(not _is_value(c, kind) for c in p.choices):
            fail(f"{where}: choices must be a non-empty list of {kind.__name__} values")
        for c in p.choices:
            problem = _out_of_range(p.name, c)
            if problem:
                fail(f"{where}: {problem}")
        return
    if kind in (str, bool):
        fail(f"{where}: a {kind.__name__} field is searched over choices, not low/high")
    if not (is_number(p.low, kind) and is_number(p.high, kind)):
        fail(f"{where}: low and high must be {kind.__name__} values")
    if p.low >= p.high:
        fail(f"{where}: low ({p.low}) must be below high ({p.high})")
    if p.log and p.low <= 0:
        fail(f"{where}: a log range needs low > 0, got {p.low}")
    if p.step is not None:
        if not is_number(p.step, kind) or p.step <= 0:
            fail(f"{where}: step must be a positive {kind.__name__} value")
        if p.log:
            fail(f"{where}: give either log or step, not both")
        if not math.isclose((p.high - p.low) / p.step, round((p.high - p.low) / p.step), abs_tol=1e-9):
            fail(f"{where}: high - low ({p.high - p.low}) must be a multiple of step ({p.step})")
    if p.name in ("batch_size", "noise_dim") and p.low < 1:
        fail(f"{where}: low must be at least 1, got {p.low}")
    if p.name == "lr" and p.low <= 0:
        fail(f"{where}: low must be positive, got {p.low}")
    if p.name in ("beta1", "beta2", "ema_decay") and not (p.low >= 0 and p.high < 1):
        fail(f"{where}: the range must lie in [0, 1)")
    if p.name == "augment_probability" and not (p.low >= 0 and p.high <= 1):
        fail(f"{where}: the range must lie in [0, 1]")


def is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)


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
    problem = _out_of_range(name, value)
    if problem:
        raise GenoptError(problem)
    return value


def format_params(params: dict[str, Any]) -> str:
    """``"lr=0.00123, batch_size=64, noise_dim=100"``: floats to three significant digits."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a spec file (see ``genopt.spec_toml.load_spec``)."""
    from genopt.spec_toml import load_spec as load

    return load(path)


def spec_from_dict(raw: dict[str, Any], *, where: str) -> StudySpec:
    """Build a validated spec from parsed TOML (see ``genopt.spec_toml.spec_from_dict``)."""
    from genopt.spec_toml import spec_from_dict as build

    return build(raw, where=where)
