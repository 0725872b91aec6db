"""The labels every generator is asked for: the validation split's class balance, in a fixed order."""

from __future__ import annotations

import torch

# Fixed so that evaluation_labels is the same list in every process and every trial.
LABEL_SEED = 0


def class_allocation(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Split n among classes in proportion to ``counts`` by largest remainder (ties to lower class)."""
    quotas = counts.double() * n / counts.sum()
    allocation = quotas.floor().long()
    short = n - int(allocation.sum())
    # Stable sort keeps ties in class order, so the allocation is the same everywhere.
    order = torch.sort(quotas - allocation, descending=True, stable=True).indices
    allocation[order[:short]] += 1
    return allocation


def evaluation_labels(counts: torch.Tensor, n: int) -> torch.Tensor:
    """n class labels in the proportions of ``counts`` (largest remainder), in a seeded shuffled order.

    The same n always gives the same labels in the same order, so any prefix is also close to
    balanced, and every generator scored on n samples is asked for the same classes.
    """
    allocation = class_allocation(counts, n)
    labels = torch.repeat_interleave(torch.arange(len(allocation)), allocation)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(LABEL_SEED))
    return labels[order]
