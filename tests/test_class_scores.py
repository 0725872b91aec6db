"""Class-aware scores: intra-FID, label accuracy, class coverage and the unsure share in one
featurization pass, and statistics that mix exactly for mixtures of generators."""

from __future__ import annotations

import math

import pytest
import torch

from genopt.data import to_model_range
from genopt.ensemble.mixture import greedy_mixture, mix_sample_statistics, mixture_statistics
from genopt.metrics import (
    FidEvaluator,
    NonFiniteImageError,
    SampleStatistics,
    Scores,
    class_coverage,
    intra_fid,
    statistics_from_features,
    unsure_share,
)
from genopt.metrics.statistics import MomentSums

N = 2000


@pytest.fixture(scope="module")
def evaluator(mnist) -> FidEvaluator:
    return FidEvaluator(mnist)


def real_sampler(split, *, seed: int, faithful: bool, only: int | None = None):
    """Real images of ``split``: of the requested class (``faithful``), of random classes, or of ``only``."""
    images, labels = to_model_range(split.images), split.labels
    by_class = [torch.nonzero(labels == c).squeeze(1) for c in range(int(labels.max()) + 1)]
    gen = torch.Generator().manual_seed(seed)

    def sample(requested: torch.Tensor) -> torch.Tensor:
        requested = requested.cpu()
        if not faithful:
            pool = torch.arange(len(labels)) if only is None else by_class[only]
            return images[pool[torch.randint(len(pool), (len(requested),), generator=gen)]]
        chosen = torch.empty(len(requested), dtype=torch.int64)
        for c, pool in enumerate(by_class):
            wanted = requested == c
            chosen[wanted] = pool[torch.randint(len(pool), (int(wanted.sum()),), generator=gen)]
        return images[chosen]

    return sample


def synthetic(n: int, *, num_classes: int = 3, dim: int = 5, seed: int = 0, shift: float = 0.0):
    """Features, logits and requested labels (each class equally often) with known answers."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    features = torch.randn(n, dim, generator=gen, dtype=torch.float64) + labels[:, None] * 2.0 + shift
    logits = torch.randn(n, num_classes, generator=gen) + 2.0 * torch.nn.functional.one_hot(
        labels, num_classes
    )
    return features, logits, labels


def assert_same(a: SampleStatistics, b: SampleStatistics) -> None:
    assert a.conditional == b.conditional
    for name in ("mean", "cov", "class_mean", "class_cov", "class_counts", "correct", "predicted", "unsure"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name


# -- scores of real images --------------------------------------------------------------------


def test_intra_fid_and_label_accuracy_see_a_generator_that_ignores_its_label(mnist, evaluator):
    ignoring = evaluator.evaluate(real_sampler(mnist.validation, seed=0, faithful=False), N, conditional=True)
    faithful = evaluator.evaluate(real_sampler(mnist.test, seed=0, faithful=True), N, conditional=True)
    assert ignoring.class_coverage is None and set(faithful.as_dict()) == {
        "fid",
        "intra_fid",
        "label_accuracy",
    }
    # Pooled FID cannot tell: the label-ignoring sampler draws real images in the right balance.
    assert ignoring.fid < 5
    assert ignoring.label_accuracy == pytest.approx(1 / mnist.num_classes, abs=0.03)
    assert faithful.label_accuracy == pytest.approx(evaluator.validation_accuracy, abs=0.02)
    floor = evaluator.intra_floor()
    assert 0 < floor < faithful.intra_fid < 3 * floor  # 200 images a class sit a little further off
    assert ignoring.intra_fid > 20 * faithful.intra_fid


def test_class_coverage_sees_a_generator_stuck_on_one_class(mnist, evaluator):
    real = evaluator.evaluate(real_sampler(mnist.test, seed=1, faithful=False), N, conditional=False)
    stuck = evaluator.evaluate(real_sampler(mnist.test, seed=1, faithful=False, only=3), N, conditional=False)
    assert set(real.as_dict()) == {"fid", "class_coverage", "unsure_share"} and real.intra_fid is None
    assert real.class_coverage > 0.9
    assert stuck.class_coverage < 0.25  # about the share of threes, 1/10
    reference = evaluator.reference_class_statistics()
    assert class_coverage(reference, reference) == pytest.approx(1.0)
    assert reference.predicted_histogram.sum() == pytest.approx(1.0)


def test_unsure_share_sees_strokes_that_read_as_no_one_digit(mnist, evaluator):
    """Two real digits laid over each other read as neither: the unsure share of such samples rises
    far above that of real digits, which sit near its floor (the validation split's share)."""
    real_sample = real_sampler(mnist.test, seed=3, faithful=False)
    real = evaluator.evaluate(real_sample, N, conditional=False)
    floor = evaluator.unsure_floor()
    assert 0 < floor < 0.05 and real.unsure_share < 0.05

    def blended(labels: torch.Tensor) -> torch.Tensor:
        a, b = real_sample(labels), real_sample(labels)
        return torch.maximum(a, b)  # both strokes, white on black

    blends = evaluator.evaluate(blended, N, conditional=False)
    assert blends.unsure_share > 0.2 and blends.unsure_share > 5 * real.unsure_share


def test_one_pass_gives_every_score_and_the_pooled_statistics_of_score(mnist, evaluator, monkeypatch):
    stats = evaluator.sample_statistics(real_sampler(mnist.test, seed=2, faithful=True), N, conditional=True)
    mean, cov = evaluator.statistics(real_sampler(mnist.test, seed=2, faithful=True), N)
    assert torch.equal(stats.mean, mean) and torch.equal(stats.cov, cov)
    scores = evaluator.scores_of(stats)
    assert scores.fid == evaluator.fid_of_statistics(stats.mean, stats.cov)
    assert scores.fid == pytest.approx(
        evaluator.score(real_sampler(mnist.test, seed=2, faithful=True), N), rel=1e-5
    )
    assert torch.equal(stats.class_counts, torch.bincount(evaluator.labels(N), minlength=10).double())
    assert stats.predicted.sum() == N and scores.label_accuracy == float(stats.correct.sum()) / N
    assert scores.get("intra_fid") == scores.intra_fid
    with pytest.raises(ValueError):
        scores.get("class_coverage")
    with pytest.raises(KeyError):
        scores.get("inception_score")
    # One feature-net forward per batch; the head reuses those features.
    calls = []
    net = evaluator.feature_net
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda images: calls.append(len(images)) or forward(images))
    before = evaluator.images_featurized
    again = evaluator.evaluate(real_sampler(mnist.test, seed=2, faithful=True), N, conditional=True)
    assert calls == [evaluator.batch_size] * math.ceil(N / evaluator.batch_size)
    assert evaluator.images_featurized - before == N
    assert again == scores


