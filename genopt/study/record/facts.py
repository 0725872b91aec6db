"""What a stored study remembers about how it was made: its spec, its data and its artifact store.

``genopt ensemble`` and ``genopt report`` read a study made earlier, maybe with ``--data-dir`` and
``--artifact-store``: they find both here, and the user may point them elsewhere (the same data
moved, another mount of the same store). Data whose sha256 differs from the study's is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from genopt.data import Dataset, load_dataset
from genopt.errors import GenoptError
from genopt.spec import StudySpec
from genopt.study.artifacts.stores import ArtifactLocation, artifact_store
from genopt.study.record.records import StudyRecord

# What an image folder's reading (genopt.data.folder) records beyond the dataset record's own fields.
FOLDER_DETAILS = ("content_sha256", "files", "ignored_files", "skipped_files", "background", "split")


def dataset_record(dataset: Dataset, data_dir: Path | None) -> dict[str, Any]:
    """The study attribute that names its data: name, source, sha256 and the folder it came from."""
    c, h, _ = dataset.image_shape
    record = {
        "name": dataset.name,
        "source": dataset.source,
        "sha256": dataset.sha256,
        "channels": c,
        "image_size": h,
        "labelled": dataset.labelled,
        "class_names": dataset.named_classes,
    }
    # An image folder's reading: its files' own sha256, what was skipped or ignored, and its split.
    record.update({k: v for k, v in dataset.details.items() if k in FOLDER_DETAILS})
    if data_dir is not None:
        record["data_dir"] = str(Path(data_dir).resolve())
    return record


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec a study was made with, read back from its user attributes.

    Raises:
        GenoptError: the study was not made by ``genopt study``.
    """
    record = StudyRecord.of(study)
    if not record.made_by_genopt:
        raise GenoptError(f"study {study.study_name!r} was not made by genopt study: it has no stored spec")
    return StudySpec.from_dict(record.spec)


def study_dataset(study: optuna.Study, data_dir: Path | None = None) -> Dataset:
    """The study's own data: from ``data_dir`` when given, else from where the study found it.

    Raises:
        GenoptError: the data cannot be found, or its sha256 is not the study's.
    """
    record = StudyRecord.of(study).dataset
    name = record.get("name", "mnist")
    if data_dir is None and record.get("data_dir"):
        data_dir = Path(record["data_dir"])
        if not data_dir.is_dir():
            raise GenoptError(
                f"study {study.study_name!r} was made on data in {data_dir}, which is gone: "
                "pass --data-dir with the same data"
            )
    # An image folder is read again as the study read it (its resolved size and channels), once its
    # files are known to be the study's: a changed folder is refused before anything is decoded.
    folder = "content_sha256" in record
    if folder and data_dir is not None and data_dir.is_dir():
        from genopt.data.folder import content_sha256

        if content_sha256(data_dir) != record["content_sha256"]:
            raise _other_data(study, f"image folder {Path(data_dir).resolve()}")
    dataset = load_dataset(
        name,
        data_dir=data_dir,
        image_size=record.get("image_size") if folder else None,
        channels=str(record.get("channels", "auto")) if folder else "auto",
    )
    if record.get("sha256") not in (None, dataset.sha256):
        raise _other_data(study, dataset.source)
    return dataset


def _other_data(study: optuna.Study, source: str) -> GenoptError:
    return GenoptError(
        f"study {study.study_name!r} was made on other data than {source} (sha256 differs): "
        "pass --data-dir with the study's own data"
    )


def study_artifact_location(study: optuna.Study, given: str | Path | None = None) -> ArtifactLocation:
    """``given`` when the user passed it, else the store the study's trials wrote to (a folder of an
    older study included), else the default folder.

    Raises:
        GenoptError: the study's folder is gone, or ``given`` is not a store genopt knows.
    """
    if given is not None:
        return ArtifactLocation.parse(given)
    stored = StudyRecord.of(study).artifact_store
    location = ArtifactLocation.parse(stored)
    if stored is not None and not location.is_s3 and not location.folder.is_dir():
        raise GenoptError(
            f"study {study.study_name!r} keeps its artifacts in {stored}, which is gone: "
            "pass --artifact-store with the folder's new place"
        )
    return location


def study_artifact_store(study: optuna.Study, given: str | Path | None = None):
    """The artifact store the study's trials wrote to (see ``study_artifact_location``), checked."""
    return artifact_store(study_artifact_location(study, given))
