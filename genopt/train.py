"""One training loop for the GAN and the cGAN.

The budget unit is the epoch. After every epoch ``on_epoch`` sees the generator and the epoch's
figures and may stop training: that is how the study prunes, without this module knowing Optuna.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from genopt.data import Dataset, to_model_range
from genopt.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from genopt.spec import RunConfig


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else ``cuda`` when a GPU is visible, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class EpochStats:
    """One epoch's mean losses and training speed (time spent in ``on_epoch`` not counted)."""

    epoch: int
    d_loss: float
    g_loss: float
    seconds: float
    images_per_second: float


@dataclass
class TrainResult:
    """What a run produced: the generator, the epochs it ran, why it stopped early (if it did)."""

    generator: Generator
    epochs: list[EpochStats] = field(default_factory=list)
    stop_reason: str | None = None
    diverged: bool = False

    @property
    def images_per_second(self) -> float:
        seconds = sum(e.seconds for e in self.epochs)
        images = sum(e.images_per_second * e.seconds for e in self.epochs)
        return images / seconds if seconds else 0.0


def build_models(config: RunConfig, dataset: Dataset) -> tuple[Generator, Discriminator]:
    """The generator and discriminator a run config describes, for this dataset's shape and classes."""
    num_classes = dataset.num_classes if config.model == "cgan" else 0
    generator = Generator(
        GeneratorConfig(config.noise_dim, config.generator_widths, dataset.image_shape, num_classes)
    )
    discriminator = Discriminator(
        DiscriminatorConfig(config.discriminator_widths, dataset.image_shape, num_classes, config.leaky_slope)
    )
    return generator, discriminator


def train(
    config: RunConfig,
    dataset: Dataset,
    *,
    on_epoch: Callable[[Generator, EpochStats], str | None] | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train a generator as ``config`` says; same seed, same result on the CPU.

    Args:
        config: the run (architecture, optimiser, batch size, epochs, seed).
        dataset: images are sliced from its in-memory train split (the first ``train_limit``).
        on_epoch: called after every epoch with the generator (in eval mode) and the epoch's
            figures; a non-empty string it returns stops training and becomes ``stop_reason``.
        device: defaults to ``cuda`` when available.

    Returns:
        The trained generator and per-epoch figures. Non-finite losses stop training with
        ``diverged`` set and the reason recorded.
    """
    device = default_device(device)
    torch.manual_seed(config.seed)
    G, D = (m.to(device) for m in build_models(config, dataset))
    conditional = G.config.num_classes > 0
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), fused=True)
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), fused=True)

    n = min(len(dataset.train), config.train_limit or len(dataset.train))
    images = dataset.train.images[:n].to(device)
    labels = dataset.train.labels[:n].to(device)
    order_rng = torch.Generator().manual_seed(config.seed)
    result = TrainResult(generator=G)

    for epoch in range(1, config.epochs + 1):
        G.train()
        D.train()
        start = time.perf_counter()
        d_total = torch.zeros((), device=device)
        g_total = torch.zeros((), device=device)
        order = torch.randperm(n, generator=order_rng).to(device)
        for first in range(0, n, config.batch_size):
            idx = order[first : first + config.batch_size]
            real = to_model_range(images[idx])
            y = labels[idx] if conditional else None
            b = len(idx)
            z = torch.randn(b, config.noise_dim, device=device)
            fake = G(z, y)

            # discriminator: one pass over real and fake together (no batch statistics to mix)
            D.requires_grad_(True)
            logits = D(torch.cat([real, fake.detach()]), torch.cat([y, y]) if conditional else None)
            d_loss = F.binary_cross_entropy_with_logits(
                logits[:b], torch.ones_like(logits[:b])
            ) + F.binary_cross_entropy_with_logits(logits[b:], torch.zeros_like(logits[b:]))
            opt_D.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_D.step()

            # generator: D's own gradients are not needed here, so D is frozen for this backward
            D.requires_grad_(False)
            fake_logits = D(fake, y)
            g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
            opt_G.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_G.step()

            d_total += d_loss.detach() * b
            g_total += g_loss.detach() * b

        seconds = time.perf_counter() - start
        stats = EpochStats(epoch, d_total.item() / n, g_total.item() / n, seconds, n / seconds)
        result.epochs.append(stats)
        if not (math.isfinite(stats.d_loss) and math.isfinite(stats.g_loss)):
            result.stop_reason = f"non-finite loss at epoch {epoch} (D {stats.d_loss}, G {stats.g_loss})"
            result.diverged = True
            break
        if on_epoch is not None:
            G.eval()
            reason = on_epoch(G, stats)
            if reason:
                result.stop_reason = reason
                break
    G.eval()
    return result
