"""The tests' one tiny spec: MLPs of width 16 trained on 64 images in batches of 8 for one epoch, no
weight average. A test that needs more (more images, a DCGAN, several epochs) says so with
``tiny_spec(...)``, so each difference from the shared spec is written where it matters."""

from __future__ import annotations

import dataclasses
from typing import Any

from genopt.spec import RunConfig, StudySpec

TINY = StudySpec(
    generator_widths=(16,),
    discriminator_widths=(16,),
    batch_size=8,
    max_epochs=1,
    train_limit=64,
    ema_decay=0.0,
)
# The parameters a tiny trial trains with, where a test does not search them.
TINY_PARAMS = {"lr": 1e-3, "noise_dim": 8}


def tiny_spec(**changes: Any) -> StudySpec:
    """``TINY`` with ``changes`` (spec fields)."""
    return dataclasses.replace(TINY, **changes)


def tiny_config(spec: StudySpec = TINY, *, seed: int = 0, **changes: Any) -> RunConfig:
    """``spec``'s run config for ``TINY_PARAMS``, with ``changes`` (run-config fields)."""
    return dataclasses.replace(spec.run_config(dict(TINY_PARAMS), seed=seed), **changes)
