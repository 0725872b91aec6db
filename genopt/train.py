"""One training loop for the GAN and the cGAN.

The budget unit is the epoch. After every epoch ``on_epoch`` sees the generator and the epoch's
figures and may stop training: that is how the study prunes, without this module knowing Optuna.
Before every step ``stop`` may stop it too, mid-epoch: that is how a time budget or a signal lands
within one step (``genopt.study.stop``).

With ``ema_decay > 0`` the generator that ``on_epoch`` sees and ``TrainResult.generator`` holds is
an exponential moving average of the trained generator's weights (Yazici et al. 2019, "The Unusual
Effectiveness of Averaging in GAN Training"; Karras et al. 2018, "Progressive Growing of GANs"), so
scoring and checkpoints use the averaged weights; the trained ones stay in ``raw_generator``.

The step itself, its optimisers and weight average, and on a GPU its CUDA graph, are
``genopt.step``'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from genopt.augment import augmentations
from genopt.data import Dataset
from genopt.device import default_device, resolve_precision
from genopt.errors import GenoptError
from genopt.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, architecture
from genopt.spec import RunConfig
from genopt.step import TrainStep, graphs_unsupported
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
    # Whether full batches ran as a replayed CUDA graph (``train``'s ``graphs``).
    graphed: bool = False
    # Whether ``train``'s ``stop`` ended the run between two steps (its last epoch unfinished).
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.raw_generator is None:
            self.raw_generator = self.generator

    @property
    def images_per_second(self) -> float:
        seconds = sum(e.seconds for e in self.epochs)
        images = sum(e.images_per_second * e.seconds for e in self.epochs)
        return images / seconds if seconds else 0.0


def build_models(config: RunConfig, dataset: Dataset) -> tuple[Generator, Discriminator]:
    """The generator and discriminator a run config describes, for this dataset's shape and classes.

    The architecture may deepen the config's widths for the image size (``Architecture.widths_for_size``:
    a DCGAN gains stages for 64-pixel images); the models' configs, and so their checkpoints, hold the
    widths built.
    """
    num_classes = dataset.num_classes if config.model == "cgan" else 0
    codes = config.latent_codes if config.model == "gan" else 0
    if codes > config.noise_dim:
        raise GenoptError(
            f"latent_codes ({codes}) is read from the noise's first coordinates: noise_dim "
            f"({config.noise_dim}) must be at least that"
        )
    built = architecture(config.kind)
    g_widths = tuple(getattr(config, built.generator_widths))
    d_widths = tuple(getattr(config, built.discriminator_widths))
    if built.widths_for_size is not None:
        g_widths, d_widths = built.widths_for_size(g_widths, d_widths, dataset.image_shape)
    generator = Generator(
        GeneratorConfig(
            config.noise_dim,
            g_widths,
            dataset.image_shape,
            num_classes,
            config.kind,
            codes,
        )
    )
    discriminator = Discriminator(
        DiscriminatorConfig(
            d_widths,
            dataset.image_shape,
            num_classes,
            config.leaky_slope,
            config.conditioning,
            config.spectral_norm,
            config.kind,
            codes,
        )
    )
    return generator, discriminator


def train(
    config: RunConfig,
    dataset: Dataset,
    *,
    on_epoch: Callable[[Generator, EpochStats], str | None] | None = None,
    device: torch.device | None = None,
    init: WarmStart | None = None,
    graphs: bool | None = None,
    stop: Callable[[], str | None] | None = None,
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
        graphs: replay the step over full batches from a CUDA graph (``TrainStep``); None, the
            default, does when ``graphs_unsupported`` finds no reason not to; True on a run it
            finds one for raises ValueError; False runs every step eagerly.
        stop: asked before every step; a non-empty string it returns stops training there, the
            epoch unfinished and not shown to ``on_epoch``, and becomes ``stop_reason`` (with
            "during epoch N" added) with ``stopped`` set.

    Returns:
        The trained generator (the weight average when on, see ``TrainResult``), the trained
        discriminator and per-epoch figures. Non-finite losses stop training with ``diverged``
        set and the reason recorded.
    """
    device = default_device(device)
    n = min(len(dataset.train), config.train_limit or len(dataset.train))
    unsupported = graphs_unsupported(config, device, n)
    if graphs and unsupported is not None:
        raise ValueError(f"graphs=True, but {unsupported}")
    graphed = unsupported is None if graphs is None else graphs
    torch.manual_seed(config.seed)
    G, D = (m.to(device) for m in build_models(config, dataset))
    fresh = warm_start(G, D, init) if init is not None else None
    precision = resolve_precision(config.precision, device)  # an unknown one fails here, before any work

    images = dataset.train.images[:n].to(device)
    labels = dataset.train.labels[:n].to(device)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + AUGMENT_SEED_OFFSET)
    augment_real, augment_fake = augmentations(
        config.augment, p=config.augment_probability, generator=augment_rng
    )
    steps = TrainStep(
        config,
        G,
        D,
        images,
        labels,
        precision,
        graphed=graphed,
        augment_real=augment_real,
        augment_fake=augment_fake,
    )
    shown = steps.average.model if steps.average is not None else G
    result = TrainResult(
        generator=shown, raw_generator=G, discriminator=D, precision=precision, graphed=graphed
    )
    result.fresh_layers = fresh.names() if fresh is not None else None

    for epoch in range(1, config.epochs + 1):
        G.train()
        D.train()
        start = time.perf_counter()
        steps.reset_totals()
        order = torch.randperm(n, generator=order_rng).to(device)
        for first in range(0, n, config.batch_size):
            reason = stop() if stop is not None else None
            if reason:
                result.stop_reason, result.stopped = f"{reason} during epoch {epoch}", True
                break
            steps.run(order[first : first + config.batch_size])
        if result.stopped:
            break

        # waits for a GPU to finish the epoch
        d_mean, g_mean = steps.d_total.item() / n, steps.g_total.item() / n
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
