"""One training loop for the GAN and the cGAN.

The budget unit is the epoch. After every epoch ``on_epoch`` sees the generator and the epoch's
figures and may stop training: that is how the study prunes, without this module knowing Optuna.

With ``ema_decay > 0`` the generator that ``on_epoch`` sees and ``TrainResult.generator`` holds is
an exponential moving average of the trained generator's weights (Yazici et al. 2019, "The Unusual
Effectiveness of Averaging in GAN Training"; Karras et al. 2018, "Progressive Growing of GANs"), so
scoring and checkpoints use the averaged weights; the trained ones stay in ``raw_generator``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from genopt.augment import Augmentation, augmentations
from genopt.data import Dataset, to_model_range
from genopt.device import default_device, resolve_precision
from genopt.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from genopt.spec import RunConfig
from genopt.warmstart import WarmStart, warm_start

# Seeds the augmentations' own random draws, apart from the batch order and the noise.
AUGMENT_SEED_OFFSET = 7_919


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
    """What a run produced: the generator, the epochs it ran, why it stopped early (if it did).

    ``generator`` is the one to score and export: the weight average when the run kept one, else
    the trained generator. ``raw_generator`` is always the trained generator (the same object when
    there is no average), and ``discriminator`` the trained discriminator, for later use.
    """

    generator: Generator
    epochs: list[EpochStats] = field(default_factory=list)
    stop_reason: str | None = None
    diverged: bool = False
    raw_generator: Generator | None = None
    discriminator: Discriminator | None = None
    # The precision the steps ran in, "auto" resolved for the device: "fp32" or "bf16".
    precision: str = "fp32"
    # A warm start's freshly initialised layers ("generator net.0", ...); None without one.
    fresh_layers: list[str] | None = None

    def __post_init__(self) -> None:
        if self.raw_generator is None:
            self.raw_generator = self.generator

    @property
    def images_per_second(self) -> float:
        seconds = sum(e.seconds for e in self.epochs)
        images = sum(e.images_per_second * e.seconds for e in self.epochs)
        return images / seconds if seconds else 0.0


def build_models(config: RunConfig, dataset: Dataset) -> tuple[Generator, Discriminator]:
    """The generator and discriminator a run config describes, for this dataset's shape and classes."""
    num_classes = dataset.num_classes if config.model == "cgan" else 0
    dcgan = config.kind == "dcgan"
    generator = Generator(
        GeneratorConfig(
            config.noise_dim,
            config.generator_channels if dcgan else config.generator_widths,
            dataset.image_shape,
            num_classes,
            config.kind,
        )
    )
    discriminator = Discriminator(
        DiscriminatorConfig(
            config.discriminator_channels if dcgan else config.discriminator_widths,
            dataset.image_shape,
            num_classes,
            config.leaky_slope,
            config.conditioning,
            config.spectral_norm,
            config.kind,
        )
    )
    return generator, discriminator


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a spec's ``precision``: none for ``fp32``, bfloat16 for ``bf16``.

    ``auto`` is either, as ``genopt.device.resolve_precision`` decides for ``device``.
    """
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adam(model: torch.nn.Module, config: RunConfig) -> torch.optim.Adam:
    """Adam as the run says; fused, which is measured fastest on the CPU (docs/benchmarks.md)."""
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), fused=True)


def _unchanged(images: torch.Tensor) -> torch.Tensor:
    return images


def train_step(
    G: Generator,
    D: Discriminator,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor | None,
    z: torch.Tensor,
    precision: str = "fp32",
    *,
    augment_real: Augmentation | None = None,
    augment_fake: Augmentation | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One discriminator update and one generator update; returns the two losses (detached).

    The same losses and gradients as separate discriminator passes over real and fake images
    (tests/test_train_step.py), with less work: one pass over both, and no gradients for D's
    weights during the generator's backward. (With spectral norm, D's power iteration runs once per
    pass, so once for both halves here.) An AC-GAN discriminator (Odena et al. 2017) adds the class
    cross-entropy of real and fake images to D's loss, and that of fake images to G's.

    ``augment_real`` and ``augment_fake`` transform the images D sees (``genopt.augment``): the
    fakes in D's step and in G's alike, so G's gradient passes through the same augmentation.
    """
    b = len(real)
    for_real, for_fake = augment_real or _unchanged, augment_fake or _unchanged
    ctx = autocast(precision, real.device)
    with ctx:
        fake = G(z, labels)
        # discriminator: one pass over real and fake together (no batch statistics in D to mix)
        D.requires_grad_(True)
        logits, classes = D.forward_with_classes(
            torch.cat([for_real(real), for_fake(fake.detach())]),
            torch.cat([labels, labels]) if labels is not None else None,
        )
    d_loss = F.binary_cross_entropy_with_logits(
        logits[:b].float(), torch.ones(b, device=real.device)
    ) + F.binary_cross_entropy_with_logits(logits[b:].float(), torch.zeros(b, device=real.device))
    if classes is not None:
        classes = classes.float()
        d_loss = d_loss + F.cross_entropy(classes[:b], labels) + F.cross_entropy(classes[b:], labels)
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_D.step()

    # generator: D's own gradients are not needed here, so D is frozen for this backward
    D.requires_grad_(False)
    with ctx:
        fake_logits, fake_classes = D.forward_with_classes(for_fake(fake), labels)
    g_loss = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones(b, device=real.device))
    if fake_classes is not None:
        g_loss = g_loss + F.cross_entropy(fake_classes.float(), labels)
    opt_G.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_G.step()
    D.requires_grad_(True)
    return d_loss.detach(), g_loss.detach()


