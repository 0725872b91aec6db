"""A picture of what a generator draws: a grid of samples from fixed noise, so grids compare.

A conditional generator gets one row per class, with the same noise in every row (a column holds
one "style" across classes); an unconditional one gets a square grid. The noise is drawn from a
fixed seed, so two trials' grids differ only by what their generators learned (and ``noise_dim``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from genopt.models import Generator

GRID_NOISE_SEED = 2024
GRID_COLUMNS = 10
# Digits are 28 pixels; twice that is what a browser shows legibly without blurring.
GRID_SCALE = 2


@torch.no_grad()
def sample_grid(
    generator: Generator, *, columns: int = GRID_COLUMNS, seed: int = GRID_NOISE_SEED
) -> torch.Tensor:
    """A (C, H, W) image in [0, 1]: one row per class (conditional), else ``columns`` rows.

    Args:
        generator: any genopt generator; left in eval mode, its training state untouched.
        columns: images per row.
        seed: the noise seed; keep the default to compare grids across trials and studies.
    """
    device = next(generator.parameters()).device
    classes = generator.config.num_classes
    rows = classes or columns
    rng = torch.Generator("cpu").manual_seed(seed)
    if classes:
        z = torch.randn(columns, generator.config.noise_dim, generator=rng).repeat(rows, 1)
        labels = torch.arange(rows).repeat_interleave(columns).to(device)
    else:
        z = torch.randn(rows * columns, generator.config.noise_dim, generator=rng)
        labels = None
    was_training = generator.training
    generator.eval()
    images = generator(z.to(device), labels).float().cpu()
    generator.train(was_training)
    # A diverged generator draws NaN: show it as grey rather than fail.
    images = ((images.nan_to_num(0.0) + 1) / 2).clamp(0, 1)
    if GRID_SCALE > 1:
        images = F.interpolate(images, scale_factor=GRID_SCALE, mode="nearest")
    return make_grid(images, nrow=columns, padding=2 * GRID_SCALE, pad_value=1.0)


def save_grid(generator: Generator, path: str | Path) -> Path:
    """Write ``sample_grid(generator)`` as a PNG file at ``path`` and return the path."""
    path = Path(path)
    save_image(sample_grid(generator), path, format="png")
    return path
