"""Statistics of the real splits, computed once per dataset and feature net and kept on disk.

Every trial in every process scores against the same validation (and, for reporting, test)
statistics, so featurizing a split is paid for once. Files are named ``{key}-{name}.pt`` where the key
holds the data's sha256, the feature net's cache key and ``STATISTICS_VERSION``: changed data, a
changed net or a changed feature computation never reads a stale file.
"""

from __future__ import annotations

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
# Per-class statistics went into files of their own, so adding them left the pooled files valid.
STATISTICS_VERSION = 2


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

    def path(self, name: str) -> Path:
        """The file for ``name``: ``validation`` (pooled, torchmetrics' states), ``test`` (pooled
        mean and covariance), ``floor``, ``{split}-classes`` (``SampleStatistics``), ``intra-floor``."""
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
            saved = compute()
            self.save(name, saved)
        return saved
