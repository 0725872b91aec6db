"""What identifies an image folder: the sha256 of its files, and of those with the settings.

The files' sha256 (their relative paths and bytes) tells that a folder changed without decoding it;
with the settings that shape the tensors it keys the decode cache and names the dataset. The image
sizes in the files' headers, read while hashing, give the default image size.
"""

from __future__ import annotations

import hashlib
import io
import statistics
import warnings
from pathlib import Path

from PIL import Image

from genopt.data.folder.decode import progress
from genopt.data.folder.scan import ImageFiles, check_folder, scan_folder
from genopt.errors import GenoptError

# Part of every image folder's sha256 and cache key: bump it when decoding or splitting changes.
READER_VERSION = 1
# What transparent pixels are composited on (in decode.py); part of every sha256 with the settings.
BACKGROUND = "black"


def content_sha256(folder: Path) -> str:
    """The sha256 of a folder's image files (their names and bytes), as ``details["content_sha256"]``
    holds it, without decoding a file: enough to tell that a study's folder changed.

    Raises:
        GenoptError: the folder is missing, unreadable or laid out in a way genopt refuses.
    """
    folder = Path(folder)
    check_folder(folder)
    return hash_files(scan_folder(folder), want_sizes=False)[0]


def hash_files(files: ImageFiles, *, want_sizes: bool) -> tuple[str, list[tuple[int, int]]]:
    """The sha256 of every image file's relative path and bytes, and the sizes in their headers if wanted."""
    digest = hashlib.sha256()
    sizes = []
    for path in progress(files.paths, "reading"):
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


def default_size(sizes: list[tuple[int, int]]) -> int:
    """64 when the median short side is at least 64, else 32."""
    return 64 if sizes and statistics.median(min(s) for s in sizes) >= 64 else 32


def sha256_with_settings(*parts: object) -> str:
    """The sha256 of a folder's content with the settings that shape its tensors."""
    text = "\0".join(str(p) for p in (*parts, BACKGROUND, READER_VERSION))
    return hashlib.sha256(text.encode()).hexdigest()
