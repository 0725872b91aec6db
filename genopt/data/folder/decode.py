"""Decoding image files with Pillow into uint8 tensors, in a pool of processes unless few.

Each file becomes an upright square: transparency composited on black, 16 bits scaled to 8, turned by
its EXIF orientation, its short side resized to the image size and its centre cropped. A file that
does not decode, or whose header claims more pixels than Pillow's decompression-bomb limit, is kept
as a reason instead of an image. A change to what a file decodes to bumps ``hashing.READER_VERSION``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
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

from genopt.data.folder.scan import ImageFiles
from genopt.errors import GenoptError

# Below this many files, decoding in this process beats starting a pool of workers.
POOL_MIN_FILES = 200
_CHUNK_FILES = 64
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class Decoded:
    """Decoded images (N, C, S, S) of the files at ``kept``, and the files that did not decode."""

    images: torch.Tensor
    kept: list[int]
    skipped: list[tuple[str, str]]  # (file relative to the folder, why it did not decode)
    decode_s: float
    workers: int


def cpus() -> int:
    """The CPUs this process may use: the default number of decoding processes."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_all(files: ImageFiles, size: int, channels: str | int, workers: int) -> Decoded:
    """Decode every file, in a pool of processes unless the folder is small, into (N, C, S, S) uint8."""
    mode = {1: "L", 3: "RGB"}.get(channels)
    jobs = [str(p) for p in files.paths]
    per_chunk = max(1, min(_CHUNK_FILES, math.ceil(len(jobs) / (workers * 4))))
    chunks = [(start, jobs[start : start + per_chunk]) for start in range(0, len(jobs), per_chunk)]
    workers = min(workers, len(chunks)) if len(jobs) >= POOL_MIN_FILES else 1
    results: list[tuple[np.ndarray | None, str]] = [(None, "")] * len(jobs)
    started = time.perf_counter()
    with progress(None, "decoding", total=len(jobs)) as bar:
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
    return Decoded(images, kept, skipped, decode_s, workers)


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


def progress(items, what: str, total: int | None = None) -> tqdm:
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    return tqdm(items, total=total, desc=what, unit="img", file=sys.stderr, disable=not sys.stderr.isatty())
