"""Where a feature network comes from, and how one is named: the sha256 of its file.

Every score genopt gives is measured in one feature network's features, so a network is a file with
a name that cannot lie: ``torch.save`` of its weights and what they were trained for (recipe version,
task, image shape, classes, the data's sha256, validation accuracy), named by the sha256 of those
bytes. Whoever holds the bytes and the sha256 holds exactly the network that scored a study.

A network comes from one of three places (``FeatureNet.origin`` says which):

- **shipped**: genopt carries the network of the current recipe for MNIST and Fashion-MNIST
  (``genopt/metrics/shipped/``, table ``SHIPPED``), trained on their train splits. Data whose sha256
  is one of those datasets' gets it without training, so every user scores MNIST with one network.
- **trained here**: any other data (an image folder, a recipe version not shipped, or a user who
  asks to retrain) trains it from the recipe on this machine, once, cached under the recipe's key
  (``feature_cache_key``). CPU training is not bit-reproducible, so this network is this machine's.
- **by sha256**: a study records its network's sha256 and stores the file in its artifact store
  (``genopt.study.artifacts.feature_net``); ``network_by_sha256`` loads exactly those bytes, from
  memory, the shipped files, this machine's cache, or the given fetch, and verifies them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genopt import paths
from genopt.data import Dataset
from genopt.device import default_device
from genopt.errors import GenoptError
from genopt.files import atomic_write, file_lock
from genopt.metrics.features import (
    FEATURE_VERSION,
    ROTATIONS,
    FeatureNet,
    build_feature_net,
    feature_cache_key,
    recipe_of,
    task_of,
    train_feature_net,
)

# The file format's name: bump it when the dict below changes.
NET_FORMAT = "genopt-feature-net/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A network genopt carries: its file in ``SHIPPED_DIR``, its sha256, and what it was trained on."""

    file: str
    sha256: str
    dataset: str
    dataset_sha256: str
    version: int
    validation_accuracy: float


# Recipe version 2 trained on each dataset's train split with the CPU (Intel Xeon, 2 cores, torch
# 2.14.1), by ``train_feature_net``; docs/scoring.md says how to report a figure measured with one.
SHIPPED: tuple[Shipped, ...] = (
    Shipped(
        "mnist-v2.pt",
        "c5fd8e82b614364f1f0e4706120c95f46fd1251e51be2e6616922a6b26b76258",
        "mnist",
        "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
        2,
        0.9935,
    ),
    Shipped(
        "fashion-mnist-v2.pt",
        "76e5d43221ee5a6a925eb9370ea35459aa08a5a47b9ab0cb951899436b9ffffd",
        "fashion-mnist",
        "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
        2,
        0.9225,
    ),
)

