"""The decode cache: an image folder's decoded tensors on disk, one file per content and settings.

A file lives under ``paths.cache_dir() / "images"``, named by the content's sha256 with the size and
channels, so a folder is decoded once per setting; a missing, damaged or outdated one is decoded again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from genopt import paths
from genopt.data.folder.decode import Decoded
from genopt.data.folder.hashing import READER_VERSION, sha256_with_settings
from genopt.files import atomic_save


def cache_path(content: str, size: int, channels: str | int) -> Path:
    """Where the tensors decoded from the content with sha256 ``content`` at these settings are cached."""
    return paths.cache_dir() / "images" / f"{sha256_with_settings('cache', content, size, channels)[:24]}.pt"


def write_cache(decoded: Decoded, path: Path) -> None:
    """Cache ``decoded`` at ``path``, atomically."""
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        atomic_save(_cache_payload(decoded), path)


def _cache_payload(decoded: Decoded) -> dict:
    return {
        "reader_version": READER_VERSION,
        "images": decoded.images,
        "kept": torch.tensor(decoded.kept, dtype=torch.int64),
        "skipped": [list(s) for s in decoded.skipped],
        "decode_s": decoded.decode_s,
        "workers": decoded.workers,
    }


def read_cache(path: Path, size: int) -> Decoded | None:
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
        return Decoded(images, kept, skipped, float(payload["decode_s"]), int(payload["workers"]))
    except Exception:  # a damaged cache file is decoded again and overwritten
        return None
