"""The scores: the registry of what each one is, and the record of one sample's values.

``SCORES`` is the registry every other module reads: what each score is called, whether lower or
higher is better, whether it is a rate, how it is shown, which generators it applies to, and how it
is computed (``genopt.metrics.class_aware`` holds the class-aware functions; pooled FID is the
evaluator's). ``Scores`` holds one sample's values, one field per registry entry, and
``class_scores`` fills it from a sample's statistics and a reference split's. Adding a score is its
function, its ``Scores`` field and one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

from genopt.metrics.class_aware import class_coverage, intra_fid, label_accuracy, unsure_share
from genopt.metrics.statistics import SampleStatistics


@dataclass(frozen=True)
class Scores:
    """Every score of one sample; a score that does not apply to the generator is None.

    Unlabelled data (``Dataset.labelled`` False) have ``fid`` alone: with one class and no class
    names, intra-FID, label accuracy and class coverage mean nothing.

    Attributes:
        fid: pooled FID; NaN when a sample held a non-finite pixel.
        intra_fid: mean per-class FID, for a conditional generator.
        label_accuracy: fraction classified as requested, for a conditional generator.
        class_coverage: ``1 - TV`` of predicted-class histograms, for an unconditional generator.
        unsure_share: fraction the feature net classifies with a top probability under 0.9, for an
            unconditional generator.
    """

    fid: float
    intra_fid: float | None = None
    label_accuracy: float | None = None
    class_coverage: float | None = None
    unsure_share: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The scores that apply, by name, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def get(self, name: str) -> float:
        """The score called ``name``.

        Raises:
            KeyError: no score has that name.
            ValueError: the score does not apply to this generator (it is None).
        """
        if name not in {f.name for f in fields(self)}:
            raise KeyError(f"no score named {name!r}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} does not apply to this generator")
        return value

    @classmethod
    def diverged(cls, *, conditional: bool, labelled: bool = True) -> Scores:
        """NaN for every score that applies: what a sample with a non-finite pixel gets.

        Unlabelled data (one class, no class scores) get NaN for ``fid`` alone.
        """
        if not labelled:
            return cls(fid=math.nan)
        return cls(**{name: math.nan for name, score in SCORES.items() if score.applies(conditional)})


def class_scores(stats: SampleStatistics, reference: SampleStatistics, *, fid: float) -> Scores:
    """The ``Scores`` of ``stats`` against a reference split, given the pooled ``fid`` already."""
    values = {
        name: score.compute(stats, reference)
        for name, score in SCORES.items()
        if score.compute is not None and score.applies(stats.conditional)
    }
    return Scores(fid=fid, **values)


# -- the registry ---------------------------------------------------------------------------------

DIRECTIONS = ("minimize", "maximize")
APPLIES_TO = ("any", "conditional", "unconditional")


@dataclass(frozen=True)
class ScoreInfo:
    """What a score is to everyone who shows, stores or optimises it.

    Attributes:
        label: its column label in progress lines, summaries, the report and ``genopt ensemble``.
        direction: ``minimize`` (lower is better) or ``maximize``.
        rate: a fraction in [0, 1] rather than a distance.
        format_spec: how a value is shown, e.g. ``.2f``.
        applies_to: ``any`` generator, or only a ``conditional`` or an ``unconditional`` one; a
            score that does not apply is None in ``Scores``.
        compute: the score of a sample's statistics against a reference split's; None for ``fid``,
            which the evaluator computes against its pooled reference moments.
    """

    label: str
    direction: str
    rate: bool
    format_spec: str
    applies_to: str = "any"
    compute: Callable[[SampleStatistics, SampleStatistics], float] | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS or self.applies_to not in APPLIES_TO:
            raise ValueError(f"bad direction {self.direction!r} or applies_to {self.applies_to!r}")

    def applies(self, conditional: bool) -> bool:
        """Whether the score means anything for a (``conditional``) generator."""
        return self.applies_to == "any" or (self.applies_to == "conditional") == conditional

    def format(self, value: float) -> str:
        """``value`` as tables and lines show it."""
        return format(value, self.format_spec)

    def loss(self, value: float) -> float:
        """``value`` as something to minimise: negated when higher is better; NaN (and inf) worst."""
        if not math.isfinite(value):
            return math.inf
        return value if self.direction == "minimize" else -value


# In the order lines and tables show them.
SCORES: dict[str, ScoreInfo] = {
    "fid": ScoreInfo("FID", "minimize", rate=False, format_spec=".2f"),
    "intra_fid": ScoreInfo(
        "intra-FID", "minimize", rate=False, format_spec=".2f", applies_to="conditional", compute=intra_fid
    ),
    "label_accuracy": ScoreInfo(
        "label acc",
        "maximize",
        rate=True,
        format_spec=".3f",
        applies_to="conditional",
        compute=lambda stats, _reference: label_accuracy(stats),
    ),
    "class_coverage": ScoreInfo(
        "coverage",
        "maximize",
        rate=True,
        format_spec=".3f",
        applies_to="unconditional",
        compute=class_coverage,
    ),
    "unsure_share": ScoreInfo(
        "unsure",
        "minimize",
        rate=True,
        format_spec=".3f",
        applies_to="unconditional",
        compute=lambda stats, _reference: unsure_share(stats),
    ),
}
