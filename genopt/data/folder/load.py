"""Reading an image folder into a dataset: the one public entry, ``load_image_folder``.

It checks the settings, scans the folder, hashes its files, takes the decoded tensors from the cache
or decodes them, reports the files that did not decode and splits the rest, recording how in the
dataset's details.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# The package itself, not names from it: ``genopt.data`` may import this module while it is
# still being initialised, so its names are looked up when a folder is loaded.
from genopt import data
from genopt.data.folder.cache import cache_path, read_cache, write_cache
from genopt.data.folder.decode import Decoded, cpus, decode_all
from genopt.data.folder.hashing import BACKGROUND, default_size, hash_files, sha256_with_settings
from genopt.data.folder.scan import ImageFiles, check_class_sizes, check_folder, scan_folder
from genopt.data.folder.splits import SPLIT_SEED, TEST_FRACTION, split_dataset
from genopt.errors import GenoptError


def load_image_folder(
    folder: Path,
    *,
    image_size: int | None = None,
    channels: str | int = "auto",
    strict: bool = False,
    workers: int | None = None,
    name: str | None = None,
) -> data.Dataset:
    """Read a folder of images into a dataset with train, validation and test splits.

    Args:
        folder: the folder, laid out as the package docstring (``genopt.data.folder``) says.
        image_size: the side of the square images; a positive multiple of 4. ``None`` picks 64 when
            the median short side of the images is at least 64, else 32.
        channels: ``"auto"`` (3 when any image has colour, else 1), 1 (grey, by Pillow's L formula)
            or 3 (RGB; grey images repeated).
        strict: refuse a folder with files that do not decode, instead of skipping them.
        workers: processes decoding in parallel; default one per CPU this process may use.
        name: the dataset's name; default the folder's.

    Returns:
        The dataset; its ``details`` hold ``content_sha256``, ``image_size``, ``channels``,
        ``background``, ``files`` (images decoded), ``classes``, ``ignored_files``, ``skipped_files``
        (and ``first_skipped``), ``split`` and ``counts``, ``cache`` (``hit`` or ``miss``),
        ``decode_s`` and ``images_per_s`` (of the decoding that made the cache), ``hash_s``,
        ``read_s`` and ``workers``.

    Raises:
        GenoptError: a bad setting, a missing or unreadable folder, a folder without images, a
            class with fewer than 2 images, mixed layouts, or no image that decodes.
    """
    started = time.perf_counter()
    channels = _check_settings(image_size, channels, workers)
    folder = Path(folder)
    check_folder(folder)
    files = scan_folder(folder)
    check_class_sizes(files, range(len(files.paths)), decoded=False)
    hash_started = time.perf_counter()
    content, sizes = hash_files(files, want_sizes=image_size is None)
    hash_s = time.perf_counter() - hash_started
    size = image_size or default_size(sizes)
    cache = cache_path(content, size, channels)
    decoded = read_cache(cache, size)
    hit = decoded is not None
    if decoded is None:
        decoded = decode_all(files, size, channels, workers or cpus())
        write_cache(decoded, cache)
    _report_skipped(files, decoded, strict, warn=not hit)  # warned once, when the files were decoded
    check_class_sizes(files, decoded.kept, decoded=True)
    resolved = decoded.images.shape[1]
    details = {
        "content_sha256": content,
        "image_size": size,
        "channels": resolved,
        "background": BACKGROUND,
        "files": len(decoded.kept),
        "classes": len(files.class_names),
        "ignored_files": files.ignored,
        "skipped_files": len(decoded.skipped),
        "cache": "hit" if hit else "miss",
        "hash_s": round(hash_s, 3),
        "decode_s": round(decoded.decode_s, 3),
        "images_per_s": round(len(decoded.kept) / max(decoded.decode_s, 1e-9), 1),
        "workers": decoded.workers,
    }
    if decoded.skipped:
        details["first_skipped"] = "{}: {}".format(*decoded.skipped[0])
    train, validation, test = split_dataset(files, decoded)
    details["split"] = (
        "test/ folder"
        if files.test_folder
        else f"seeded stratified split, seed {SPLIT_SEED}, 1/{TEST_FRACTION} of each class to test"
    )
    details["counts"] = {"train": len(train), "validation": len(validation), "test": len(test)}
    details["read_s"] = round(time.perf_counter() - started, 3)
    return data.Dataset(
        name=name or folder.resolve().name,
        source=f"image folder {folder.resolve()}",
        sha256=sha256_with_settings("dataset", content, size, resolved),
        num_classes=max(1, len(files.class_names)),
        train=train,
        validation=validation,
        test=test,
        class_names=files.class_names,
        labelled=files.labelled,
        details=details,
    )


def _check_settings(image_size: int | None, channels: str | int, workers: int | None) -> str | int:
    """The channel setting as ``"auto"``, 1 or 3, once every setting is known to be valid."""
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % 4
    ):
        raise GenoptError(f"image size must be a positive multiple of 4, not {image_size!r}")
    if str(channels) not in ("auto", "1", "3"):
        raise GenoptError(f"channels must be 'auto', 1 or 3, not {channels!r}")
    if workers is not None and workers < 1:
        raise GenoptError(f"workers must be at least 1, not {workers}")
    return "auto" if str(channels) == "auto" else int(channels)


def _report_skipped(files: ImageFiles, decoded: Decoded, strict: bool, *, warn: bool) -> None:
    """One warning line on stderr (when ``warn``) for files that did not decode; an error with ``strict``."""
    if not decoded.skipped or not (strict or warn):
        return
    count = len(decoded.skipped)
    path, why = decoded.skipped[0]
    first = f"first: {files.root / path}: {why}"
    files_do = "file that does" if count == 1 else "files that do"
    if strict:
        raise GenoptError(
            f"{files.root} holds {count} image {files_do} not decode ({first}); --strict refuses it"
        )
    print(f"warning: skipped {count} {files_do} not decode as images ({first})", file=sys.stderr)
