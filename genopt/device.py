"""Where tensors live: the default device, and where sampling noise is drawn."""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else ``cuda`` when a GPU is visible, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rng_device(generator: torch.Generator | None) -> torch.device:
    """Where to draw sampling noise: ``generator``'s device, else the CPU.

    Noise is drawn there and then moved to the model, so one seed gives the same noise, and so the
    same images and FID, whether the model runs on the CPU or a GPU.
    """
    return generator.device if generator is not None else torch.device("cpu")
