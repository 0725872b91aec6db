"""DCGAN-style convolutional networks (``kind = "dcgan"``; Radford et al. 2016, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial Networks")."""

from __future__ import annotations

import torch
from torch import nn

from genopt.errors import GenoptError
from genopt.models.base import (
    Architecture,
    Conditioning,
    DiscriminatorConfig,
    GeneratorConfig,
    heads,
    with_labels,
)

# Stages are added for larger images until the smallest feature map is at most this many pixels.
SMALLEST_MAP = 8


def _halvings(size: int) -> int:
    """How many times ``size`` halves evenly: 28 -> 2 (28, 14, 7), 32 -> 5."""
    return (size & -size).bit_length() - 1


def widths_for_size(
    generator_widths: tuple[int, ...],
    discriminator_widths: tuple[int, ...],
    image_shape: tuple[int, int, int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The spec's widths with stages added until the smallest feature map suits the image size.

    While the smallest map would be larger than ``SMALLEST_MAP`` and height and width still halve
    evenly once more, the generator gains a first stage of twice its first width and the
    discriminator a last stage of twice its last width. Widths ``[96, 48]`` and ``[48, 96]``
    stay as they are at 28 pixels (7x7) and 32 (8x8), and become ``[192, 96, 48]`` from 8x8 and
    ``[48, 96, 192]`` down to 8x8 at 64. Never removes a stage: widths too deep for the size are
    the networks' to refuse.
    """
    _, h, w = image_shape
    halvings = min(_halvings(h), _halvings(w))

    def deepened(widths: tuple[int, ...], grow) -> tuple[int, ...]:
        widths = tuple(widths)
        while widths and len(widths) < halvings and min(h, w) >> len(widths) > SMALLEST_MAP:
            widths = grow(widths)
        return widths

    return (
        deepened(generator_widths, lambda g: (2 * g[0], *g)),
        deepened(discriminator_widths, lambda d: (*d, 2 * d[-1])),
    )


def _init(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """DCGAN's initialisation: weights from N(0, 0.02), batch norm scales N(1, 0.02)."""
    for module in modules.values():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    return modules


def generator(config: GeneratorConfig) -> dict[str, nn.Module]:
    """A linear projection of the noise (and one-hot label) to the smallest feature map, then one
    stride-2 transposed convolution per stage (``widths``), batch norm and ReLU between, Tanh at the end."""
    c, h, w = config.image_shape
    channels, stages = config.widths, len(config.widths)
    if _halvings(h) < stages or _halvings(w) < stages:
        most = min(_halvings(h), _halvings(w))
        raise GenoptError(
            f"dcgan cannot build {h}x{w} images with {stages} generator_channels stages: each stage doubles "
            f"height and width, so both must be multiples of {2**stages}; this size allows at most {most}"
        )
    h0, w0 = h >> stages, w >> stages
    project = nn.Linear(config.inputs, channels[0] * h0 * w0, bias=False)
    layers: list[nn.Module] = [nn.Unflatten(1, (channels[0], h0, w0)), nn.BatchNorm2d(channels[0]), nn.ReLU()]
    for fan_in, fan_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [
            nn.ConvTranspose2d(fan_in, fan_out, 4, 2, 1, bias=False),
            nn.BatchNorm2d(fan_out),
            nn.ReLU(),
        ]
    layers += [nn.ConvTranspose2d(channels[-1], c, 4, 2, 1), nn.Tanh()]
    return _init({"project": project, "body": nn.Sequential(*layers)})


def discriminator(config: DiscriminatorConfig, conditioning: Conditioning) -> dict[str, nn.Module]:
    """Stride-2 convolutions (``widths``) with LeakyReLU, flattened, then the heads.

    No batch norm: genopt's step passes real and fake images through D together (``train_step``),
    and batch statistics would mix the two; ``spectral_norm`` is the way to normalise D. With
    ``"concat"``, the one-hot label joins the image as constant planes.
    """
    c, h, w = config.image_shape
    channels, stages = config.widths, len(config.widths)
    if h >> stages < 1 or w >> stages < 1:
        raise GenoptError(
            f"dcgan cannot read {h}x{w} images with {stages} discriminator_channels stages: each halves "
            f"height and width, so both must be at least {2**stages}"
        )
    activation = nn.LeakyReLU(config.leaky_slope)
    in_channels = c + (config.num_classes if conditioning.joins_input else 0)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip((in_channels, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv2d(fan_in, fan_out, 4, 2, 1), activation]
    layers.append(nn.Flatten())
    features = channels[-1] * (h >> stages) * (w >> stages)
    return _init({"body": nn.Sequential(*layers), **heads(features, conditioning, config.head_classes)})


def discriminator_input(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """The images, the one-hot labels as constant planes after their channels (``num_classes`` 0: none)."""
    if num_classes == 0:
        return images
    planes = with_labels(images.new_zeros(len(images), 0), labels, num_classes)
    return torch.cat([images, planes[:, :, None, None].expand(-1, -1, *images.shape[2:])], dim=1)


ARCHITECTURE = Architecture(
    generator,
    discriminator,
    discriminator_input,
    "generator_channels",
    "discriminator_channels",
    widths_for_size,
)
