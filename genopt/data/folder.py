"""Folders of image files (PNG, JPEG, WebP, BMP, TIFF, GIF) as datasets.

Layout, as torchvision's ``ImageFolder`` has it or simpler:

* **Class subfolders**: each direct subfolder holding images is a class, named by the folder, its
  images found at any depth below it; labels follow the sorted folder names.
* **Flat**: images directly in the folder and no subfolder holding images: an unlabelled dataset
  (every label 0, one class, no class names).
* **train/ and test/**: a ``train`` subfolder and optionally a ``test`` one, each laid out in one of
  the two ways above (both the same way, with the same classes).

Without ``test/``, a seeded stratified split sends a seventh of each class to test. Validation is
then taken from train, stratified by class, ``min(10_000, len(train) // 6)`` images in all as for
IDX data. Each split is shuffled with a fixed seed, so the result depends only on the files.

Files whose names start with a dot are skipped, as are files without an image suffix (counted
as ignored). An image file that does not decode, or whose header claims more pixels than Pillow's
decompression-bomb limit, is skipped with one warning (an error with ``strict``). Every image is
composited on black if it has transparency, scaled to 8 bits, turned upright by its EXIF
orientation, resized so its short side is ``image_size`` and centre-cropped to a square. Decoded
tensors are cached under the content's sha256 and the settings, so a folder is decoded once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

# The package itself, not names from it: ``genopt.data`` may import this module while it is
# still being initialised, so its names are looked up when a folder is loaded.
from genopt import data, paths
from genopt.errors import GenoptError
from genopt.files import atomic_save

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Part of every image folder's sha256 and cache key: bump it when decoding or splitting changes.
READER_VERSION = 1
SPLIT_SEED = 0
# A seventh of each class goes to test when there is no test/ folder (MNIST's 10,000 of 70,000).
TEST_FRACTION = 7
BACKGROUND = "black"
# Below this many files, decoding in this process beats starting a pool of workers.
POOL_MIN_FILES = 200
_CHUNK_FILES = 64
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class _Files:
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


@dataclass(frozen=True)
class _Decoded:
    """Decoded images (N, C, S, S) of the files at ``kept``, and the files that did not decode."""

    images: torch.Tensor
    kept: list[int]
    skipped: list[tuple[str, str]]  # (file relative to the folder, why it did not decode)
    decode_s: float
    workers: int


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


def content_sha256(folder: Path) -> str:
    """The sha256 of a folder's image files (their names and bytes), as ``details["content_sha256"]``
    holds it, without decoding a file: enough to tell that a study's folder changed.

    Raises:
        GenoptError: the folder is missing, unreadable or laid out in a way genopt refuses.
    """
    folder = Path(folder)
    _check_folder(folder)
    return _hash_files(_scan(folder), want_sizes=False)[0]


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
        folder: the folder, laid out as the module docstring says.
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
    _check_folder(folder)
    files = _scan(folder)
    _check_class_sizes(files, range(len(files.paths)), decoded=False)
    hash_started = time.perf_counter()
    content, sizes = _hash_files(files, want_sizes=image_size is None)
    hash_s = time.perf_counter() - hash_started
    size = image_size or _default_size(sizes)
    cache = paths.cache_dir() / "images" / f"{_digest('cache', content, size, channels)[:24]}.pt"
    decoded = _read_cache(cache, size)
    hit = decoded is not None
    if decoded is None:
        decoded = _decode_all(files, size, channels, workers or _cpus())
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            atomic_save(_cache_payload(decoded), cache)
    _report_skipped(files, decoded, strict, warn=not hit)  # warned once, when the files were decoded
    _check_class_sizes(files, decoded.kept, decoded=True)
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
    train, validation, test = _splits(files, decoded)
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
        sha256=_digest("dataset", content, size, resolved),
        num_classes=max(1, len(files.class_names)),
        train=train,
        validation=validation,
        test=test,
        class_names=files.class_names,
        labelled=files.labelled,
        details=details,
    )


# Settings and the folder itself.


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


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise GenoptError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise GenoptError(f"{folder} is not a folder: pass a folder of images")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


# Finding the files and the layout.


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


def _scan(folder: Path) -> _Files:
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


def _files(folder: Path, train: _Part, test: _Part | None, ignored: int) -> _Files:
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
    return _Files(
        root=folder,
        paths=[e[1] for e in entries],
        labels=[e[2] for e in entries],
        in_test=[e[3] for e in entries],
        class_names=class_names,
        labelled=bool(class_names),
        test_folder=test is not None,
        ignored=ignored,
    )


def _check_class_sizes(files: _Files, indices, *, decoded: bool) -> None:
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


# Hashing and the default size.


def _hash_files(files: _Files, *, want_sizes: bool) -> tuple[str, list[tuple[int, int]]]:
    """The sha256 of every image file's relative path and bytes, and the sizes in their headers if wanted."""
    digest = hashlib.sha256()
    sizes = []
    for path in _progress(files.paths, "reading"):
        try:
            raw = path.read_bytes()
        except PermissionError:
            raise GenoptError(f"cannot read {path}: permission denied") from None
        except OSError as exc:
            raise GenoptError(f"cannot read {path}: {exc.strerror or exc}") from None
        digest.update(path.relative_to(files.root).as_posix().encode() + b"\0")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
        if want_sizes:
            size = _header_size(raw)
            if size is not None:
                sizes.append(size)
    return digest.hexdigest(), sizes