class WeightAverage:
    """An exponential moving average of a generator's weights, updated after every generator step.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so the average forgets the random initial
    weights within the first epoch even at decay 0.999 rather than after thousands of steps.
    Buffers, which an average has no meaning for, are copied.
    """

    def __init__(self, model: Generator, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._params = list(self.model.parameters())
        self._source = list(model.parameters())
        self._buffers = list(zip(self.model.buffers(), model.buffers(), strict=True))

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        torch._foreach_lerp_(self._params, self._source, 1.0 - decay)
        for mine, theirs in self._buffers:
            mine.copy_(theirs)


def train(
    config: RunConfig,
    dataset: Dataset,
    *,
    on_epoch: Callable[[Generator, EpochStats], str | None] | None = None,
    device: torch.device | None = None,
    init: WarmStart | None = None,
) -> TrainResult:
    """Train a generator as ``config`` says; same seed, same result on the CPU.

    Args:
        config: the run (architecture, optimiser, batch size, epochs, seed, weight averaging).
        dataset: images are sliced from its in-memory train split (the first ``train_limit``).
        on_epoch: called after every epoch with the generator (in eval mode; the weight average
            when ``config.ema_decay > 0``) and the epoch's figures; a non-empty string it returns
            stops training and becomes ``stop_reason``.
        device: defaults to ``cuda`` when available.
        init: weights to start from (``genopt.warmstart``): every layer that fits is loaded into
            the generator, and into the discriminator when ``init`` holds one; the rest start fresh.

    Returns:
        The trained generator (the weight average when on, see ``TrainResult``), the trained
        discriminator and per-epoch figures. Non-finite losses stop training with ``diverged``
        set and the reason recorded.
    """
    device = default_device(device)
    torch.manual_seed(config.seed)
    G, D = (m.to(device) for m in build_models(config, dataset))
    fresh = warm_start(G, D, init) if init is not None else None
    conditional = G.config.num_classes > 0
    opt_G, opt_D = adam(G, config), adam(D, config)
    precision = resolve_precision(config.precision, device)  # an unknown one fails here, before any work
    average = WeightAverage(G, config.ema_decay) if config.ema_decay > 0 else None
    shown = average.model if average is not None else G

    n = min(len(dataset.train), config.train_limit or len(dataset.train))
    images = dataset.train.images[:n].to(device)
    labels = dataset.train.labels[:n].to(device)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + AUGMENT_SEED_OFFSET)
    augment_real, augment_fake = augmentations(
        config.augment, p=config.augment_probability, generator=augment_rng
    )
    step = functools.partial(train_step, augment_real=augment_real, augment_fake=augment_fake)
    result = TrainResult(generator=shown, raw_generator=G, discriminator=D, precision=precision)
    result.fresh_layers = fresh.names() if fresh is not None else None

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
            d_loss, g_loss = step(G, D, opt_G, opt_D, real, y, z, precision)
            if average is not None:
                average.update()

            d_total += d_loss * b
            g_total += g_loss * b

        d_mean, g_mean = d_total.item() / n, g_total.item() / n  # waits for a GPU to finish the epoch
        seconds = time.perf_counter() - start
        stats = EpochStats(epoch, d_mean, g_mean, seconds, n / seconds)
        result.epochs.append(stats)
        if not (math.isfinite(stats.d_loss) and math.isfinite(stats.g_loss)):
            result.stop_reason = f"non-finite loss at epoch {epoch} (D {stats.d_loss}, G {stats.g_loss})"
            result.diverged = True
            break
        if on_epoch is not None:
            G.eval()
            shown.eval()
            reason = on_epoch(shown, stats)
            if reason:
                result.stop_reason = reason
                break
    G.eval()
    shown.eval()
    D.eval()
    return result
