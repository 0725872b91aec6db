"""Augmentations of the images a discriminator sees: the article's, and differentiable augmentation.

``article`` is the article's (torchvision's ``RandomHorizontalFlip`` and ``RandomRotation(30)``),
applied, as there, to real images only: the discriminator learns that mirrored and tilted digits
are real, and the generator is pushed to draw them. It is kept to measure that harm.

``diffaugment`` is DiffAugment's "translation,cutout" policy (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"): the same random transformations applied to real
and generated images alike, in the discriminator's step and the generator's, and differentiable,
so the generator's gradient passes through them. The discriminator never sees an un-augmented
image, and the generator gains nothing by drawing augmented ones.

Randomness comes only from the ``torch.Generator`` given (on the CPU; the draws are moved to the
images' device), so the same seed gives the same run on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

Augmentation = Callable[[torch.Tensor], torch.Tensor]
# DiffAugment's defaults: shifts of up to 1/8 of the side, a square cut of half the side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5
ARTICLE_DEGREES = 30.0


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Which of n images a transformation applies to, each with probability ``p`` (CPU bools)."""
    return torch.rand(n, generator=generator) < p


def translate(
    images: torch.Tensor, shift_h: torch.Tensor, shift_w: torch.Tensor, *, fill: float = 0.0
) -> torch.Tensor:
    """Each image moved by whole pixels (shift (N,) ints per axis), ``fill`` shifted in (DiffAugment's
    zeros by default); differentiable."""
    n, _, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1), value=fill).permute(0, 2, 3, 1)
    rows = (torch.arange(h, device=images.device) + shift_h[:, None] + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=images.device) + shift_w[:, None] + 1).clamp(0, w + 1)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Each image with the rectangle of ``size`` at (top, left) (N,) set to zero (clipped at the edges)."""
    _, _, h, w = images.shape
    rows = torch.arange(h, device=images.device)[None]
    cols = torch.arange(w, device=images.device)[None]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size[0])
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size[1])
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return images * keep.unsqueeze(1).to(images.dtype)


def diffaugment(images: torch.Tensor, *, p: float, generator: torch.Generator) -> torch.Tensor:
    """DiffAugment's translation, then its cutout, each applied to each image with probability ``p``.

    Translation moves an image by up to 1/8 of its height and width (zeros shifted in); cutout
    zeroes a square of half its side centred anywhere on it. With ``p = 0`` the images come back
    unchanged; with ``p = 1`` this is DiffAugment's "translation,cutout" policy.
    """
    n, _, h, w = images.shape
    device = images.device
    reach_h, reach_w = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    moved = _chosen(n, p, generator)
    shift_h = torch.randint(-reach_h, reach_h + 1, (n,), generator=generator) * moved
    shift_w = torch.randint(-reach_w, reach_w + 1, (n,), generator=generator) * moved
    images = translate(images, shift_h.to(device), shift_w.to(device))

    size = (int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5))
    cut = _chosen(n, p, generator)
    top = torch.randint(0, h + (1 - size[0] % 2), (n,), generator=generator) - size[0] // 2
    left = torch.randint(0, w + (1 - size[1] % 2), (n,), generator=generator) - size[1] // 2
    # An image left uncut gets its rectangle placed wholly above the image.
    top = torch.where(cut, top, torch.full_like(top, -size[0]))
    return cutout(images, top.to(device), left.to(device), size)


def flip_rotate(images: torch.Tensor, *, p: float, generator: torch.Generator) -> torch.Tensor:
    """The article's augmentation, applied to each image with probability ``p``.

    A horizontal flip with probability 1/2 and a rotation by an angle uniform in [-30, 30]
    degrees, nearest-pixel and filled with the background (-1, black), as torchvision's
    ``RandomHorizontalFlip()`` and ``RandomRotation(30)`` do. Images left alone come back exactly.
    """
    n = len(images)
    chosen = _chosen(n, p, generator)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(ARTICLE_DEGREES)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(n)
    # A rotation composed with a mirror in x: where each output pixel samples its input.
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, zero], 1), torch.stack([sin * sign, cos, zero], 1)], 1
    )
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample fills with 0: shifted so that the fill is the background, -1.
    turned = F.grid_sample(images + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1
    return torch.where(chosen.to(images.device).view(-1, 1, 1, 1), turned, images)


def augmentations(
    name: str, *, p: float, generator: torch.Generator
) -> tuple[Augmentation | None, Augmentation | None]:
    """What ``train_step`` applies to real and to generated images for the spec's ``augment``.

    Returns:
        ``(real, fake)``: ``none`` -> neither; ``article`` -> flips and rotations of real images
        only; ``diffaugment`` -> one and the same function for both.
    """
    if name == "none":
        return None, None
    if name == "article":
        return partial(flip_rotate, p=p, generator=generator), None
    if name == "diffaugment":
        both = partial(diffaugment, p=p, generator=generator)
        return both, both
    raise ValueError(f"unknown augment {name!r}: choose one of none, article, diffaugment")
