"""Sample grids from an exported ensemble, as PNG files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from genopt.ensemble.generator import load_ensemble
from genopt.errors import GenoptError
from genopt.files import atomic_write


def sample_grid(
    *, checkpoint: str | Path, n: int = 64, label: int | None = None, seed: int = 0, out: str | Path
) -> Path:
    """Write a PNG grid of images sampled from the ensemble at ``checkpoint``.

    Args:
        checkpoint: an ensemble ``.pt`` written by ``genopt ensemble`` (its JSON beside it).
        n: how many images. A conditional ensemble without ``label`` draws one row per class,
            ``ceil(n / classes)`` images each, so the grid may hold a few more than n.
        label: draw only this class (conditional ensembles only).
        seed: the same seed gives the same grid.
        out: the PNG to write.

    Returns:
        The path written.

    Raises:
        GenoptError: a bad n or label, or a checkpoint ``load_ensemble`` refuses.
    """
    if n < 1:
        raise GenoptError(f"--n must be at least 1, got {n}")
    out = Path(out)
    if not out.parent.is_dir():
        raise GenoptError(f"--out: folder {out.parent} does not exist")
    ensemble = load_ensemble(checkpoint)
    classes = ensemble.num_classes
    if label is not None and not ensemble.conditional:
        raise GenoptError(f"{checkpoint} is unconditional: it takes no --label")
    if label is not None and not 0 <= label < classes:
        raise GenoptError(f"unknown label {label}: this ensemble draws classes 0..{classes - 1}")
    generator = torch.Generator().manual_seed(seed)
    if ensemble.conditional and label is None:
        per_row = math.ceil(n / classes)
        labels = torch.arange(classes).repeat_interleave(per_row)
        images, columns = ensemble.sample(len(labels), labels, generator=generator), per_row
    else:
        images = ensemble.sample(n, label, generator=generator)
        columns = math.ceil(math.sqrt(n))
    buffer = io.BytesIO()
    save_image(images, buffer, nrow=columns, padding=2, pad_value=1.0, format="png")
    atomic_write(out, buffer.getvalue())
    return out
