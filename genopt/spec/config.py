"""Study specifications and run configs: plain frozen dataclasses built from the field table.

``StudySpec.run_config(params)`` turns the values a sampler chose into the complete, plain description
of one training run, so any trial can be rebuilt from its stored parameters alone. The fields of both
classes, their defaults and their range rules come from ``genopt.spec.fields.FIELDS``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from genopt.errors import GenoptError
from genopt.spec.fields import ARTICLE_BEHAVIOUR, FIELD, FIELDS, FROM_THE_START, SEARCHABLE, Field, is_number


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

_NO_DEFAULT = dataclasses.MISSING


def _with_fields(fields: Iterable[tuple[str, str, Any]], **options: Any) -> Callable[[type], type]:
    """Make ``cls`` a frozen dataclass whose fields are ``(name, annotation, default)``, then its own."""

    def decorate(cls: type) -> type:
        fields_ = list(fields)
        own = dict(cls.__dict__.get("__annotations__", {}))
        cls.__annotations__ = {name: annotation for name, annotation, _ in fields_} | own
        for name, _, default in fields_:
            if default is not _NO_DEFAULT:
                setattr(cls, name, default)
        return dataclass(frozen=True, **options)(cls)

    return decorate


def _run_default(f: Field) -> Any:
    # A run config stored before a field existed lacks it, and ran the article's behaviour.
    return _NO_DEFAULT if f.article is FROM_THE_START else f.article


@_with_fields(
    [(f.name, f.annotation, _run_default(f)) for f in FIELDS if f.run]
    + [("epochs", "int", _NO_DEFAULT), ("seed", "int", _NO_DEFAULT)],
    kw_only=True,
)
class RunConfig:
    """Everything one training run needs, as plain values: what a trial builds and trains.

    Its fields are the run fields of ``FIELDS`` (``Field.run``), then ``epochs`` (the study's
    ``max_epochs``) and ``seed`` (the trial's). A field added after the article defaults to the
    article's behaviour, so ``RunConfig(**stored)`` of a run config stored before it existed still
    builds the same run.
    """


@_with_fields([(f.name, f.annotation, f.default) for f in FIELDS])
class StudySpec:
    """A study: the model and data, fixed training values, the search space and the search.

    Its fields are ``FIELDS`` in their order, then ``params``: the searched ones.
    """

    params: tuple[Param, ...] = DEFAULT_PARAMS

    @property
    def objective_name(self) -> str:
        """The metric a trial minimises, ``"fid"`` or ``"intra_fid"``, with ``"auto"`` resolved."""
        if self.objective == "auto":
            return "intra_fid" if self.model == "cgan" else "fid"
        return self.objective

    def run_config(self, params: dict[str, Any], *, seed: int) -> RunConfig:
        """The run for the sampled ``params``; unsampled fields keep the spec's fixed values."""
        values = {f.name: getattr(self, f.name) for f in FIELDS if f.run}
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

        for f in FIELDS:
            problem = f.problem(getattr(self, f.name))
            if problem:
                fail(problem)
        if self.objective == "intra_fid" and self.model != "cgan":
            fail("objective 'intra_fid' needs model 'cgan' (a gan draws no class on demand)")
        if self.min_label_accuracy is not None and self.model != "cgan":
            fail("min_label_accuracy needs model 'cgan' (a gan's images have no requested label)")
        if self.image_size is not None and self.image_size % 4:
            fail(f"image_size must be a positive multiple of 4, got {self.image_size}")
        for p in self.params:
            _validate_param(p, fail)


def _is_value(value: Any, kind: type) -> bool:
    """Whether ``value`` is of a searchable field's ``kind``; bool is a kind, never a number."""
    if kind is bool or kind is str:
        return isinstance(value, kind)
    return is_number(value, kind)


def _validate_param(p: Param, fail: Callable[[str], None]) -> None:
    field, kind = FIELD[p.name], SEARCHABLE[p.name]
    where = f"search.params.{p.name}"
    if p.choices is not None:
        if not p.choices or any(not _is_value(c, kind) for c in p.choices):
            fail(f"{where}: choices must be a non-empty list of {kind.__name__} values")
        for c in p.choices:
            problem = field.problem(c)
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
    allowed = field.range
    if allowed is not None and allowed.high is None and p.low not in allowed:
        fail(f"{where}: low must be {allowed.describe()}, got {p.low}")
    if allowed is not None and allowed.high is not None and not (p.low in allowed and p.high in allowed):
        fail(f"{where}: the range must lie in {allowed.interval()}")
