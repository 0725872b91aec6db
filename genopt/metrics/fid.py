"""FID and class-aware scores of generated images against the validation split, in the feature net's
128-d features.

One forward pass of our ``FeatureNet`` per batch feeds ``MomentSums`` (``genopt.metrics.statistics``)
with the features and, through the net's classification head, the predicted classes. Pooled FID is
the Fréchet distance of the pooled moments; ``scores_of`` derives intra-FID, label accuracy and class
coverage from the per-class ones (``genopt.metrics.class_aware``).
Unlabelled data (``Dataset.labelled`` False) get FID alone: their feature net learnt rotations, not
classes (``genopt.metrics.features``), and with a single class no class score means anything.
Real statistics are computed once per dataset and feature net and kept on disk
(``genopt.metrics.reference``), so every trial in every process only pays for its own samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from genopt.data import Dataset, to_model_range
from genopt.device import default_device
from genopt.metrics.class_aware import intra_fid, unsure_share
from genopt.metrics.features import FEATURE_VERSION, FeatureNet
from genopt.metrics.frechet import finite_or_nan, frechet_distance
from genopt.metrics.labels import evaluation_labels
from genopt.metrics.networks import feature_network
from genopt.metrics.reference import ReferenceCache
from genopt.metrics.scores import Scores, class_scores
from genopt.metrics.statistics import MomentSums, SampleStatistics

__all__ = ["EVAL_NOISE_SEED", "FidEvaluator", "NonFiniteImageError"]

Sampler = Callable[[torch.Tensor], torch.Tensor]
_SPLITS = ("validation", "test")
# Fixed noise for every evaluation of a generator, so epochs, trials and ensembles are scored on the
# same draws (drawn on the CPU: the same on every device).
EVAL_NOISE_SEED = 12345


class NonFiniteImageError(ValueError):
    """A generated image holds a non-finite pixel: the generator diverged."""


class FidEvaluator:
    """Scores generators against the dataset's validation split: FID and class-aware scores.

    Args:
        dataset: the data; the feature net is trained on its train split, scores are measured
            against its validation split, and the floors use its test split.
        device: where features are computed; CUDA when available by default.
        batch_size: images per call to ``sample`` and per feature-net batch.
        feature_version: the feature net's recipe (``genopt.metrics.features.RECIPES``), when no
            ``feature_net`` is given: the shipped network of that recipe for MNIST and
            Fashion-MNIST, else this machine's (``genopt.metrics.networks.feature_network``).
        feature_net: the network to score with: a study's own
            (``genopt.study.artifacts.feature_net.study_network``).

    Attributes:
        real_source: ``"computed"`` when this evaluator featurized the validation split,
            ``"cache"`` when it loaded the statistics from disk.
        images_featurized: images this evaluator has passed through the feature net.
        validation_accuracy: the feature net's accuracy on the validation split: at its classes,
            or, for unlabelled data, at telling an image's rotation (chance 0.25).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 500,
        feature_version: int = FEATURE_VERSION,
        feature_net: FeatureNet | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.device = default_device(device)
        self.batch_size = batch_size
        if feature_net is None:
            feature_net = feature_network(dataset, version=feature_version, device=self.device)
        self.feature_net = feature_net.to(self.device)
        self.feature_version = self.feature_net.version
        self.validation_accuracy: float = self.feature_net.validation_accuracy
        self.images_featurized = 0
        self.cache = ReferenceCache(dataset, self.feature_net.cache_key)
        self._reference: dict[str, SampleStatistics] = {}
        self.reference_class_statistics("validation")  # every score needs it: load or compute it now
        self.real_source = "computed" if self.images_featurized else "cache"

    # -- featurizing ------------------------------------------------------------------------------

    def _split_images(self, split: str) -> torch.Tensor:
        return to_model_range(getattr(self.dataset, split).images)

    def _batches(self, images: torch.Tensor) -> Iterable[torch.Tensor]:
        return (images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size))

    def _labelled(self, sample: Sampler, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(labels, images) batches: n images from ``sample``, asked for ``labels(n)`` in order."""
        if n < 2:
            raise ValueError(f"FID needs at least 2 generated images, got n={n}")
        labels = self.labels(n).to(self.device)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i in range(0, n, self.batch_size):
                chunk = labels[i : i + self.batch_size]
                with torch.no_grad():
                    images = sample(chunk)
                if len(images) != len(chunk):
                    raise ValueError(f"sample returned {len(images)} images for {len(chunk)} labels")
                yield chunk, images

        return batches()

    def _checked(self, images: torch.Tensor) -> torch.Tensor | None:
        """``images`` on the device as float32; None when one holds a non-finite pixel."""
        expected = self.dataset.image_shape
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (N, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        images = images.to(self.device, torch.float32)
        return images if bool(torch.isfinite(images).all()) else None

    def _class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) of features: the head's for labelled data.

        Unlabelled data have one class (every label 0) and a head that predicts rotations, not
        classes, so each image is "predicted" as class 0 by one constant logit: the per-class moments
        are then the pooled ones and the counts trivial, and no class score reads them.
        """
        if self.dataset.labelled:
            return self.feature_net.head(features)
        return features.new_zeros(len(features), self.dataset.num_classes)

    @torch.no_grad()
    def _sums(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> MomentSums:
        """One feature-net forward per batch; logits are the head applied to those very features."""
        sums = MomentSums(self.dataset.num_classes)
        for labels, images in batches:
            images = self._checked(images)
            if images is None:
                raise NonFiniteImageError("a generated image holds a non-finite pixel")
            features = self.feature_net(images)
            sums.update(features, self._class_logits(features), labels)
            self.images_featurized += len(images)
        return sums

    def _score(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Pooled FID of (labels, images) batches against validation; NaN for a non-finite pixel."""
        try:
            stats = self._sums(batches).result(conditional=False)
        except NonFiniteImageError:
            return float("nan")
        return self.fid_of_statistics(stats.mean, stats.cov)

    # -- generated samples ------------------------------------------------------------------------

    def labels(self, n: int) -> torch.Tensor:
        """n class labels in the validation split's class proportions (largest remainder).

        The same n always gives the same labels in the same (seeded, shuffled) order, so any prefix
        is also close to balanced.
        """
        return evaluation_labels(self.dataset.validation.class_counts(self.dataset.num_classes), n)

    def score(self, sample: Sampler, n: int) -> float:
        """FID of n generated images against the validation split.

        Args:
            sample: maps a LongTensor of labels (on the evaluator's device) to images in [-1, 1]
                of shape (len(labels), C, H, W); an unconditional generator ignores the labels.
                It is called under ``torch.no_grad`` with at most ``batch_size`` labels.
            n: how many images to generate, at least 2.

        Returns:
            The FID, or NaN when a generated image holds a non-finite pixel.
        """
        return self._score(self._labelled(sample, n))

    def score_images(self, images: torch.Tensor) -> float:
        """FID of a tensor of images in [-1, 1], shape (N, C, H, W), against the validation split."""
        labels = torch.zeros(len(images), dtype=torch.int64).split(self.batch_size)
        return self._score(zip(labels, self._batches(images), strict=True))

    def sample_statistics(self, sample: Sampler, n: int, *, conditional: bool) -> SampleStatistics:
        """Everything any score needs of n generated images, drawn as ``score`` draws them.

        One feature-net forward per batch gives both the features and (through the head) the
        predicted classes. The pooled moments equal those behind ``score`` bit for bit; the whole
        result combines into a mixture's without new samples (``mix_sample_statistics``).

        Args:
            sample: as for ``score``.
            n: how many images to generate, at least 2 (and two per class for intra-FID).
            conditional: whether ``sample`` draws the class it is asked for.

        Raises:
            NonFiniteImageError: a generated image holds a non-finite pixel (a ``ValueError``).
            ValueError: n < 2, or ``sample`` returned the wrong number or shape of images.
        """
        return self._sums(self._labelled(sample, n)).result(conditional=conditional)

    def statistics(self, sample: Sampler, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled feature mean and covariance (float64, CPU) of n generated images, as ``score`` draws.

        ``fid_of_statistics`` of the result equals ``score(sample, n)`` for the same draws, and
        statistics of several generators combine into those of their mixture without new samples.

        Raises:
            ValueError: n < 2, or a generated image holds a non-finite pixel.
        """
        stats = self.sample_statistics(sample, n, conditional=False)
        return stats.mean, stats.cov

    def scores_of(self, stats: SampleStatistics, *, split: str = "validation") -> Scores:
        """Scores of ``stats`` against the ``validation`` (default) or ``test`` split.

        ``fid`` is ``fid_of_statistics(stats.mean, stats.cov)``; ``intra_fid`` and
        ``label_accuracy`` come with a conditional ``stats``, ``class_coverage`` with an
        unconditional one, and none of them with unlabelled data. Non-finite values are NaN.
        """
        fid = self.fid_of_statistics(stats.mean, stats.cov, split=split)
        if not self.dataset.labelled:
            return Scores(fid=fid)
        return class_scores(stats, self.reference_class_statistics(split), fid=fid)

    def evaluate(self, sample: Sampler, n: int, *, conditional: bool) -> Scores:
        """Every score of n generated images in one featurization pass: ``scores_of(sample_statistics)``.

        Returns:
            The scores against the validation split; NaN for every score that applies when a
            generated image holds a non-finite pixel (a diverged generator), rather than raising.
        """
        try:
            stats = self.sample_statistics(sample, n, conditional=conditional)
        except NonFiniteImageError:
            return Scores.diverged(conditional=conditional, labelled=self.dataset.labelled)
        return self.scores_of(stats)

    # -- real statistics --------------------------------------------------------------------------

    def _split_statistics(self, split: str) -> SampleStatistics:
        """A split's statistics, each image "requesting" its true label."""
        labels = getattr(self.dataset, split).labels.split(self.batch_size)
        return self._sums(zip(labels, self._batches(self._split_images(split)), strict=True)).result(
            conditional=True
        )

    def _check_split(self, split: str) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be 'validation' or 'test', got {split!r}")

    def reference_statistics(self, split: str = "validation") -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled feature mean and covariance of the ``validation`` or ``test`` split.

        The test split is for reporting only: nothing that chooses a model may look at it.
        """
        stats = self.reference_class_statistics(split)
        return stats.mean, stats.cov

    def reference_class_statistics(self, split: str = "validation") -> SampleStatistics:
        """``SampleStatistics`` of the ``validation`` or ``test`` split by true label; cached on disk.

        Its pooled moments are the reference for FID, its class moments for intra-FID and its
        ``predicted_histogram`` for ``class_coverage``: one pass over the split, one file.
        """
        self._check_split(split)
        if split not in self._reference:
            saved = self.cache.get(f"{split}-classes", lambda: self._split_statistics(split).to_dict())
            self._reference[split] = SampleStatistics.from_dict(saved)
        return self._reference[split]

    def fid_of_statistics(self, mean: torch.Tensor, cov: torch.Tensor, *, split: str = "validation") -> float:
        """FID of generated-feature statistics against the ``validation`` (default) or ``test`` split."""
        return finite_or_nan(frechet_distance(mean, cov, *self.reference_statistics(split)))

    def floor(self) -> float:
        """FID of the whole test split against validation: what two real samples give. Cached."""
        saved = self.cache.get(
            "floor", lambda: {"fid": self.fid_of_statistics(*self.reference_statistics("test"))}
        )
        return float(saved["fid"])

    def unsure_floor(self) -> float:
        """The unsure share of the validation split's real images: the floor of ``unsure_share``."""
        return unsure_share(self.reference_class_statistics("validation"))

    def intra_floor(self) -> float:
        """Intra-FID of the test split against validation, class by class: the real-data floor. Cached.

        Raises:
            ValueError: the data are unlabelled: intra-FID does not apply to them.
        """
        if not self.dataset.labelled:
            raise ValueError(f"{self.dataset.name} is unlabelled: it has no intra-FID, nor a floor for one")
        saved = self.cache.get(
            "intra-floor",
            lambda: {
                "intra_fid": intra_fid(
                    self.reference_class_statistics("test"), self.reference_class_statistics("validation")
                )
            },
        )
        return float(saved["intra_fid"])
