"""A study's yardstick: the feature network that scores it, stored with it and loaded by everyone.

A new study records its network's sha256 (``FEATURE_SHA256_ATTR``, with the recipe version and the
validation accuracy) and keeps its file in the study's artifact store as ``feature-net-<sha256>.pt``.
Every worker, a resumed study, ``genopt ensemble`` and the benchmarks then score with exactly that
network (``study_network``): from this process, the shipped files, this machine's cache by sha256,
or the store, verified against the sha256 before anything is scored with it. None trains its own.

Studies made before networks were stored have no sha256: they keep scoring with their recorded
recipe version, trained on each machine, and say so once.
"""

from __future__ import annotations

import io
import sys

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound

from genopt.data import Dataset
from genopt.errors import GenoptError
from genopt.metrics.features import FeatureNet
from genopt.metrics.networks import feature_network, file_of, network_by_sha256
from genopt.study.artifacts.stores import ArtifactLocation, artifact_exists, artifact_store
from genopt.study.record import attrs as A
from genopt.study.record.records import StudyRecord

_TOLD: set[str] = set()  # studies whose missing network this process has explained


def artifact_id(sha256: str) -> str:
    """The network's id in a study's artifact store: named by what it is, so writing it twice is harmless."""
    return f"feature-net-{sha256}.pt"


def store_network(study: optuna.Study, store, net: FeatureNet) -> None:
    """Keep ``net``'s file in the study's store and record it: sha256, recipe version, accuracy.

    The sha256 is written last of the three, so a reader that sees it sees the rest.
    """
    name = artifact_id(net.sha256)
    if not artifact_exists(store, name):
        store.write(name, io.BytesIO(file_of(net)))
    study.set_user_attr(A.FEATURE_VERSION_ATTR, net.version)
    study.set_user_attr(A.FEATURE_ACCURACY_ATTR, net.validation_accuracy)
    study.set_user_attr(A.FEATURE_SHA256_ATTR, net.sha256)


def study_network(
    study: optuna.Study,
    dataset: Dataset,
    location: ArtifactLocation,
    *,
    store=None,
    device: str | torch.device | None = None,
) -> FeatureNet:
    """The network that scores ``study``: the one it records, verified; for a study made before
    networks were stored, this machine's network of the study's recipe version.

    Args:
        location: the study's artifact store (``genopt.study.record.facts.study_artifact_location``).
        store: that store, when the caller has it open already.

    Raises:
        GenoptError: the store lacks the recorded network, or holds other bytes under its name.
    """
    record = StudyRecord.of(study)
    if record.feature_sha256 is None:
        if study.study_name not in _TOLD:
            _TOLD.add(study.study_name)
            print(
                f"study {study.study_name} predates stored feature networks: scoring with this machine's "
                f"own network of recipe {record.feature_version}, as it always has",
                file=sys.stderr,
                flush=True,
            )
        return feature_network(dataset, version=record.feature_version, device=device, shipped=False)
    name = artifact_id(record.feature_sha256)
    where = location.url
    store = artifact_store(location) if store is None else store

    def fetch() -> bytes:
        try:
            with store.open_reader(name) as reader:
                return reader.read()
        except ArtifactNotFound:
            raise GenoptError(
                f"study {study.study_name!r} is scored by feature network {record.feature_sha256[:16]}..., "
                f"but its artifact store {where} has no {name}: pass --artifact-store with the study's store"
            ) from None

    return network_by_sha256(
        dataset, record.feature_sha256, fetch, where=f"artifact store {where} ({name})", device=device
    )


def network_line(net: FeatureNet) -> str:
    """One line that says which network scores this run, so a log names its yardstick."""
    return (
        f"feature network sha256 {net.sha256}: {net.origin}, recipe {net.version}, "
        f"validation accuracy {net.validation_accuracy:.4f}"
    )
