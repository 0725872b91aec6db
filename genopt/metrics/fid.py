"""FID of generated images against the validation split, in the feature net's 128-d features.

The metric itself is torchmetrics' ``FrechetInceptionDistance`` with our ``FeatureNet`` in place of
Inception. Its real statistics (validation) are computed once per dataset and feature net and kept
on disk, so every trial in every process only pays for featurizing its own samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from genopt import paths
from genopt.data import Dataset, to_model_range
from genopt.metrics.features import atomic_save, feature_network
from genopt.train import default_device

_REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
# Part of the statistics' cache key: bump it when the feature computation changes numerically (2: the
# feature net's channels-last forward, equal to version 1's within float rounding) so cached
# reference statistics always come from the forward pass that featurizes the generated images.
STATISTICS_VERSION = 2
# Fixed so that labels(n) is the same list in every process and every trial.
_LABEL_SEED = 0


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``Tr(sqrt(sigma1 @ sigma2))`` is the sum of the square roots of the product's eigenvalues, as in
    torchmetrics, which avoids scipy's ``sqrtm``.

    Args:
        mu1: mean, shape (D,); a tensor or anything ``torch.as_tensor`` takes.
        sigma1: covariance, shape (D, D).
        mu2: mean, shape (D,).
        sigma2: covariance, shape (D, D).

    Returns:
        ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.
    """
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a).double() for a in (mu1, sigma1, mu2, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"sigma {tuple(sigma1.shape)}, {tuple(sigma2.shape)}"
        )
    mean_term = (mu1 - mu2).square().sum()
    sqrt_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float(mean_term + sigma1.trace() + sigma2.trace() - 2 * sqrt_trace)


