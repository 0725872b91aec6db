"""A small CNN whose penultimate layer stands in for Inception-v3 in FID.

Inception weights cannot be downloaded here, and a domain classifier is established practice for
MNIST FID (Binkowski et al. score with a LeNet). The network is trained on the train split only, so
validation and test stay unseen by everything FID measures, and it is cached on disk keyed by the
data's sha256 and the recipe below: changed data or a changed recipe never reuses a stale net.

Recipes are versioned. A study records the version it was scored with and keeps it when resumed, so
its trials stay comparable; new studies get ``FEATURE_VERSION``. Version 1 (98.0 % on MNIST
validation) was lenient exactly where good generators sit; version 2 adds batch norm, random shifts,
wider convolutions and a one-cycle schedule (99.35 % on MNIST validation).

The net takes any channel count and any square size the data come in (1 or 3 channels, 28 to 64
pixels). Labelled data train it as a classifier of their classes (``task == "classes"``). Unlabelled
data (``Dataset.labelled`` False: a folder of images without classes) have no class to learn, so the
net learns to tell which of four rotations, by 0, 90, 180 or 270 degrees, an image was given
(``task == "rotation"``; Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting
Image Rotations"). Telling them apart needs the objects' shape, orientation and layout, so the
features see what a generator gets wrong, as a class's features do, yet need no label; the recipe is
otherwise the same (epochs, schedule, shifts, seed). Its ``validation_accuracy`` is then the
rotation accuracy on the validation split, each image turned by a fixed seeded rotation (chance is
0.25). The task is part of an unlabelled net's cache key; labelled nets keep their keys unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genopt.augment import translate
from genopt.data import Dataset, to_model_range
from genopt.device import default_device
from genopt.paths import file_safe

# A new recipe is a new version: never edit one a stored study may name. Version 1's dict is exactly
# the recipe it was cached under, so its nets keep their cache keys.
RECIPES: dict[int, dict[str, Any]] = {
    1: {
        "version": 1,
        "channels": (16, 32),
        "hidden": 128,
        "epochs": 2,
        "batch_size": 128,
        "lr": 1e-3,
        "seed": 0,
    },  # fmt: skip
    2: {
        "version": 2,
        "channels": (32, 64),
        "hidden": 128,
        "epochs": 4,
        "batch_size": 128,
        "lr": 3e-3,  # the schedule's peak
        "schedule": "one_cycle",
        "seed": 0,
        "batch_norm": True,
        "shift": 2,  # random translations of up to this many pixels, per image
    },
}
FEATURE_VERSION = 2
RECIPE = RECIPES[FEATURE_VERSION]

# What the net learns: a labelled dataset's classes, or, without labels, the rotation pretext task.
TASKS = ("classes", "rotation")
ROTATIONS = 4  # the pretext task's classes: k quarter turns, k in 0..3


class FeatureNet(nn.Module):
    """conv-pool-conv-pool-fc128-head; ``forward`` returns the 128-d penultimate features.

    Args:
        image_shape: (C, H, W) of the images, H and W at least 8.
        num_classes: outputs of the head used for training: the dataset's classes, or
            ``ROTATIONS`` for the rotation task.
        channels: widths of the two convolutions.
        batch_norm: batch norm after each convolution and the feature layer (recipe 2 on).
        task: what the head predicts, ``"classes"`` or ``"rotation"`` (see the module docstring).
    """

    num_features: int = 128

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        channels: tuple[int, int] = (16, 32),
        batch_norm: bool = False,
        task: str = "classes",
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        if h < 8 or w < 8:
            raise ValueError(f"FeatureNet needs images of at least 8x8, got {h}x{w}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "rotation" and h != w:
            raise ValueError(f"the rotation task needs square images, got {h}x{w}")
        self.task = task
        norm = nn.BatchNorm2d if batch_norm else lambda _: nn.Identity()
        self.conv1 = nn.Conv2d(c, channels[0], 3, padding=1, bias=not batch_norm)
        self.norm1 = norm(channels[0])
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, padding=1, bias=not batch_norm)
        self.norm2 = norm(channels[1])
        # Two floor-halving pools, so odd sizes work too.
        self.fc = nn.Linear(channels[1] * (h // 2 // 2) * (w // 2 // 2), self.num_features)
        self.norm_fc = nn.BatchNorm1d(self.num_features) if batch_norm else nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes)
        self.validation_accuracy: float = float("nan")
        self.cache_key: str = ""  # names its reference statistics (genopt.metrics.reference)
        self.version: int = 0
        self.sha256: str = ""  # of its file (genopt.metrics.networks), its one true name
        self.origin: str = ""  # where it came from: shipped, trained here, a study's artifact store

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of images in [-1, 1], shape (N, C, H, W) -> (N, 128)."""
        # Channels-last convolutions run about 3x faster on the CPU (oneDNN's native layout);
        # ReLU after the pool equals ReLU before it (both monotone) and touches 4x fewer values.
        x = images.contiguous(memory_format=torch.channels_last)
        x = F.relu(F.max_pool2d(self.norm1(self.conv1(x)), 2))
        x = F.relu(F.max_pool2d(self.norm2(self.conv2(x)), 2))
        return F.relu(self.norm_fc(self.fc(x.flatten(1))))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The head's logits, (N, num_classes): classes, or rotations for the rotation task."""
        return self.head(self.forward(images))


