"""The article's networks: multilayer perceptrons over flattened images (``kind = "mlp"``)."""

from __future__ import annotations

import torch
from torch import nn

from genopt.models.base import (
    Architecture,
    Conditioning,
    DiscriminatorConfig,
    GeneratorConfig,
    heads,
    with_labels,
)


def layers(sizes: list[int], activation: nn.Module) -> list[nn.Module]:
    """Linear layers from ``sizes[0]`` to ``sizes[-1]`` units, ``activation`` between them."""
    stack: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        stack += [nn.Linear(fan_in, fan_out), activation]
    stack.append(nn.Linear(sizes[-2], sizes[-1]))
    return stack


def generator(config: GeneratorConfig) -> dict[str, nn.Module]:
    """Noise (and one-hot label) -> hidden layers with ReLU -> Tanh, unflattened to the image shape."""
    c, h, w = config.image_shape
    sizes = [config.inputs, *config.widths, c * h * w]
    return {"net": nn.Sequential(*layers(sizes, nn.ReLU()), nn.Tanh(), nn.Unflatten(1, config.image_shape))}


def discriminator(config: DiscriminatorConfig, conditioning: Conditioning) -> dict[str, nn.Module]:
    """Flattened image (and one-hot label) -> hidden layers with LeakyReLU -> one logit.

    Unconditional and ``"concat"`` keep the article's single ``net``; the others run a ``body`` to
    features, then the heads.
    """
    c, h, w = config.image_shape
    activation = nn.LeakyReLU(config.leaky_slope)
    inputs = c * h * w + (config.num_classes if conditioning.joins_input else 0)
    if not conditioning.uses_features:
        return {"net": nn.Sequential(*layers([inputs, *config.widths, 1], activation))}
    body: list[nn.Module] = []
    for fan_in, fan_out in zip([inputs, *config.widths[:-1]], config.widths, strict=True):
        body += [nn.Linear(fan_in, fan_out), activation]
    return {"body": nn.Sequential(*body), **heads(config.widths[-1], conditioning, config.head_classes)}


def discriminator_input(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """The flattened images, with the one-hot labels appended (``num_classes`` 0: none)."""
    return with_labels(images.flatten(1), labels, num_classes)


ARCHITECTURE = Architecture(
    generator, discriminator, discriminator_input, "generator_widths", "discriminator_widths"
)