def class_allocation(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Split n among classes in proportion to ``counts`` by largest remainder (ties to lower class)."""
    quotas = counts.double() * n / counts.sum()
    allocation = quotas.floor().long()
    short = n - int(allocation.sum())
    # Stable sort keeps ties in class order, so the allocation is the same everywhere.
    order = torch.sort(quotas - allocation, descending=True, stable=True).indices
    allocation[order[:short]] += 1
    return allocation


class FidEvaluator:
    """Scores generators by FID against the dataset's validation split.

    Args:
        dataset: the data; the feature net is trained on its train split, FID is measured against
            its validation split, and ``floor()`` uses its test split.
        device: where features are computed; CUDA when available by default.
        batch_size: images per call to ``sample`` and per feature-net batch.

    Attributes:
        real_source: ``"computed"`` when this evaluator featurized the validation split,
            ``"cache"`` when it loaded the statistics from disk.
        images_featurized: images this evaluator has passed through the feature net.
        validation_accuracy: the feature net's accuracy on the validation split.
    """

    def __init__(self, dataset: Dataset, *, device: str | torch.device | None = None, batch_size: int = 500):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.device = default_device(device)
        self.batch_size = batch_size
        self.feature_net = feature_network(dataset, device=self.device)
        self.validation_accuracy: float = self.feature_net.validation_accuracy
        self.metric = FrechetInceptionDistance(feature=self.feature_net, reset_real_features=False)
        self.metric.to(self.device)
        self.images_featurized = 0
        folder = paths.cache_dir() / "fid"
        key = f"{dataset.sha256[:16]}-{self.feature_net.cache_key}-{STATISTICS_VERSION}"
        self._real_path = folder / f"{key}-validation.pt"
        self._floor_path = folder / f"{key}-floor.pt"
        self._test_path = folder / f"{key}-test.pt"
        self._test_statistics: tuple[torch.Tensor, torch.Tensor] | None = None
        self.real_source = self._load_real()

    # -- real statistics ------------------------------------------------------------------------

    def _load_real(self) -> str:
        if self._real_path.exists():
            saved = torch.load(self._real_path, map_location="cpu", weights_only=True)
            for name in _REAL_STATES:
                setattr(self.metric, name, saved[name].to(self.device))
            return "cache"
        self._feed(self._batches(to_model_range(self.dataset.validation.images)), real=True)
        atomic_save({name: getattr(self.metric, name).cpu() for name in _REAL_STATES}, self._real_path)
        return "computed"

    # -- feeding the metric ---------------------------------------------------------------------

    def _batches(self, images: torch.Tensor) -> Iterable[torch.Tensor]:
        return (images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size))

    def _generated(self, sample: Callable[[torch.Tensor], torch.Tensor], n: int) -> Iterable[torch.Tensor]:
        """n images from ``sample``, in batches of ``batch_size`` labels following ``labels(n)``."""
        if n < 2:
            raise ValueError(f"FID needs at least 2 generated images, got n={n}")
        labels = self.labels(n).to(self.device)

        def batches() -> Iterable[torch.Tensor]:
            for i in range(0, n, self.batch_size):
                chunk = labels[i : i + self.batch_size]
                with torch.no_grad():
                    images = sample(chunk)
                if len(images) != len(chunk):
                    raise ValueError(f"sample returned {len(images)} images for {len(chunk)} labels")
                yield images

        return batches()

    @torch.no_grad()
    def _feed(self, batches: Iterable[torch.Tensor], *, real: bool) -> bool:
        """Update the metric; False as soon as a batch holds a non-finite pixel."""
        expected = self.dataset.image_shape
        for images in batches:
            if images.dim() != 4 or tuple(images.shape[1:]) != expected:
                raise ValueError(
                    f"images must be (N, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
                )
            images = images.to(self.device, torch.float32)
            if not torch.isfinite(images).all():
                return False
            self.metric.update(images, real=real)
            self.images_featurized += len(images)
        return True

    def _score(self, batches: Iterable[torch.Tensor]) -> float:
        self.metric.reset()  # keeps the real statistics: reset_real_features=False
        try:
            if not self._feed(batches, real=False):
                return float("nan")
            if int(self.metric.fake_features_num_samples) < 2:
                raise ValueError("FID needs at least 2 generated images")
            value = float(self.metric.compute())
        finally:
            self.metric.reset()
        return value if math.isfinite(value) else float("nan")

    # -- public API -----------------------------------------------------------------------------

    def labels(self, n: int) -> torch.Tensor:
        """n class labels in the validation split's class proportions (largest remainder).

        The same n always gives the same labels in the same (seeded, shuffled) order, so any prefix
        is also close to balanced.
        """
        counts = self.dataset.validation.class_counts(self.dataset.num_classes)
        allocation = class_allocation(counts, n)
        labels = torch.repeat_interleave(torch.arange(len(allocation)), allocation)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_LABEL_SEED))
        return labels[order]

    def score(self, sample: Callable[[torch.Tensor], torch.Tensor], n: int) -> float:
        """FID of n generated images against the validation split.

        Args:
            sample: maps a LongTensor of labels (on the evaluator's device) to images in [-1, 1]
                of shape (len(labels), C, H, W); an unconditional generator ignores the labels.
                It is called under ``torch.no_grad`` with at most ``batch_size`` labels.
            n: how many images to generate, at least 2.

        Returns:
            The FID, or NaN when a generated image holds a non-finite pixel.
        """
        return self._score(self._generated(sample, n))

    def score_images(self, images: torch.Tensor) -> float:
        """FID of a tensor of images in [-1, 1], shape (N, C, H, W), against the validation split."""
        return self._score(self._batches(images))

    def statistics(
        self, sample: Callable[[torch.Tensor], torch.Tensor], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature mean and covariance (float64, CPU) of n generated images, drawn as ``score`` does.

        ``fid_of_statistics`` of the result equals ``score(sample, n)`` for the same draws, and
        statistics of several generators combine into those of their mixture without new samples.

        Raises:
            ValueError: n < 2, or a generated image holds a non-finite pixel.
        """
        batches = self._generated(sample, n)
        self.metric.reset()
        try:
            if not self._feed(batches, real=False):
                raise ValueError("a generated image holds a non-finite pixel")
            return self._moments("fake")
        finally:
            self.metric.reset()

    def _moments(self, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        # The same formulas as torchmetrics' FrechetInceptionDistance.compute, in float64.
        total = getattr(self.metric, f"{side}_features_sum").double().cpu()
        cov_sum = getattr(self.metric, f"{side}_features_cov_sum").double().cpu()
        n = int(getattr(self.metric, f"{side}_features_num_samples"))
        mean = total / n
        return mean, (cov_sum - n * torch.outer(mean, mean)) / (n - 1)

    def reference_statistics(self, split: str = "validation") -> tuple[torch.Tensor, torch.Tensor]:
        """Feature mean and covariance of the ``validation`` or ``test`` split; the test's cached too.

        The test split is for reporting only: nothing that chooses a model may look at it.
        """
        if split == "validation":
            return self._moments("real")
        if split != "test":
            raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
        if self._test_statistics is None:
            if self._test_path.exists():
                saved = torch.load(self._test_path, weights_only=True)
                self._test_statistics = (saved["mean"], saved["cov"])
            else:
                self.metric.reset()
                try:
                    self._feed(self._batches(to_model_range(self.dataset.test.images)), real=False)
                    self._test_statistics = self._moments("fake")
                finally:
                    self.metric.reset()
                mean, cov = self._test_statistics
                atomic_save({"mean": mean, "cov": cov}, self._test_path)
        return self._test_statistics

    def fid_of_statistics(self, mean: torch.Tensor, cov: torch.Tensor, *, split: str = "validation") -> float:
        """FID of generated-feature statistics against the ``validation`` (default) or ``test`` split."""
        value = frechet_distance(mean, cov, *self.reference_statistics(split))
        return value if math.isfinite(value) else float("nan")

    def floor(self) -> float:
        """FID of the whole test split against validation: what two real samples give. Cached."""
        if self._floor_path.exists():
            return float(torch.load(self._floor_path, weights_only=True)["fid"])
        value = self.score_images(to_model_range(self.dataset.test.images))
        atomic_save({"fid": value}, self._floor_path)
        return value
