"""FID against validation: ordering of known-quality image sets, cached statistics, the math."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from genopt.data import Dataset, Split, to_model_range
from genopt.metrics import FidEvaluator, feature_cache_key, frechet_distance
from genopt.metrics.features import FEATURE_VERSION, RECIPE, RECIPES, train_feature_net
from genopt.metrics.networks import feature_network

N = 2000
REPO = Path(__file__).resolve().parents[1]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = torch.outer(kernel, kernel) / kernel.sum() ** 2
    # Pad with the background value (-1) so edges do not darken or brighten.
    padded = F.pad(images, (radius,) * 4, value=-1.0)
    return F.conv2d(padded, kernel.view(1, 1, *kernel.shape))


@pytest.fixture(scope="module")
def evaluator(mnist) -> FidEvaluator:
    return FidEvaluator(mnist)


@pytest.fixture(scope="module")
def test_images(mnist) -> torch.Tensor:
    return to_model_range(mnist.test.images[:N])


def test_fid_orders_real_blurred_and_noise(evaluator, test_images):
    real = evaluator.score_images(test_images)
    blurred = evaluator.score_images(gaussian_blur(test_images, 1.0))
    noise = evaluator.score_images(
        torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    assert 0 <= real < blurred < noise
    assert 0 <= evaluator.floor() < real  # 10k test images sit closer than 2k


def test_score_calls_sample_in_batches_with_validation_labels(mnist, evaluator, test_images):
    by_class = [to_model_range(mnist.test.images[mnist.test.labels == c]) for c in range(mnist.num_classes)]
    seen = []

    def sample(labels: torch.Tensor) -> torch.Tensor:
        # A perfect conditional "generator": a real test image of each requested class.
        seen.append(labels.cpu())
        return torch.stack([by_class[c][len(seen) * 7 + i] for i, c in enumerate(labels.tolist())])

    fid = evaluator.score(sample, 1200)
    assert all(len(batch) <= evaluator.batch_size for batch in seen)
    assert torch.equal(torch.cat(seen), evaluator.labels(1200))
    assert fid < evaluator.score_images(gaussian_blur(test_images, 1.0))


def test_new_evaluator_reuses_cached_validation_statistics(mnist, evaluator, test_images):
    first = evaluator.score_images(test_images)
    second = FidEvaluator(mnist)
    assert second.real_source == "cache"
    assert second.images_featurized == 0
    assert second.score_images(test_images) == pytest.approx(first, rel=1e-6)
    assert second.images_featurized == N  # only the generated images


def test_statistics_cached_in_the_old_pooled_format_are_featurized_again_with_one_line(
    mnist, evaluator, capsys
):
    # Caches written before one format held pooled statistics alone: the validation split's as
    # torchmetrics' FID states, the test split's as a mean and covariance. A cache holding only those
    # files is rebuilt, and says so in one line.
    expected = evaluator.reference_class_statistics("validation")
    n = int(expected.num_samples)
    old = {
        "real_features_sum": expected.mean * n,
        "real_features_cov_sum": expected.cov * (n - 1) + n * torch.outer(expected.mean, expected.mean),
        "real_features_num_samples": torch.tensor(n),
    }
    test = evaluator.reference_class_statistics("test")
    evaluator.cache.save("validation", old)
    evaluator.cache.save("test", {"mean": test.mean, "cov": test.cov})
    for split in ("validation", "test"):
        evaluator.cache.path(f"{split}-classes").unlink()
    capsys.readouterr()
    try:
        rebuilt = FidEvaluator(mnist)
        rebuilt.reference_class_statistics("test")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and "old format" in lines[0], lines
        assert rebuilt.real_source == "computed"
        stats = rebuilt.reference_class_statistics("validation")
        assert torch.allclose(stats.mean, expected.mean) and torch.allclose(stats.cov, expected.cov)
        assert FidEvaluator(mnist).real_source == "cache"
        assert capsys.readouterr().err == ""
    finally:
        for split in ("validation", "test"):
            evaluator.cache.path(split).unlink()


@pytest.mark.slow
def test_another_process_reuses_cached_statistics(evaluator):
    code = (
        "import json; from genopt.data import load_dataset; from genopt.metrics import FidEvaluator; "
        "e = FidEvaluator(load_dataset('mnist')); "
        "print(json.dumps([e.real_source, e.images_featurized, e.floor()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    source, featurized, floor = json.loads(out.stdout.strip().splitlines()[-1])
    assert (source, featurized) == ("cache", 0)
    assert floor == pytest.approx(evaluator.floor(), rel=1e-6)


def test_non_finite_images_score_nan(mnist, evaluator, test_images):
    before = evaluator.score_images(test_images)
    # The bad pixel sits in the third batch, after two batches have been fed to the metric.
    images = test_images[:1200].clone()
    images[1100, 0, 5, 5] = float("nan")
    assert math.isnan(evaluator.score_images(images))
    # Nothing of the failed score lingers: the same FID as before it, and as an evaluator that
    # reads the real statistics from disk afresh.
    after = evaluator.score_images(test_images)
    assert after == before
    assert after == pytest.approx(FidEvaluator(mnist).score_images(test_images), rel=1e-6)


def test_labels_follow_validation_class_frequencies(mnist, evaluator):
    counts = mnist.validation.class_counts(mnist.num_classes).double()
    for n in (10, 999, 5000):
        labels = evaluator.labels(n)
        assert labels.dtype == torch.int64 and len(labels) == n
        expected = counts * n / counts.sum()
        got = torch.bincount(labels, minlength=mnist.num_classes).double()
        assert (got - expected).abs().max() < 1
        assert torch.equal(labels, evaluator.labels(n))


def test_frechet_distance_closed_forms():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    mu, sigma = a.mean(0), a.T.cov()
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    expected = float((mu1 - mu2).square().sum() + (s1.sqrt() - s2.sqrt()).square().sum())
    assert frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_feature_net_is_accurate_and_keyed_by_data_and_recipe(mnist, evaluator):
    # Version 2 reads label accuracy as strictly as a small CNN can (version 1 was 98 %).
    assert evaluator.feature_version == FEATURE_VERSION == 2
    assert evaluator.validation_accuracy >= 0.993
    changed = dataclasses.replace(mnist, sha256="0" * 64)
    assert feature_cache_key(changed) != feature_cache_key(mnist)
    assert feature_cache_key(mnist, dict(RECIPE, version=-1)) != feature_cache_key(mnist)
    assert feature_cache_key(mnist, RECIPES[1]) != feature_cache_key(mnist)


def test_an_old_feature_version_is_still_built_and_an_unknown_one_refused(mnist):
    old = feature_network(mnist, version=1, device="cpu")
    assert old.version == 1 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in old.modules())
    assert 0.97 <= old.validation_accuracy < 0.993
    with pytest.raises(ValueError, match="feature network version 99 is unknown"):
        feature_network(mnist, version=99)


def _tiny(mnist, validation: torch.Tensor) -> Dataset:
    labels = mnist.train.labels[:256]
    return dataclasses.replace(
        mnist,
        train=Split(mnist.train.images[:256], labels),
        validation=Split(validation, labels[:64]),
        test=Split(validation, labels[:64]),
    )


def test_feature_net_training_is_deterministic_and_sees_train_only(mnist):
    recipe = dict(RECIPE, epochs=1)
    zeros = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    noise = torch.randint(
        0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    a = train_feature_net(_tiny(mnist, zeros), recipe=recipe, device="cpu").state_dict()
    b = train_feature_net(_tiny(mnist, noise), recipe=recipe, device="cpu").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
