"""Unlabelled data: a feature net trained on the rotation pretext task, and FID as the only score;
colour images of 32 and 64 pixels through the feature net and the evaluator."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from genopt.data import Dataset, Split, to_model_range
from genopt.metrics import FidEvaluator, Scores, networks
from genopt.metrics.features import (
    RECIPE,
    RECIPES,
    ROTATIONS,
    build_feature_net,
    feature_cache_key,
    rotated,
    train_feature_net,
)

# A small variant of recipe 2, registered under an unused version for these tests only: the same
# recipe at a fraction of the cost (narrower convolutions, fewer epochs).
TINY_VERSION = 1000
TINY = dict(RECIPE, version=TINY_VERSION, channels=(8, 16), epochs=3, batch_size=64)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENOPT_HOME", str(tmp_path))
    monkeypatch.setitem(RECIPES, TINY_VERSION, TINY)
    # Nets trained here must not leak into other tests through the in-process cache.
    monkeypatch.setattr(networks, "_MEMORY", {})
    monkeypatch.setattr(networks, "_FILES", {})
    return tmp_path


def scenes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 colour "scenes" (n, 3, size, size) with an up and a down, and a class (0..2) each.

    A sky of a random colour fading towards the bottom, and a blob of a second colour on the
    ground (the lower part): a quarter turn is plain to see. The class is the blob's dominant
    channel.
    """
    g = torch.Generator().manual_seed(seed)
    axis = (torch.arange(size) + 0.5) / size
    yy, xx = axis[:, None], axis[None, :]
    sky = 0.3 + 0.7 * torch.rand(n, 3, 1, 1, generator=g)
    image = sky * (1.0 - 0.8 * yy)
    classes = torch.randint(0, 3, (n,), generator=g)
    blob = 0.2 * torch.rand(n, 3, generator=g)
    blob[torch.arange(n), classes] = 0.7 + 0.3 * torch.rand(n, generator=g)
    cy = 0.65 + 0.2 * torch.rand(n, 1, 1, generator=g)
    cx = 0.2 + 0.6 * torch.rand(n, 1, 1, generator=g)
    radius = 0.08 + 0.1 * torch.rand(n, 1, 1, generator=g)
    inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2)[:, None]
    image = torch.where(inside, blob[:, :, None, None], image)
    image = image + 0.03 * torch.randn(image.shape, generator=g)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), classes


def scene_dataset(size: int, *, labelled: bool, n_train: int = 1500, n_eval: int = 500) -> Dataset:
    images, classes = scenes(n_train + 2 * n_eval, size, seed=size)
    labels = classes if labelled else torch.zeros_like(classes)
    parts = torch.tensor([n_train, n_eval, n_eval])
    train, validation, test = (
        Split(i, lab)
        for i, lab in zip(images.split(parts.tolist()), labels.split(parts.tolist()), strict=True)
    )
    return Dataset(
        name=f"scenes-{size}",
        source="in memory",
        sha256=f"{size:02d}{int(labelled)}" + "0" * 61,
        num_classes=3 if labelled else 1,
        train=train,
        validation=validation,
        test=test,
        class_names=("red", "green", "blue") if labelled else (),
        labelled=labelled,
    )


def sampler(images: torch.Tensor):
    """A "generator" that hands out ``images`` in order, whatever labels it is asked for."""
    drawn = 0

    def sample(labels: torch.Tensor) -> torch.Tensor:
        nonlocal drawn
        drawn += len(labels)
        return images[drawn - len(labels) : drawn]

    return sample


def test_rotated_turns_each_image_by_its_own_quarter_turns():
    images = torch.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    out = rotated(images, torch.tensor([0, 3]))
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[1], torch.rot90(images[1], 3, dims=(1, 2)))


