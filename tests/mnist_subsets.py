"""MNIST class subsets written as IDX folders, the way a user brings their own data."""

from __future__ import annotations

from pathlib import Path

import torch

from genopt.data.idx import IDX_NAMES, write_idx


def write_class_subset(
    mnist, folder: Path, classes: int, n_train: int, n_test: int, suffix: str = ""
) -> Path:
    """MNIST digits 0..classes-1 in ``folder``: the first n_train training and n_test test images.

    Training images come from MNIST's train and validation splits together; ``suffix`` is added to
    each IDX file name (".gz" for gzipped files).
    """
    images = torch.cat([mnist.train.images, mnist.validation.images]).squeeze(1)
    labels = torch.cat([mnist.train.labels, mnist.validation.labels])
    keep = (labels < classes).nonzero().squeeze(1)[:n_train]
    test_keep = (mnist.test.labels < classes).nonzero().squeeze(1)[:n_test]
    arrays = (
        images[keep],
        labels[keep],
        mnist.test.images.squeeze(1)[test_keep],
        mnist.test.labels[test_keep],
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / f"{name}{suffix}", array.numpy())
    return folder


def write_coloured_digits(
    images: torch.Tensor,
    labels: torch.Tensor,
    folder: Path,
    *,
    seed: int = 0,
    flat: bool = False,
    size: int = 32,
) -> Path:
    """MNIST digits as a user's folder of colour pictures: each digit drawn in its own random bright
    colour on black, padded to ``size`` pixels, every other image a PNG and the rest JPEGs (quality
    90), one subfolder per class named ``digit-K`` (``flat``: all in ``folder``, no classes).

    Args:
        images: uint8 (N, 1, 28, 28) digits.
        labels: their classes, (N,).
        folder: where the files go (created).
        seed: the colours' seed.
        flat: no class subfolders.
        size: the square size of every file, at least 28 (the digit is centred).
    """
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    # A random hue at full saturation and value: no colour is dark enough to read as background.
    hue = torch.rand(len(images), generator=generator) * 6
    sector, frac = hue.floor().long(), hue.frac()
    rise, fall, one, zero = frac, 1 - frac, torch.ones_like(frac), torch.zeros_like(frac)
    table = [(one, rise, zero), (fall, one, zero), (zero, one, rise), (zero, fall, one), (rise, zero, one)]
    table.append((one, zero, fall))
    colours = torch.zeros(len(images), 3)
    for s, (r, g, b) in enumerate(table):
        pick = sector == s
        colours[pick] = torch.stack([r, g, b], 1)[pick]
    pad = (size - images.shape[-1]) // 2
    digits = torch.nn.functional.pad(images.float() / 255, (pad, size - 28 - pad, pad, size - 28 - pad))
    rgb = (digits * colours[:, :, None, None] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, (array, label) in enumerate(zip(rgb, labels.tolist(), strict=True)):
        where = folder if flat else folder / f"digit-{label}"
        where.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(array, "RGB")
        if i % 2:
            picture.save(where / f"{i:05d}.jpg", quality=90)
        else:
            picture.save(where / f"{i:05d}.png")
    return folder