def task_of(dataset: Dataset) -> str:
    """What the dataset's feature net learns: its classes, or, when it has none, rotations."""
    return "classes" if dataset.labelled else "rotation"


def build_feature_net(dataset: Dataset, recipe: dict[str, Any]) -> FeatureNet:
    """An untrained net of ``recipe`` for the data's image shape and task."""
    task = task_of(dataset)
    return FeatureNet(
        dataset.image_shape,
        dataset.num_classes if task == "classes" else ROTATIONS,
        channels=tuple(recipe["channels"]),
        batch_norm=recipe.get("batch_norm", False),
        task=task,
    )


def recipe_of(version: int) -> dict[str, Any]:
    """The recipe of feature-net ``version``.

    Raises:
        ValueError: no such version (a study made by a newer genopt).
    """
    if version not in RECIPES:
        raise ValueError(
            f"feature network version {version} is unknown to this genopt (it knows {sorted(RECIPES)}): "
            "upgrade genopt to read this study"
        )
    return RECIPES[version]


def _shifted(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset of up to ``pixels`` per axis, background (-1) shifted in."""
    shift_h, shift_w = torch.randint(0, 2 * pixels + 1, (2, len(images)), generator=generator) - pixels
    return translate(images, shift_h, shift_w, fill=-1.0)


def rotated(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each square image (N, C, H, W) turned by its own ``turns`` (N,) quarter turns (``torch.rot90``)."""
    out = images.clone()
    for k in range(1, ROTATIONS):
        chosen = (turns == k).to(images.device)
        if bool(chosen.any()):
            out[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return out


def _random_turns(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, ROTATIONS, (n,), generator=generator)


def feature_cache_key(dataset: Dataset, recipe: dict[str, Any] | None = None) -> str:
    """Names a trained net by dataset name, data sha256, recipe and (unlabelled data only) task:
    any change gives a new key."""
    recipe = RECIPE if recipe is None else recipe
    named: dict[str, Any] = {"dataset": dataset.name, "sha256": dataset.sha256, "recipe": recipe}
    if task_of(dataset) != "classes":
        # Only here: a labelled net's key must stay the one stored studies were scored under.
        named["task"] = task_of(dataset)
    blob = json.dumps(named, sort_keys=True)
    return f"{file_safe(dataset.name)}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@torch.no_grad()
def featurize(
    net: nn.Module, images: torch.Tensor, *, batch_size: int = 1000, logits: bool = False
) -> torch.Tensor:
    """Run ``net`` over images in batches on the net's device; returns a CPU tensor."""
    device = next(net.parameters()).device
    fn = net.logits if logits else net
    out = [fn(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of uint8 ``images`` classified as ``labels``."""
    net.eval()
    # About 1000 MNIST-sized images a batch, fewer for larger ones: a 64x64 batch's first activation
    # would otherwise take 1000 * 32 * 64 * 64 floats (0.5 GB).
    batch_size = max(1, 1000 * 28 * 28 // (images.shape[2] * images.shape[3]))
    predicted = featurize(net, to_model_range(images), batch_size=batch_size, logits=True).argmax(1)
    return float((predicted == labels).float().mean())


def validation_accuracy(net: FeatureNet, dataset: Dataset, seed: int) -> float:
    """The net's accuracy at its task on the validation split: class accuracy, or, for the rotation
    task, how often it tells the rotation each image was given by a fixed draw from ``seed``."""
    images = dataset.validation.images
    if net.task == "classes":
        return accuracy(net, images, dataset.validation.labels)
    turns = _random_turns(len(images), torch.Generator().manual_seed(seed))
    return accuracy(net, rotated(images, turns), turns)


def train_feature_net(
    dataset: Dataset, *, recipe: dict[str, Any] | None = None, device: str | torch.device | None = None
) -> FeatureNet:
    """Train a fresh net on the train split alone, seeded so the same data gives the same weights.

    Labelled data train it on their classes; unlabelled data on the rotation task, each image of a
    batch turned by its own random number of quarter turns (after its random shift), the head
    predicting that number.
    """
    recipe = RECIPE if recipe is None else recipe
    device = default_device(device)
    generator = torch.Generator().manual_seed(recipe["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        net = build_feature_net(dataset, recipe)
    net.to(device).train()
    images, labels = to_model_range(dataset.train.images), dataset.train.labels
    rotation = net.task == "rotation"
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    batch_size, shift = recipe["batch_size"], recipe.get("shift", 0)
    schedule = None
    if recipe.get("schedule") == "one_cycle":
        steps = recipe["epochs"] * -(-len(labels) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps)
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(labels), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            batch = _shifted(images[idx], shift, generator) if shift else images[idx]
            targets = labels[idx]
            if rotation:
                targets = _random_turns(len(idx), generator)
                batch = rotated(batch, targets)
            loss = F.cross_entropy(net.logits(batch.to(device)), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    net.eval()
    net.validation_accuracy = validation_accuracy(net, dataset, recipe["seed"])
    return net
