"""Class-aware scores of generated samples, and the statistics they are computed from.

One pass of the feature net over a generator's samples yields features and, through the net's
classification head, predicted classes. ``SampleStatistics`` keeps what every score needs from that
pass (pooled and per-class feature moments, per-class counts of requested, correctly classified and
predicted labels), so scores against any reference split, and scores of any mixture of generators
(``genopt.ensemble.mixture.mix_sample_statistics``), follow without drawing a new sample.

The scores, all computed by small pure functions below:

* ``fid``: Fréchet distance of the pooled feature Gaussians.
* ``intra_fid`` (conditional): the mean over classes of the Fréchet distance between the features of
  the samples that *requested* class c and the reference split's images of class c (Miyato &
  Koyama 2018). Unlike pooled FID it sees a cGAN that ignores, or mixes up, its labels.
* ``label_accuracy`` (conditional): the fraction of samples the feature net classifies as the label
  they requested.
* ``class_coverage`` (unconditional): ``1 - TV(p, q) = sum_c min(p_c, q_c)``, where p is the
  histogram of the classes the net predicts for the samples and q the one it predicts for the
  reference split. 1 means the same class balance, 0 disjoint classes. The reference uses
  *predicted* rather than true labels so that the net's own confusions cancel: real images score
  about 1 whatever the net's accuracy. Total variation is bounded, symmetric and reads as "the share
  of samples that would have to change class", which a KL divergence (unbounded once a class is
  never drawn) does not.

``SCORES`` at the end of this module is the registry every other module reads: what each score is
called, whether lower or higher is better, whether it is a rate, how it is shown, which generators it
applies to, and how it is computed. Adding a score is its function, its ``Scores`` field and one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from genopt.metrics.frechet import finite_or_nan, safe_frechet_distance


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
    """

    fid: float
    intra_fid: float | None = None
    label_accuracy: float | None = None
    class_coverage: float | None = None

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


@dataclass
class SampleStatistics:
    """What a featurization pass keeps of a sample: enough to score it, or a mixture, later.

    Moments are float64 on the CPU; covariances use the unbiased (n - 1) normalisation of
    torchmetrics' FID. Counts are float64 too, because a mixture's are weighted sums.

    Attributes:
        mean: pooled feature mean, (D,).
        cov: pooled feature covariance, (D, D).
        class_mean: feature mean of the samples that requested each class, (K, D); NaN for a class
            never requested.
        class_cov: their covariance, (K, D, D); NaN for a class requested fewer than twice.
        class_counts: samples that requested each class, (K,).
        correct: of those, how many the feature net classifies as the requested class, (K,).
        predicted: how many samples the feature net assigns to each class, (K,).
        conditional: whether the generator draws the class it is asked for; only then do
            ``intra_fid`` and ``label_accuracy`` mean anything.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    class_mean: torch.Tensor
    class_cov: torch.Tensor
    class_counts: torch.Tensor
    correct: torch.Tensor
    predicted: torch.Tensor
    conditional: bool

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def num_samples(self) -> float:
        return float(self.class_counts.sum())

    @property
    def predicted_histogram(self) -> torch.Tensor:
        """Fraction of samples assigned to each class by the feature net, (K,), summing to 1."""
        return self.predicted / self.predicted.sum()

    def to_dict(self) -> dict[str, torch.Tensor | bool]:
        """Plain tensors and a bool: loadable by ``torch.load(weights_only=True)``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, saved: dict) -> SampleStatistics:
        return cls(**{f.name: saved[f.name] for f in fields(cls)})