_MEMORY: dict[str, FeatureNet] = {}  # by sha256
_FILES: dict[str, bytes] = {}  # the bytes of every network in _MEMORY, by sha256


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def net_file(net: FeatureNet, dataset: Dataset) -> bytes:
    """The bytes that name ``net``: its weights and what they were trained for."""
    record = {
        "format": NET_FORMAT,
        "version": net.version,
        "task": net.task,
        "image_shape": list(dataset.image_shape),
        "num_classes": net.head.out_features,
        "dataset": dataset.name,
        "dataset_sha256": dataset.sha256,
        "validation_accuracy": float(net.validation_accuracy),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return buffer.getvalue()


def file_of(net: FeatureNet) -> bytes:
    """The file of a network this process loaded or trained (``feature_network`` and the others)."""
    return _FILES[net.sha256]


def _from_file(data: bytes, dataset: Dataset, *, origin: str) -> FeatureNet:
    """The network in ``data`` (already verified), checked to fit ``dataset``."""
    return _from_record(_read(data), data, dataset, origin=origin)


def _read(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _from_record(record: dict[str, Any], data: bytes, dataset: Dataset, *, origin: str) -> FeatureNet:
    """The network ``record`` (``data`` read), checked to fit ``dataset``."""
    if record.get("format") != NET_FORMAT:
        raise GenoptError(f"{origin}: not a genopt feature network file ({NET_FORMAT})")
    try:
        recipe = recipe_of(int(record["version"]))
    except ValueError as exc:
        raise GenoptError(f"{origin}: {exc}") from None
    task = record["task"]
    wanted = (list(dataset.image_shape), dataset.num_classes if task == "classes" else ROTATIONS)
    if (record["image_shape"], record["num_classes"]) != wanted or task != task_of(dataset):
        raise GenoptError(
            f"{origin}: a network for {record['task']} of {record['image_shape']} images "
            f"cannot score {dataset.source}"
        )
    net = build_feature_net(dataset, recipe)
    net.load_state_dict(record["state_dict"])
    net.validation_accuracy = float(record["validation_accuracy"])
    net.version = int(record["version"])
    return _keep(net, data, dataset, origin)


def _keep(net: FeatureNet, data: bytes, dataset: Dataset, origin: str) -> FeatureNet:
    """``net`` named by its file, in eval mode, remembered for this process."""
    sha = sha256_of(data)
    net.sha256, net.origin = sha, origin
    # reference statistics: per network, never shared
    net.cache_key = f"{paths.file_safe(dataset.name)}-{sha[:16]}"
    net.requires_grad_(False).eval().to(memory_format=torch.channels_last)
    _MEMORY[sha], _FILES[sha] = net, data
    return net


def shipped_for(dataset: Dataset, version: int) -> Shipped | None:
    """The shipped network for exactly this data (its sha256) and recipe version, if genopt has one."""
    return next((s for s in SHIPPED if s.dataset_sha256 == dataset.sha256 and s.version == version), None)


def _read_shipped(shipped: Shipped) -> bytes:
    path = SHIPPED_DIR / shipped.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GenoptError(
            f"shipped feature network {path} cannot be read ({exc.strerror}): reinstall genopt"
        ) from None
    found = sha256_of(data)
    if found != shipped.sha256:
        raise GenoptError(
            f"shipped feature network {path} is not the one genopt recorded (sha256 {found[:16]}..., "
            f"expected {shipped.sha256[:16]}...): reinstall genopt, or pass --retrain-feature-net"
        )
    return data


def _shipped_net(shipped: Shipped, dataset: Dataset) -> FeatureNet:
    return _from_file(_read_shipped(shipped), dataset, origin=f"shipped with genopt ({shipped.file})")


def _trained_here(dataset: Dataset, version: int, device: torch.device) -> FeatureNet:
    """This machine's network for the data and recipe: from its cache, or trained now and cached."""
    recipe = recipe_of(version)
    path = paths.cache_dir() / "features" / f"{feature_cache_key(dataset, recipe)}.pt"
    origin = "trained on this machine"
    # Training is not bit-reproducible: processes that start together must share one net, not train two.
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            data = path.read_bytes()
            saved = _read(data)
            if saved.get("format") == NET_FORMAT:
                return _from_record(saved, data, dataset, origin=origin)
            # A cache written before networks were files of their own: its weights, in today's file.
            net = build_feature_net(dataset, recipe)
            net.load_state_dict(saved["state_dict"])
            net.validation_accuracy = float(saved["validation_accuracy"])
        else:
            print(f"training the feature network here (recipe {version}, {dataset.source})", flush=True)
            net = train_feature_net(dataset, recipe=recipe, device=device).cpu()
        net.version = version
        data = net_file(net, dataset)
        atomic_write(path, data)
    return _keep(net, data, dataset, origin)


def feature_network(
    dataset: Dataset,
    *,
    version: int = FEATURE_VERSION,
    device: str | torch.device | None = None,
    shipped: bool = True,
) -> FeatureNet:
    """The network a new study on ``dataset`` scores with: the shipped one for this data and recipe
    when genopt carries it (and ``shipped``), else this machine's, trained from the recipe once.

    Args:
        dataset: the data; a network is only ever trained on its train split.
        version: the recipe; an older study made before networks were stored passes its own.
        device: where the returned net lives; CUDA when available by default.
        shipped: False to train from the recipe even where genopt ships a network (to check it).

    Returns:
        A ``FeatureNet`` in eval mode with ``task``, ``validation_accuracy``, ``version``,
        ``sha256``, ``origin`` and ``cache_key`` set.

    Raises:
        ValueError: ``version`` is not a known recipe.
        GenoptError: the shipped file is damaged (its sha256 is not the recorded one).
    """
    device = default_device(device)
    recipe_of(version)
    carried = shipped_for(dataset, version) if shipped else None
    if carried is not None:
        net = _MEMORY[carried.sha256] if carried.sha256 in _MEMORY else _shipped_net(carried, dataset)
        return net.to(device)
    return _trained_here(dataset, version, device).to(device)


def network_by_sha256(
    dataset: Dataset,
    sha256: str,
    fetch: Callable[[], bytes],
    *,
    where: str,
    device: str | torch.device | None = None,
) -> FeatureNet:
    """Exactly the network whose file has this ``sha256``, from the first place that holds it:
    this process, the shipped files, this machine's cache (``<cache>/features/sha256``), else
    ``fetch()`` (the study's artifact store), whose bytes are verified and then cached.

    Raises:
        GenoptError: the fetched bytes are not the network named (changed or damaged), ``where``
            says whose they are; nothing is cached or scored.
    """
    device = default_device(device)
    if sha256 in _MEMORY:
        return _MEMORY[sha256].to(device)
    carried = next((s for s in SHIPPED if s.sha256 == sha256), None)
    if carried is not None:
        return _shipped_net(carried, dataset).to(device)
    cached = paths.cache_dir() / "features" / "sha256" / f"{sha256}.pt"
    if cached.exists():
        data = cached.read_bytes()
        if sha256_of(data) == sha256:
            return _from_file(data, dataset, origin=f"{where}, cached on this machine").to(device)
        cached.unlink(missing_ok=True)  # damaged here: fetched again below
    data = fetch()
    if sha256_of(data) != sha256:
        raise GenoptError(
            f"{where} does not hold the feature network the study records: its sha256 is "
            f"{sha256_of(data)[:16]}..., not {sha256[:16]}... (changed or damaged); nothing was scored"
        )
    net = _from_file(data, dataset, origin=where)
    atomic_write(cached, data)
    return net.to(device)


__all__ = ["SHIPPED", "Shipped", "feature_network", "file_of", "net_file", "network_by_sha256", "sha256_of"]
