"""Train, validation and test splits of an image folder's decoded images, stratified by class.

Test is the test/ folder, or without one a seeded draw of a seventh of each class; validation is drawn
from the rest, stratified, ``min(10_000, len(train) // 6)`` images as for IDX data. Each split is
shuffled with a fixed seed, so the result depends only on the files; a change to how files are split
bumps ``hashing.READER_VERSION``.
"""

from __future__ import annotations

import numpy as np
import torch

# The package itself, not names from it: ``genopt.data`` may import this module while it is
# still being initialised, so its names are looked up when a folder is loaded.
from genopt import data
from genopt.data.folder.decode import Decoded
from genopt.data.folder.scan import ImageFiles
from genopt.errors import GenoptError

SPLIT_SEED = 0
# A seventh of each class goes to test when there is no test/ folder (MNIST's 10,000 of 70,000).
TEST_FRACTION = 7


def split_dataset(files: ImageFiles, decoded: Decoded) -> tuple[data.Split, data.Split, data.Split]:
    """Train, validation and test, each shuffled; test from test/ or a seeded stratified split."""
    labels = np.array([files.labels[i] for i in decoded.kept], dtype=np.int64)
    in_test = np.array([files.in_test[i] for i in decoded.kept], dtype=bool)
    num_classes = max(1, len(files.class_names))
    rng = np.random.default_rng(SPLIT_SEED)
    everything = np.arange(len(labels))
    if files.test_folder:
        pool, test = everything[~in_test], everything[in_test]
    else:
        counts = np.bincount(labels, minlength=num_classes)
        # A seventh (rounded half up) of each class, at least one, leaving at least one for train.
        quotas = np.minimum(counts - 1, np.maximum(1, (2 * counts + TEST_FRACTION) // (2 * TEST_FRACTION)))
        pool, test = _take_per_class(labels, everything, quotas, rng)
    counts = np.bincount(labels[pool], minlength=num_classes)
    wanted = min(data.VALIDATION_SIZE, len(pool) // 6)
    train, validation = _take_per_class(labels, pool, _apportion(counts, wanted), rng)
    if not len(validation) or not len(test):
        raise GenoptError(
            f"{files.root} holds too few images ({len(labels)} that decode) for train, validation "
            "and test splits: add images"
        )
    images = decoded.images
    return tuple(
        data.Split(images[torch.from_numpy(idx)], torch.from_numpy(labels[idx]))
        for idx in (rng.permutation(train), rng.permutation(validation), rng.permutation(test))
    )


def _take_per_class(
    labels: np.ndarray, indices: np.ndarray, quotas: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``indices`` split into (the rest, ``quotas[c]`` drawn at random from each class c)."""
    rest, taken = [], []
    for label, quota in enumerate(quotas.tolist()):
        members = rng.permutation(indices[labels[indices] == label])
        taken.append(members[:quota])
        rest.append(members[quota:])
    return np.concatenate(rest), np.concatenate(taken)


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` shared over classes in proportion to ``counts`` (largest remainders), each class
    keeping at least one of its own."""
    caps = np.maximum(counts - 1, 0)
    exact = total * counts / max(1, counts.sum())
    shares = np.minimum(np.floor(exact).astype(np.int64), caps)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while shares.sum() < total and (shares < caps).any():
        for label in order:
            if shares.sum() < total and shares[label] < caps[label]:
                shares[label] += 1
    return shares
