"""An image folder's files and layout: class subfolders, flat, or train/ and test/.

``scan_folder`` lists every image file under a folder in sorted order with its label and whether it
belongs to test/, after checking the layout; ``check_class_sizes`` refuses a class with fewer than two
images. Nothing here opens an image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genopt.errors import GenoptError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class ImageFiles:
    """The image files under a folder in sorted order, and what its layout says about each."""

    root: Path
    paths: list[Path]
    labels: list[int]
    in_test: list[bool]
    class_names: tuple[str, ...]
    labelled: bool
    test_folder: bool
    ignored: int

    def class_dir(self, label: int) -> Path:
        """The folder holding class ``label``'s training images (the whole train part when flat)."""
        base = self.root / "train" if self.test_folder else self.root
        return base / self.class_names[label] if self.labelled else base


def is_image_folder(folder: Path) -> bool:
    """Whether ``folder`` holds, at any depth, a file with an image suffix (hidden ones aside)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(_is_image_name(f) for f in files):
            return True
    return False


def check_folder(folder: Path) -> None:
    """Refuse a ``folder`` that is missing or is not a folder."""
    if not folder.exists():
        raise GenoptError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise GenoptError(f"{folder} is not a folder: pass a folder of images")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _list_dir(folder: Path) -> tuple[list[Path], list[Path], int]:
    """The image files and the subfolders directly in ``folder``, sorted, and how many other files."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        raise GenoptError(f"cannot read {folder}: permission denied") from None
    except OSError as exc:
        raise GenoptError(f"cannot read {folder}: {exc.strerror or exc}") from None
    images, dirs, ignored = [], [], 0
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            dirs.append(Path(entry.path))
        elif entry.is_file():
            if _is_image_name(entry.name):
                images.append(Path(entry.path))
            else:
                ignored += 1
    return images, dirs, ignored


def _walk(folder: Path) -> tuple[list[Path], int]:
    """The image files at any depth below ``folder``, sorted, and how many other files there are."""

    def fail(exc: OSError) -> None:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or exc
        raise GenoptError(f"cannot read {exc.filename}: {reason}")

    images, ignored = [], 0
    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if _is_image_name(name):
                images.append(Path(root) / name)
            elif not name.startswith("."):
                ignored += 1
    return sorted(images), ignored


@dataclass(frozen=True)
class _Part:
    """One folder laid out with classes (``classes`` non-empty) or flat (``loose`` non-empty)."""

    root: Path
    classes: dict[str, list[Path]]
    loose: list[Path]
    ignored: int


def _scan_part(root: Path, listing: tuple[list[Path], list[Path], int] | None = None) -> _Part:
    images, dirs, ignored = listing or _list_dir(root)
    classes = {}
    for sub in dirs:
        found, others = _walk(sub)
        ignored += others
        if found:
            classes[sub.name] = found
    if classes and images:
        raise GenoptError(
            f"{root} mixes layouts: {images[0].name} lies beside class folders such as "
            f"{next(iter(classes))}/; put every image in a class folder, or keep only loose images"
        )
    if not classes and not images:
        if not dirs and not ignored:
            raise GenoptError(f"{root} is empty: it needs image files ({' '.join(IMAGE_SUFFIXES)})")
        raise GenoptError(
            f"{root} holds no image files ({' '.join(IMAGE_SUFFIXES)}); {ignored} other files are ignored"
        )
    return _Part(root, classes, images, ignored)


def scan_folder(folder: Path) -> ImageFiles:
    """Every image file under ``folder`` with its label and split, after checking the layout."""
    images, dirs, ignored = _list_dir(folder)
    by_name = {d.name: d for d in dirs}
    if "train" not in by_name or images:
        return _files(folder, _scan_part(folder, (images, dirs, ignored)), None, 0)
    for other in sorted(set(by_name) - {"train", "test"}):
        found, others = _walk(by_name[other])
        if found:
            raise GenoptError(
                f"{folder} holds {other}/ beside train/: with a train/ folder, images belong in "
                "train/ and optionally test/ only"
            )
        ignored += others
    train = _scan_part(by_name["train"])
    test = _scan_part(by_name["test"]) if "test" in by_name else None
    if test is not None:
        _check_same_classes(folder, train, test)
    return _files(folder, train, test, ignored)


def _check_same_classes(folder: Path, train: _Part, test: _Part) -> None:
    if bool(train.classes) != bool(test.classes):
        with_classes, without = ("train/", "test/") if train.classes else ("test/", "train/")
        raise GenoptError(
            f"{folder}: {with_classes} holds class folders but {without} holds loose images; "
            "lay both out the same way"
        )
    missing, extra = (
        sorted(set(train.classes) - set(test.classes)),
        sorted(set(test.classes) - set(train.classes)),
    )
    if missing or extra:
        parts = [f"missing from test/: {', '.join(missing)}"] * bool(missing)
        parts += [f"not in train/: {', '.join(extra)}"] * bool(extra)
        raise GenoptError(f"{folder}: the classes of test/ differ from train/'s ({'; '.join(parts)})")


def _files(folder: Path, train: _Part, test: _Part | None, ignored: int) -> ImageFiles:
    class_names = tuple(sorted(train.classes))
    label = {name: i for i, name in enumerate(class_names)}
    entries = []
    for part, in_test in ((train, False), (test, True)):
        if part is None:
            continue
        for path in part.loose:
            entries.append((path.relative_to(folder).as_posix(), path, 0, in_test))
        for name, found in part.classes.items():
            entries.extend((p.relative_to(folder).as_posix(), p, label[name], in_test) for p in found)
        ignored += part.ignored
    entries.sort(key=lambda e: e[0])
    return ImageFiles(
        root=folder,
        paths=[e[1] for e in entries],
        labels=[e[2] for e in entries],
        in_test=[e[3] for e in entries],
        class_names=class_names,
        labelled=bool(class_names),
        test_folder=test is not None,
        ignored=ignored,
    )


def check_class_sizes(files: ImageFiles, indices, *, decoded: bool) -> None:
    """Every class of the train part (the whole folder without test/) needs two images."""
    counts = np.zeros(max(1, len(files.class_names)), dtype=np.int64)
    for i in indices:
        if not files.in_test[i]:
            counts[files.labels[i]] += 1
    for label, count in enumerate(counts.tolist()):
        if count < 2:
            which = "class folder" if files.labelled else "folder"
            that = " that decode" if decoded else ""
            raise GenoptError(
                f"{which} {files.class_dir(label)} holds {count} image{'s' * (count != 1)}{that}: "
                "it needs at least 2"
            )