def test_a_non_finite_pixel_scores_nan_and_leaves_the_references_intact(mnist, evaluator):
    reference = evaluator.scores_of(evaluator.reference_class_statistics("test"))

    def broken(labels: torch.Tensor) -> torch.Tensor:
        images = torch.zeros(len(labels), 1, 28, 28)
        images[-1, 0, 3, 3] = float("inf")
        return images

    with pytest.raises(NonFiniteImageError):
        evaluator.sample_statistics(broken, N, conditional=True)
    conditional = evaluator.evaluate(broken, N, conditional=True)
    assert set(conditional.as_dict()) == {"fid", "intra_fid", "label_accuracy"}
    assert all(math.isnan(v) for v in conditional.as_dict().values())
    unconditional = evaluator.evaluate(broken, N, conditional=False)
    assert set(unconditional.as_dict()) == {"fid", "class_coverage", "unsure_share"}
    assert math.isnan(unconditional.fid)
    assert evaluator.scores_of(evaluator.reference_class_statistics("test")) == reference


def test_class_statistics_and_floors_are_cached_on_disk(mnist, evaluator):
    floor = evaluator.intra_floor()
    assert evaluator.cache.path("intra-floor").exists()
    for split in ("validation", "test"):
        assert evaluator.cache.path(f"{split}-classes").exists()
    fresh = FidEvaluator(mnist)
    assert fresh.intra_floor() == floor
    assert_same(fresh.reference_class_statistics("test"), evaluator.reference_class_statistics("test"))
    assert fresh.images_featurized == 0
    # The test split's per-class and pooled statistics come from one pass and agree.
    test = fresh.reference_class_statistics("test")
    mean, cov = fresh.reference_statistics("test")
    assert torch.allclose(test.mean, mean) and torch.allclose(test.cov, cov)


# -- the statistics' arithmetic ------------------------------------------------------------------


def test_statistics_from_features_are_the_moments_and_counts_of_those_features():
    features, logits, labels = synthetic(301)
    stats = statistics_from_features(features, logits, labels, conditional=True)
    assert torch.allclose(stats.mean, features.mean(0)) and torch.allclose(stats.cov, features.T.cov())
    guess = logits.argmax(1)
    for c in range(3):
        own = features[labels == c]
        assert torch.allclose(stats.class_mean[c], own.mean(0)) and torch.allclose(
            stats.class_cov[c], own.T.cov()
        )
        assert stats.correct[c] == int(((guess == c) & (labels == c)).sum())
    assert torch.equal(stats.predicted, torch.bincount(guess, minlength=3).double())
    unsure = guess[logits.softmax(1).max(1).values < 0.9]
    assert 0 < len(unsure) < len(guess)
    assert torch.equal(stats.unsure, torch.bincount(unsure, minlength=3).double())
    assert torch.equal(stats.class_counts, torch.bincount(labels, minlength=3).double())
    # Batches add up to the whole.
    sums = MomentSums(3)
    for chunk in (slice(0, 7), slice(7, 200), slice(200, None)):
        sums.update(features[chunk], logits[chunk], labels[chunk])
    batched = sums.result(conditional=True)
    assert torch.allclose(batched.class_cov, stats.class_cov) and torch.equal(batched.correct, stats.correct)