def _header_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None when it has no valid header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                return img.size
    except Exception:
        return None


def _default_size(sizes: list[tuple[int, int]]) -> int:
    """64 when the median short side is at least 64, else 32."""
    return 64 if sizes and statistics.median(min(s) for s in sizes) >= 64 else 32


def _digest(*parts: object) -> str:
    """The sha256 of a folder's content with the settings that shape its tensors."""
    text = "\0".join(str(p) for p in (*parts, BACKGROUND, READER_VERSION))
    return hashlib.sha256(text.encode()).hexdigest()


# Decoding.


def _decode_all(files: _Files, size: int, channels: str | int, workers: int) -> _Decoded:
    """Decode every file, in a pool of processes unless the folder is small, into (N, C, S, S) uint8."""
    mode = {1: "L", 3: "RGB"}.get(channels)
    jobs = [str(p) for p in files.paths]
    per_chunk = max(1, min(_CHUNK_FILES, math.ceil(len(jobs) / (workers * 4))))
    chunks = [(start, jobs[start : start + per_chunk]) for start in range(0, len(jobs), per_chunk)]
    workers = min(workers, len(chunks)) if len(jobs) >= POOL_MIN_FILES else 1
    results: list[tuple[np.ndarray | None, str]] = [(None, "")] * len(jobs)
    started = time.perf_counter()
    with _progress(None, "decoding", total=len(jobs)) as bar:
        if workers == 1:
            for start, chunk in chunks:
                results[start : start + len(chunk)] = _decode_chunk(chunk, size, mode, Image.MAX_IMAGE_PIXELS)
                bar.update(len(chunk))
        else:
            _decode_in_pool(files.root, chunks, results, (size, mode, Image.MAX_IMAGE_PIXELS), workers, bar)
    decode_s = time.perf_counter() - started
    kept = [i for i, (array, _) in enumerate(results) if array is not None]
    skipped = [
        (files.paths[i].relative_to(files.root).as_posix(), why)
        for i, (a, why) in enumerate(results)
        if a is None
    ]
    if not kept:
        raise GenoptError(
            f"none of the {len(jobs)} image files in {files.root} decode "
            f"(first: {files.paths[0]}: {results[0][1]})"
        )
    images = _stack([results[i][0] for i in kept], channels, size)
    return _Decoded(images, kept, skipped, decode_s, workers)


def _decode_in_pool(root: Path, chunks, results, settings, workers: int, bar) -> None:
    # fork where there is one: workers need only Pillow, and a spawned one would import torch first
    # (seconds). The children never touch torch, so its threads in this process are no hazard.
    context = (
        multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    )
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {
                pool.submit(_decode_chunk, chunk, *settings): (start, chunk) for start, chunk in chunks
            }
            for future in as_completed(futures):
                start, chunk = futures[future]
                results[start : start + len(chunk)] = future.result()
                bar.update(len(chunk))
    except BrokenProcessPool:
        raise GenoptError(
            f"a process decoding the images in {root} died (out of memory?); try fewer workers"
        ) from None


def _stack(arrays: list[np.ndarray], channels: str | int, size: int) -> torch.Tensor:
    """Grey (S, S) and RGB (S, S, 3) arrays as one (N, C, S, S) tensor; grey ones repeated when C is 3."""
    if channels == "auto":
        channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    images = torch.empty((len(arrays), channels, size, size), dtype=torch.uint8)
    out = images.numpy()
    for i, array in enumerate(arrays):
        out[i] = array if array.ndim == 2 else array.transpose(2, 0, 1)
    return images


