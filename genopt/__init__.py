"""genopt: hyperparameter search for GAN and cGAN generators, scored by FID, and their ensembles."""

from __future__ import annotations

from typing import Any

__all__ = ["load_ensemble"]


def __getattr__(name: str) -> Any:
    # Lazy, so `genopt --help` and the CLI's argument checks do not wait for torch to import.
    if name == "load_ensemble":
        from genopt.ensemble.generator import load_ensemble  # torch only, no Optuna

        return load_ensemble
    raise AttributeError(f"module 'genopt' has no attribute {name!r}")
