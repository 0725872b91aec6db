"""The article's MLP generator and discriminator, unconditional or conditioned on a class label.

A model is rebuilt from its plain config dict alone (stored in every checkpoint), as in nanoGPT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator: noise size, hidden widths, image shape, classes (0: unconditional)."""

    noise_dim: int
    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return cls(d["noise_dim"], tuple(d["widths"]), tuple(d["image_shape"]), d["num_classes"])


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a discriminator: hidden widths, LeakyReLU slope, image shape, classes."""

    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    leaky_slope: float = 0.2


def _mlp(sizes: list[int], activation: nn.Module) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(fan_in, fan_out), activation]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return layers


def _with_labels(x: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    if num_classes == 0:
        return x
    if labels is None:
        raise ValueError("a conditional model needs labels")
    return torch.cat([x, F.one_hot(labels, num_classes).to(x.dtype)], dim=1)


class Generator(nn.Module):
    """Noise (and a one-hot label) -> MLP with ReLU -> Tanh image in [-1, 1]."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        sizes = [config.noise_dim + config.num_classes, *config.widths, c * h * w]
        self.net = nn.Sequential(*_mlp(sizes, nn.ReLU()), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(_with_labels(z, labels, self.config.num_classes))
        return x.view(-1, *self.config.image_shape)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for ``labels`` (ignored when unconditional), one noise draw each."""
        device = next(self.parameters()).device
        z = torch.randn(len(labels), self.config.noise_dim, generator=generator, device=rng_device(generator))
        return self(z.to(device), labels.to(device) if self.config.num_classes else None)


def rng_device(generator: torch.Generator | None) -> torch.device:
    """Where to draw sampling noise: ``generator``'s device, else the CPU.

    Noise is drawn there and then moved to the model, so one seed gives the same noise, and so the
    same images and FID, whether the model runs on the CPU or a GPU.
    """
    return generator.device if generator is not None else torch.device("cpu")


class Discriminator(nn.Module):
    """Image (and a one-hot label) -> MLP with LeakyReLU -> one logit (BCE with logits, not Sigmoid)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        sizes = [c * h * w + config.num_classes, *config.widths, 1]
        self.net = nn.Sequential(*_mlp(sizes, nn.LeakyReLU(config.leaky_slope)))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = _with_labels(images.flatten(1), labels, self.config.num_classes)
        return self.net(x).squeeze(1)