def test_labelled_cache_keys_are_unchanged_and_unlabelled_ones_name_the_task():
    split = Split(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    mnist_like = Dataset("mnist", "x", "0123456789abcdef" * 4, 10, split, split, split)
    # The keys these recipes had before unlabelled data existed: stored studies' nets live under them.
    assert feature_cache_key(mnist_like, RECIPES[1]) == "mnist-f161703738945323"
    assert feature_cache_key(mnist_like, RECIPES[2]) == "mnist-aaba68706515a348"
    assert feature_cache_key(mnist_like) == "mnist-aaba68706515a348"
    folder = dataclasses.replace(mnist_like, name="my folder")
    assert feature_cache_key(folder, RECIPES[2]) == "my_folder-4b41f2f56101122f"
    unlabelled = dataclasses.replace(folder, num_classes=1, labelled=False)
    assert feature_cache_key(unlabelled, RECIPES[2]).startswith("my_folder-")
    assert feature_cache_key(unlabelled, RECIPES[2]) != feature_cache_key(folder, RECIPES[2])


@pytest.mark.parametrize("size", [32, 64])
def test_colour_data_get_a_head_per_class_or_per_rotation(size):
    labelled = scene_dataset(size, labelled=True, n_train=8, n_eval=4)
    net = build_feature_net(labelled, RECIPE)
    assert (net.task, net.head.out_features) == ("classes", 3)
    assert net.conv1.in_channels == 3
    assert net.fc.in_features == 64 * (size // 4) ** 2
    assert net(to_model_range(labelled.train.images)).shape == (8, net.num_features)
    unlabelled = dataclasses.replace(labelled, labelled=False, num_classes=1)
    net = build_feature_net(unlabelled, RECIPE)
    assert (net.task, net.head.out_features) == ("rotation", ROTATIONS)


def test_rotation_net_learns_the_pretext_task_and_unlabelled_data_score_fid_only(home):
    dataset = scene_dataset(32, labelled=False)
    started = time.perf_counter()
    net = train_feature_net(dataset, recipe=TINY, device="cpu")
    trained = time.perf_counter() - started
    assert net.task == "rotation"
    print(
        f"rotation pretext accuracy {net.validation_accuracy:.3f} (chance 0.25), trained in {trained:.1f} s"
    )
    assert net.validation_accuracy > 0.6

    evaluator = FidEvaluator(dataset, device="cpu", feature_version=TINY_VERSION)
    assert evaluator.feature_net.task == "rotation"
    assert evaluator.feature_net.head.out_features == ROTATIONS
    assert evaluator.validation_accuracy == pytest.approx(net.validation_accuracy)
    # trained here once, cached under the recipe's key; its statistics are named by its sha256
    assert (home / "cache" / "features" / f"{feature_cache_key(dataset, TINY)}.pt").is_file()
    assert evaluator.feature_net.cache_key.endswith(evaluator.feature_net.sha256[:16])

    real = to_model_range(dataset.test.images)
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = {}
    for name, images in (("real", real), ("noise", noise)):
        for conditional in (False, True):
            result = evaluator.evaluate(sampler(images), 400, conditional=conditional)
            assert (result.intra_fid, result.label_accuracy, result.class_coverage) == (None, None, None)
            assert result.as_dict().keys() == {"fid"}
            scores[name] = result.fid
    assert 0 <= scores["real"] < scores["noise"] / 5
    test_scores = evaluator.scores_of(
        evaluator.sample_statistics(sampler(real), 400, conditional=False), split="test"
    )
    assert test_scores == Scores(fid=test_scores.fid) and math.isfinite(test_scores.fid)
    assert math.isfinite(evaluator.floor()) and evaluator.floor() < scores["noise"]
    with pytest.raises(ValueError, match="unlabelled"):
        evaluator.intra_floor()

    diverged = evaluator.evaluate(
        lambda labels: torch.full((len(labels), 3, 32, 32), math.nan), 10, conditional=True
    )
    assert diverged.as_dict().keys() == {"fid"} and math.isnan(diverged.fid)
    assert Scores.diverged(conditional=False, labelled=False).as_dict().keys() == {"fid"}


def test_rotation_accuracy_is_chance_on_images_without_an_up():
    dataset = scene_dataset(32, labelled=False, n_train=600, n_eval=400)
    noise = torch.randint(
        0, 256, (1400, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )
    train, validation, test = (
        Split(i, torch.zeros(len(i), dtype=torch.long)) for i in noise.split([600, 400, 400])
    )
    dataset = dataclasses.replace(dataset, train=train, validation=validation, test=test)
    net = train_feature_net(dataset, recipe=TINY, device="cpu")
    assert net.validation_accuracy < 0.4


def test_labelled_colour_64px_data_keep_every_class_score():
    dataset = scene_dataset(64, labelled=True, n_train=600, n_eval=300)
    evaluator = FidEvaluator(dataset, device="cpu", feature_version=TINY_VERSION, batch_size=200)
    net = evaluator.feature_net
    assert (net.task, net.head.out_features) == ("classes", 3)
    assert net.validation_accuracy > 0.9  # the blob's colour is easy
    real = to_model_range(dataset.test.images)
    conditional = evaluator.evaluate(sampler(real), 300, conditional=True)
    unconditional = evaluator.evaluate(sampler(real), 300, conditional=False)
    assert conditional.intra_fid is not None and conditional.label_accuracy is not None
    assert conditional.class_coverage is None
    assert unconditional.class_coverage is not None and unconditional.intra_fid is None
    assert math.isfinite(evaluator.intra_floor())
