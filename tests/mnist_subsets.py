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
