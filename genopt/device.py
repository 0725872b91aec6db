"""Where tensors live and how they compute: the default device, where sampling noise is drawn,
and the precision ``"auto"`` picks for a device."""

from __future__ import annotations

import functools
from collections.abc import Iterable

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


# CPU flags of native bfloat16 matrix units: AVX-512 BF16 dot products (AMD Zen 4+, Intel Cooper
# Lake+) and AMX tiles (Intel Sapphire Rapids+). Without them bf16 autocast is emulated and slower.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The flags of this machine's first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(
    device: str | torch.device,
    *,
    flags: Iterable[str] | None = None,
    capability: tuple[int, int] | None = None,
) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively.

    A CPU does with ``amx_bf16`` or ``avx512_bf16`` among its flags, a CUDA GPU from compute
    capability 8.0 (Ampere) on; any other device is taken not to.

    Args:
        device: the device that will train.
        flags: the CPU flags to judge by (default: this machine's, from /proc/cpuinfo).
        capability: the GPU's compute capability (default: asked of CUDA for ``device``).
    """
    device = torch.device(device)
    if device.type == "cpu":
        return not set(BF16_CPU_FLAGS).isdisjoint(cpu_flags() if flags is None else flags)
    if device.type == "cuda":
        if capability is None:
            capability = torch.cuda.get_device_capability(device)
        return tuple(capability) >= (8, 0)
    return False


def resolve_precision(
    precision: str,
    device: str | torch.device,
    *,
    flags: Iterable[str] | None = None,
    capability: tuple[int, int] | None = None,
) -> str:
    """The precision a run uses on ``device``: ``"fp32"`` or ``"bf16"``, with ``"auto"`` decided.

    ``"auto"`` is bf16 on a device with native bf16 matrix units (``native_bf16``: CPU flags, or a
    CUDA compute capability of 8.0 or more; ``flags`` and ``capability`` are passed on to it), else
    fp32. On a GPU, ``train`` replays its step from a CUDA graph, where bf16 trained 1.11x the
    images per second of fp32 on an H100 (docs/benchmarks_cuda_graphs_train.md); op by op bf16's
    casts made the launch-bound step slower (6.78 against 5.72 ms at batch 64), so a run that stays
    eager (``augment`` other than none) is better off with an explicit ``fp32``.
    ``"fp32"`` and ``"bf16"`` are kept.

    Raises:
        ValueError: ``precision`` is none of ``genopt.spec.PRECISIONS`` (fp32, bf16, auto).
    """
    if precision == "auto":
        return "bf16" if native_bf16(device, flags=flags, capability=capability) else "fp32"
    if precision in ("fp32", "bf16"):
        return precision
    raise ValueError(f"unknown precision {precision!r}: choose one of fp32, bf16, auto")