def test_a_class_never_requested_makes_intra_fid_nan():
    features, logits, labels = synthetic(300)
    some = statistics_from_features(
        features[labels < 2], logits[labels < 2], labels[labels < 2], conditional=True
    )
    assert torch.isnan(some.class_mean[2]).all() and torch.isnan(some.class_cov[2]).all()
    reference = statistics_from_features(features, logits, labels, conditional=True)
    assert math.isnan(intra_fid(some, reference)) and intra_fid(reference, reference) == pytest.approx(
        0, abs=1e-6
    )


def test_a_one_member_mixture_is_exactly_that_member(mnist, evaluator):
    member = evaluator.sample_statistics(real_sampler(mnist.test, seed=3, faithful=True), N, conditional=True)
    assert_same(mix_sample_statistics([member], [1.0]), member)
    other = statistics_from_features(*synthetic(N, num_classes=10, dim=128), conditional=True)
    assert_same(mix_sample_statistics([member, other], [1.0, 0.0]), member)
    assert evaluator.scores_of(mix_sample_statistics([member], [1.0])) == evaluator.scores_of(member)


def test_a_mixture_has_the_statistics_of_its_members_samples_pooled():
    # Biased moments pool exactly; member sizes 600 and 300 give the weights 2/3 and 1/3.
    a, b = synthetic(600, seed=1), synthetic(300, seed=2, shift=3.0)
    pooled = statistics_from_features(
        *(torch.cat(parts) for parts in zip(a, b, strict=True)), conditional=True, correction=0
    )
    members = [statistics_from_features(*part, conditional=True, correction=0) for part in (a, b)]
    mixed = mix_sample_statistics(members, [2 / 3, 1 / 3])
    for name in ("mean", "cov", "class_mean", "class_cov"):
        assert torch.allclose(getattr(mixed, name), getattr(pooled, name), rtol=1e-10, atol=1e-12), name
    # Counts are the members' rates, weighted: the mixture's accuracy and class balance.
    assert torch.allclose(mixed.correct / mixed.class_counts, pooled.correct / pooled.class_counts)
    assert torch.allclose(mixed.predicted_histogram, pooled.predicted_histogram)
    assert unsure_share(mixed) == pytest.approx(unsure_share(pooled), rel=1e-12)
    assert mixed.num_samples == pytest.approx(2 / 3 * 600 + 1 / 3 * 300)
    # The pooled part is mixture_statistics, unchanged.
    expected = mixture_statistics([(m.mean, m.cov) for m in members], [2 / 3, 1 / 3])
    assert torch.equal(mixed.mean, expected[0]) and torch.equal(mixed.cov, expected[1])
    with pytest.raises(ValueError):
        mix_sample_statistics([members[0], statistics_from_features(*a, conditional=False)], [0.5, 0.5])


def test_greedy_selection_mixes_sample_statistics_on_any_score():
    # Two members each draw half of every class; together they match the reference.
    features, logits, labels = synthetic(1200, seed=4)
    medians = torch.stack([features[labels == c, 0].median() for c in range(3)])
    far = features[:, 0] > medians[labels]
    reference = statistics_from_features(features, logits, labels, conditional=True)
    halves = [
        statistics_from_features(features[m], logits[m], labels[m], conditional=True) for m in (far, ~far)
    ]
    selection = greedy_mixture(halves, lambda s: intra_fid(s, reference), rounds=4)
    singles = [intra_fid(h, reference) for h in halves]
    assert selection.weights == [0.5, 0.5] and selection.score < min(singles)
    assert selection.score == intra_fid(mix_sample_statistics(halves, selection.weights), reference)
    assert selection.fid == selection.score
    # The (mean, cov) form scores with score(mean, cov), as before.
    pairs = [(h.mean, h.cov) for h in halves]
    old = greedy_mixture(pairs, lambda mean, cov: float((mean - reference.mean).square().sum()), rounds=2)
    assert old.weights == [0.5, 0.5]


def test_scores_as_dict_keeps_only_what_applies():
    scores = Scores(fid=1.0, class_coverage=0.5)
    assert scores.as_dict() == {"fid": 1.0, "class_coverage": 0.5}
    assert Scores.diverged(conditional=True).as_dict().keys() == {"fid", "intra_fid", "label_accuracy"}
