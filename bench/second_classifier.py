"""A second judge of generated images: a classifier of another design than genopt's feature network,
trained on the train split only, so that a gain in label accuracy is not one network's blind spot.

genopt's feature network is two 3x3 convolutions, two pools and a 128-wide dense layer. This one is a
small residual network: a stem, three stages of one residual block each (16, 32 and 64 channels, the
last two entered by a stride-2 convolution) and global average pooling into the classes, trained
with random shifts of up to 2 pixels, AdamW and a cosine schedule. It is trained once per dataset
(by its sha256) and cached under ``storage/cache/bench/``; validation picks nothing, so the
validation and test splits both stay unseen.

``judge`` gives, for images and the classes they were asked to draw, the share it labels as asked
and the share it is unsure of (top class probability under ``UNSURE_BELOW``). Real test images give
both floors. For an unconditional generator ``judge_unconditional`` gives its class coverage (1 - TV
of the classes it reads in the samples against the test split's labels), its unsure share and an FID
in its own 64-d pooled features: a yardstick that a filter by genopt's network cannot flatter.

    python -m bench.second_classifier --export storage/exports/cgan-mnist.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genopt import paths
from genopt.augment import translate
from genopt.data import Dataset, load_dataset, to_model_range
from genopt.metrics import frechet_distance

UNSURE_BELOW = 0.9
EPOCHS = 3
BATCH = 128
SEED = 0


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResidualClassifier(nn.Module):
    """stem 16 -> block -> down 32 -> block -> down 64 -> block -> global average pool -> classes."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()

        def down(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
            )

        self.body = nn.Sequential(
            down(in_channels, 16, 1), _Block(16), down(16, 32, 2), _Block(32), down(32, 64, 2), _Block(64)
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def cache_file(dataset: Dataset) -> Path:
    return paths.cache_dir() / "bench" / f"second-classifier-{dataset.sha256[:16]}.pt"


def classifier(dataset: Dataset, *, log=print) -> ResidualClassifier:
    """The dataset's second classifier: trained on its train split once, then read from the cache."""
    net = ResidualClassifier(dataset.train.images.shape[1], dataset.num_classes)
    path = cache_file(dataset)
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    started = time.perf_counter()
    rng = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    images, labels = to_model_range(dataset.train.images), dataset.train.labels
    steps = EPOCHS * (len(labels) // BATCH)
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(labels), generator=rng)
        for i in range(len(labels) // BATCH):
            batch = order[i * BATCH : (i + 1) * BATCH]
            shift_h, shift_w = torch.randint(-2, 3, (2, len(batch)), generator=rng)
            x = translate(images[batch], shift_h, shift_w, fill=-1.0)
            loss = F.cross_entropy(net(x), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    log(f"second classifier trained on {len(labels):,} train images in {time.perf_counter() - started:.0f} s")
    return net


@torch.no_grad()
def _read(net: ResidualClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features (N, 64) in float64, class probabilities (N, K)) of images in [-1, 1]."""
    features = torch.cat(
        [net.body(images[i : i + 1000]).mean(dim=(2, 3)) for i in range(0, len(images), 1000)]
    )
    return features.double(), net.head(features).softmax(dim=1)


@torch.no_grad()
def judge(net: ResidualClassifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(share labelled as asked, share with top probability under ``UNSURE_BELOW``) of ``images``
    in [-1, 1], shape (N, C, H, W), asked for ``labels``."""
    top, predicted = _read(net, images)[1].max(dim=1)
    return (predicted == labels).double().mean().item(), (top < UNSURE_BELOW).double().mean().item()


def judge_unconditional(net: ResidualClassifier, images: torch.Tensor, real) -> tuple[float, float, float]:
    """(class coverage, unsure share, FID in this net's features) of ``images`` in [-1, 1] against
    ``real``, a split of the dataset (its images and labels)."""
    features, probs = _read(net, images)
    reference, _ = _read(net, to_model_range(real.images))
    top, guess = probs.max(dim=1)
    k = probs.shape[1]
    have = torch.bincount(guess, minlength=k).double() / len(guess)
    want = torch.bincount(real.labels, minlength=k).double() / len(real.labels)
    moments = [(f.mean(0), f.T.cov()) for f in (features, reference)]
    fid = frechet_distance(*moments[0], *moments[1])
    return float(torch.minimum(have, want).sum()), float((top < UNSURE_BELOW).double().mean()), fid


def judge_export(net: ResidualClassifier, path: Path, samples: int, seed: int = 0) -> tuple[float, ...]:
    """``samples`` images of an exported ensemble (the classes in turn) judged: a conditional one's
    two shares (``judge``), an unconditional one's three scores on the test split
    (``judge_unconditional``)."""
    from genopt import load_ensemble

    ensemble = load_ensemble(path)
    classes = ensemble.num_classes if ensemble.conditional else 1
    labels = torch.arange(samples) % classes
    images = ensemble.sample(samples, labels=labels, generator=torch.Generator().manual_seed(seed))
    if not ensemble.conditional:
        return judge_unconditional(
            net, images * 2 - 1, load_dataset(ensemble.metadata["dataset"]["name"]).test
        )
    return judge(net, images * 2 - 1, labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--export", type=Path, action="append", default=[], help="an exported ensemble (.pt)")
    p.add_argument("--samples", type=int, default=10_000)
    args = p.parse_args()
    dataset = load_dataset(args.dataset)
    net = classifier(dataset)
    test = dataset.test
    accuracy, unsure = judge(net, to_model_range(test.images), test.labels)
    print(f"real test images: label accuracy {accuracy:.4f}, unsure {unsure:.4f}")
    floor = judge_unconditional(net, to_model_range(dataset.validation.images), test)
    print(f"real validation images: coverage {floor[0]:.4f}, unsure {floor[1]:.4f}, FID {floor[2]:.3f}")
    for path in args.export:
        judged = judge_export(net, path, args.samples)
        names = ("label accuracy", "unsure") if len(judged) == 2 else ("coverage", "unsure", "FID")
        scores = ", ".join(f"{name} {value:.4f}" for name, value in zip(names, judged, strict=True))
        print(f"{path}: {scores} ({args.samples:,} samples)")


if __name__ == "__main__":
    main()
