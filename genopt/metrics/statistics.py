"""Moment statistics of a featurized sample: what every score, and every mixture's score, is computed from.

One pass of the feature net over a generator's samples yields features and, through the net's
classification head, predicted classes. ``SampleStatistics`` keeps what every score needs from that
pass (pooled and per-class feature moments, per-class counts of requested, correctly classified and
predicted labels), so scores against any reference split, and scores of any mixture of generators
(``genopt.ensemble.mixture.mix_sample_statistics``), follow without drawing a new sample.
``MomentSums`` is the one accumulator behind them all: generated samples, the real splits' cached
reference statistics and the floors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# A sample is "unsure" when the feature net's top class probability is below this: a stroke that
# reads as no digit, or as two. Real validation digits give the share's floor.
UNSURE_BELOW = 0.9


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
        unsure: of those, how many it assigns with a top probability under ``UNSURE_BELOW``, (K,);
            NaN in statistics saved before genopt counted them.
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
    unsure: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.unsure is None:
            self.unsure = torch.full_like(self.predicted, torch.nan, dtype=torch.float64)

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
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


class MomentSums:
    """Float64 running sums of features, per class and pooled, fed one feature-net batch at a time.

    The pooled sums are updated with exactly torchmetrics' FID operations, so the pooled moments
    equal, bit for bit, those its ``FrechetInceptionDistance`` accumulates from the same batches
    (genopt scored with it once; docs/scoring.md says why it no longer does).
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
        self.unsure = torch.zeros(k, dtype=torch.int64, device=device)

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
        top, guess = logits.float().softmax(dim=1).max(dim=1)
        self.predicted += torch.bincount(guess, minlength=k)
        self.unsure += torch.bincount(guess[top < UNSURE_BELOW], minlength=k)
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
            unsure=self.unsure.cpu().double(),
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