def _decode_chunk(
    chunk: list[str], size: int, mode: str | None, max_pixels: int | None
) -> list[tuple[np.ndarray | None, str]]:
    """Decode files to (S, S) or (S, S, 3) uint8 arrays; a file that fails gives (None, why)."""
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for path in chunk:
            try:
                results.append((_decode_image(path, size, mode, max_pixels), ""))
            except Exception as exc:  # any failure to decode means a file to skip
                results.append((None, _reason(exc)))
    return results


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow can identify"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _decode_image(path: str, size: int, mode: str | None, max_pixels: int | None) -> np.ndarray:
    """One file as an upright square ``size`` x ``size`` array, grey (S, S) or RGB (S, S, 3).

    ``mode`` is ``"L"`` or ``"RGB"`` to force the channels; None keeps an image grey unless it has colour.
    """
    with Image.open(path) as img:
        width, height = img.size
        if max_pixels and width * height > max_pixels:  # never decode a decompression bomb
            raise Image.DecompressionBombError(
                f"{width}x{height} pixels exceed Pillow's limit of {max_pixels} (decompression bomb?)"
            )
        img.draft(None, (2 * size, 2 * size))  # JPEG: decode at a reduced scale (1/2 to 1/8)
        img.load()
        _orient(img)
        img = _grey_or_rgb(img)
        if mode is not None:
            img = img.convert(mode) if img.mode != mode else img
        elif img.mode == "RGB" and not _has_colour(img):
            img = img.getchannel(0)  # what Pillow's L formula gives when R = G = B
        return np.asarray(_square(img, size))


def _orient(img: Image.Image) -> None:
    """Turn ``img`` upright by its EXIF orientation, in place; a broken EXIF block leaves it as it is."""
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(img, in_place=True)


def _grey_or_rgb(img: Image.Image) -> Image.Image:
    """``img`` as L or RGB: transparency composited on black, 16 bits scaled to 8, other spaces as RGB."""
    if img.mode in _SIXTEEN_BIT:
        return _eight_bit(img)
    if img.mode.endswith(("A", "a")) or "transparency" in img.info:
        return _on_black(img)
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "F"):
        return img.convert("L")  # F: values clipped to [0, 255]
    return img.convert("RGB")  # P, CMYK, YCbCr, RGBX, ...


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grey image as L: 0..65535 onto 0..255, rounded.

    Mode I holding only values up to 255 is taken as 8-bit data in a wide container.
    """
    values = np.asarray(img).astype(np.int64)
    if img.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = (values.clip(0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(values.clip(0, 255).astype(np.uint8))


def _on_black(img: Image.Image) -> Image.Image:
    """An image with alpha (or a transparent colour) composited on black, as L or RGB."""
    grey = img.mode in ("1", "L", "LA", "La")
    with_alpha = img.convert("LA" if grey else "RGBA")
    out = Image.new(with_alpha.mode[:-1], with_alpha.size, 0)
    out.paste(with_alpha, mask=with_alpha.getchannel("A"))
    return out


def _has_colour(img: Image.Image) -> bool:
    """Whether an RGB image has a pixel with R != G or G != B."""
    red, green, blue = img.split()
    return bool(ImageChops.difference(red, green).getbbox() or ImageChops.difference(green, blue).getbbox())


def _square(img: Image.Image, size: int) -> Image.Image:
    """The centre square of ``img``, resized (antialiased, bilinear) to ``size`` x ``size``.

    The same as scaling the short side to ``size`` and cropping the centre (torchvision's
    ``Resize(size, antialias=True)`` then ``CenterCrop(size)``), in one resampling.
    """
    width, height = img.size
    if width == height == size:
        return img
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + short, top + short))


def _progress(items, what: str, total: int | None = None) -> tqdm:
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    return tqdm(items, total=total, desc=what, unit="img", file=sys.stderr, disable=not sys.stderr.isatty())


# The cache.


def _cache_payload(decoded: _Decoded) -> dict:
    return {
        "reader_version": READER_VERSION,
        "images": decoded.images,
        "kept": torch.tensor(decoded.kept, dtype=torch.int64),
        "skipped": [list(s) for s in decoded.skipped],
        "decode_s": decoded.decode_s,
        "workers": decoded.workers,
    }


def _read_cache(path: Path, size: int) -> _Decoded | None:
    """The decoded images cached at ``path``; None when missing, unreadable or not as expected."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        images, kept = payload["images"], payload["kept"].tolist()
        ok = (
            payload["reader_version"] == READER_VERSION
            and images.dtype == torch.uint8
            and images.ndim == 4
            and tuple(images.shape[2:]) == (size, size)
            and len(images) == len(kept)
        )
        if not ok:
            return None
        skipped = [(str(p), str(why)) for p, why in payload["skipped"]]
        return _Decoded(images, kept, skipped, float(payload["decode_s"]), int(payload["workers"]))
    except Exception:  # a damaged cache file is decoded again and overwritten
        return None


# Skipped files and splits.


def _report_skipped(files: _Files, decoded: _Decoded, strict: bool, *, warn: bool) -> None:
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


def _splits(files: _Files, decoded: _Decoded) -> tuple[data.Split, data.Split, data.Split]:
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
