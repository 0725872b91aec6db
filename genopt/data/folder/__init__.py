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

The modules, in the order a folder is read: ``scan`` (the files and the layout), ``hashing`` (the
content's sha256 and the default size), ``decode`` (Pillow, in a pool of processes), ``cache`` (the
decoded tensors on disk), ``splits`` (train, validation and test) and ``load``, which runs them in turn.
"""

from __future__ import annotations

from genopt.data.folder.hashing import content_sha256
from genopt.data.folder.load import load_image_folder
from genopt.data.folder.scan import is_image_folder

__all__ = ["content_sha256", "is_image_folder", "load_image_folder"]