class MomentSums:
    """Float64 running sums of features, per class and pooled, fed one feature-net batch at a time.

    The pooled sums are updated with exactly torchmetrics' FID operations, so the pooled moments
    equal, bit for bit, those its ``FrechetInceptionDistance`` accumulates from the same batches.
    Per-class sums sort each batch by class and take one matrix product per class: a loop over
    the K classes, never over samples, and deterministic on every device (no atomic adds).

    Args:
        num_classes: K; every label must lie in [0, K).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.count = 0
        self.total: torch.Tensor | None = None

    def _allocate(self, dim: int, device: torch.device) -> None:
        k, f64 = self.num_classes, torch.float64
        self.total = torch.zeros(dim, dtype=f64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=f64, device=device)
        self.class_total = torch.zeros(k, dim, dtype=f64, device=device)
        self.class_outer = torch.zeros(k, dim, dim, dtype=f64, device=device)
        self.class_counts = torch.zeros(k, dtype=torch.int64, device=device)
        self.correct = torch.zeros(k, dtype=torch.int64, device=device)
        self.predicted = torch.zeros(k, dtype=torch.int64, device=device)

    def update(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: features (N, D), the head's logits (N, K), requested labels (N,)."""
        k = self.num_classes
        if features.dim() != 2 or logits.shape != (len(features), k) or labels.shape != (len(features),):
            raise ValueError(
                f"need features (N, D), logits (N, {k}) and labels (N,), got {tuple(features.shape)}, "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        labels = labels.to(features.device, torch.int64)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(f"labels must lie in [0, {k}), got {int(labels.min())}..{int(labels.max())}")
        if self.total is None:
            self._allocate(features.shape[1], features.device)
        f = features.double()
        self.total += f.sum(dim=0)
        self.outer += f.t().mm(f)
        self.count += len(f)
        counts = torch.bincount(labels, minlength=k)
        self.class_counts += counts
        by_class = f[torch.argsort(labels, stable=True)].split(counts.tolist())
        for c, chunk in enumerate(by_class):
            if len(chunk):
                self.class_total[c] += chunk.sum(dim=0)
                self.class_outer[c] += chunk.t().mm(chunk)
        guess = logits.argmax(dim=1)
        self.predicted += torch.bincount(guess, minlength=k)
        self.correct += torch.bincount(labels[guess == labels], minlength=k)

    def result(self, *, conditional: bool, correction: int = 1) -> SampleStatistics:
        """The moments so far, on the CPU.

        Args:
            conditional: recorded in the result.
            correction: 1 for unbiased covariances (torchmetrics', used for every score); 0 for
                biased ones, which pool exactly and so make mixture arithmetic testable exactly.
        """
        if self.total is None or self.count < 2:
            raise ValueError(f"need at least 2 samples, got {self.count}")
        n = self.count
        # The same formulas as torchmetrics' FrechetInceptionDistance.compute, in float64.
        mean = self.total.cpu() / n
        cov = (self.outer.cpu() - n * torch.outer(mean, mean)) / (n - correction)
        counts = self.class_counts.cpu().double()
        class_mean = self.class_total.cpu() / counts[:, None]
        centred = (
            self.class_outer.cpu() - counts[:, None, None] * class_mean[:, :, None] * class_mean[:, None, :]
        )
        # A class with fewer than correction + 1 samples has no covariance: NaN, not inf.
        denominator = (counts - correction).where(counts > correction, torch.nan)
        class_cov = centred / denominator[:, None, None]
        return SampleStatistics(
            mean=mean,
            cov=cov,
            class_mean=class_mean,
            class_cov=class_cov,
            class_counts=counts,
            correct=self.correct.cpu().double(),
            predicted=self.predicted.cpu().double(),
            conditional=conditional,
        )


def statistics_from_features(
    features: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    conditional: bool,
    correction: int = 1,
) -> SampleStatistics:
    """``SampleStatistics`` of one tensor of features (N, D), logits (N, K) and requested labels (N,)."""
    sums = MomentSums(logits.shape[1])
    sums.update(features, logits, labels)
    return sums.result(conditional=conditional, correction=correction)


def label_accuracy(stats: SampleStatistics) -> float:
    """Fraction of samples the feature net classifies as the class they requested."""
    return finite_or_nan(float(stats.correct.sum() / stats.class_counts.sum()))


def intra_fid(stats: SampleStatistics, reference: SampleStatistics) -> float:
    """Mean over classes of the FID between samples that requested class c and reference class c.

    NaN when any class has no covariance (fewer than two samples requested it): an average over
    the classes present would reward a generator for never being asked for the hard ones.
    """
    if stats.num_classes != reference.num_classes:
        raise ValueError(f"{stats.num_classes} classes against a reference of {reference.num_classes}")
    per_class = class_frechet_distances(stats, reference)
    return finite_or_nan(math.fsum(per_class) / len(per_class))


def class_frechet_distances(stats: SampleStatistics, reference: SampleStatistics) -> list[float]:
    """Per-class Fréchet distances between two statistics' class Gaussians, NaN where undefined."""
    return [
        safe_frechet_distance(
            stats.class_mean[c], stats.class_cov[c], reference.class_mean[c], reference.class_cov[c]
        )
        for c in range(stats.num_classes)
    ]


def class_coverage(stats: SampleStatistics, reference: SampleStatistics) -> float:
    """``1 - TV`` between predicted-class histograms: 1 same balance, 0 disjoint classes."""
    p, q = stats.predicted_histogram, reference.predicted_histogram
    return finite_or_nan(float(torch.minimum(p, q).sum()))


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
}
