"""Statistics of the real splits, computed once per dataset and feature net and kept on disk.

Every trial in every process scores against the same validation (and, for reporting, test)
statistics, so featurizing a split is paid for once. Files are named ``{key}-{name}.pt`` where the key
holds the data's sha256, the feature net's cache key and ``STATISTICS_VERSION``: changed data, a
changed net or a changed feature computation never reads a stale file.

A split's statistics are one format, a ``SampleStatistics`` dict in ``{split}-classes.pt``. Caches
written before that also hold pooled-only files (``validation``: torchmetrics' FID states; ``test``:
a mean and covariance); they are no longer read, and a split whose statistics exist only in such a
file is featurized again, with one line on stderr saying so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genopt import paths
from genopt.data import Dataset
from genopt.files import atomic_save

# Part of the statistics' cache key: bump it when the feature computation changes numerically (2: the
# feature net's channels-last forward, equal to version 1's within float rounding) so cached
# reference statistics always come from the forward pass that featurizes the generated images.
# Per-class statistics went into files of their own (``{split}-classes``), which hold the pooled
# moments too and became the one format, so files already written stayed valid. 3: the files count
# unsure samples too (``SampleStatistics.unsure``), which version 2's lack.
STATISTICS_VERSION = 3
# The pooled-only file each split's statistics were kept in before ``{split}-classes`` held them all.
_OLD_FORMAT = {"validation-classes": "validation", "test-classes": "test"}


class ReferenceCache:
    """One folder of cached reference statistics for one dataset and one feature net.

    Args:
        dataset: whose splits the statistics describe.
        feature_key: the feature net's ``cache_key``.
        folder: where the files live; ``<cache>/fid`` by default.
    """

    def __init__(self, dataset: Dataset, feature_key: str, folder: Path | None = None) -> None:
        self.folder = paths.cache_dir() / "fid" if folder is None else folder
        self.key = f"{dataset.sha256[:16]}-{feature_key}-{STATISTICS_VERSION}"
        self._told = False

    def path(self, name: str) -> Path:
        """The file for ``name``: ``{split}-classes`` (a split's ``SampleStatistics``: pooled and
        per-class moments and counts), ``floor`` or ``intra-floor``."""
        return self.folder / f"{self.key}-{name}.pt"

    def load(self, name: str) -> dict[str, Any] | None:
        """The saved dict, or None when nothing is saved yet."""
        path = self.path(name)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, name: str, value: dict[str, Any]) -> None:
        """Write atomically: a reader in another process sees the old state or the whole file."""
        atomic_save(value, self.path(name))

    def get(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The saved dict, or ``compute()`` saved now. Two processes racing both write the same."""
        saved = self.load(name)
        if saved is None:
            self._tell_if_old_format(name)
            saved = compute()
            self.save(name, saved)
        return saved

    def _tell_if_old_format(self, name: str) -> None:
        """One line on stderr, once per cache, when ``name`` is computed again only because its
        statistics exist solely in an old pooled-only file."""
        old = _OLD_FORMAT.get(name)
        if self._told or old is None or not self.path(old).exists():
            return
        self._told = True
        print(
            f"genopt: reference statistics in {self.folder} are in an old format; "
            "featurizing the real splits again, once",
            file=sys.stderr,
        )
