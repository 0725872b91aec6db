"""Sample grids from an exported ensemble, as PNG files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from genopt.ensemble.generator import EnsembleGenerator, load_ensemble
from genopt.errors import GenoptError
from genopt.files import atomic_write


def class_index(ensemble: EnsembleGenerator, label: int | str) -> int:
    """The index of the class ``label`` names: one of the ensemble's class names, or an index.

    A name wins over an index: ``"3"`` is the class named "3" when there is one (for IDX data that
    is class 3 anyway), else index 3.

    Raises:
        GenoptError: no class has that name or index; the message lists the names.
    """
    names = ensemble.class_names
    if isinstance(label, str):
        if label in names:
            return names.index(label)
        text = label.strip()
        if not (text.isascii() and text.removeprefix("-").isdigit()):
            raise GenoptError(
                f"unknown class {label!r}: this ensemble's classes are {', '.join(names)} "
                f"(or their indices 0..{len(names) - 1})"
            )
        label = int(text)
    if not 0 <= label < len(names):
        raise GenoptError(
            f"unknown label {label}: this ensemble draws classes 0..{len(names) - 1} ({', '.join(names)})"
        )
    return label


def sample_grid(
    *, checkpoint: str | Path, n: int = 64, label: int | str | None = None, seed: int = 0, out: str | Path
) -> Path:
    """Write a PNG grid of images sampled from the ensemble at ``checkpoint``.

    The PNG is RGB: colour for a 3-channel ensemble, grey (three equal channels) for a 1-channel one.

    Args:
        checkpoint: an ensemble ``.pt`` written by ``genopt ensemble`` (its JSON beside it).
        n: how many images. A conditional ensemble without ``label`` draws one row per class,
            ``ceil(n / classes)`` images each, so the grid may hold a few more than n.
        label: draw only this class (conditional ensembles only): its name (``class_index``) or index.
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
    if label is not None:
        label = class_index(ensemble, label)
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
