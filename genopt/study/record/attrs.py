"""Every attribute a genopt study and its trials carry, in one table.

Writers (the runner, the objective, the uploads, the samplers, the heartbeats) name an attribute by
its constant here; readers (progress lines, the report, the ensemble, resume checks) go through the
typed records of ``genopt.study.record.records``. No other module spells an attribute's key, and
``tests/test_record.py`` checks that every key a real study writes is in ``ATTRIBUTES``.

A score of the registry (``genopt.metrics.scores.SCORES``) gives a trial two attributes: ``<name>``,
the chosen epoch's value, and ``<name>_history``, every epoch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genopt.metrics.scores import SCORES

__all__ = ["ATTRIBUTES", "Attribute", "attribute", "history_attr"]


@dataclass(frozen=True)
class Attribute:
    """One attribute: its key, what carries it, and what it holds.

    Attributes:
        key: the name in Optuna's storage.
        on: ``"study"`` or ``"trial"``.
        system: a system attribute (hidden from the dashboard's attribute table), else a user one.
        meaning: what it holds, for a person reading the storage.
    """

    key: str
    on: Literal["study", "trial"]
    system: bool
    meaning: str


ATTRIBUTES: dict[tuple[str, str], Attribute] = {}


def _declare(on: Literal["study", "trial"], key: str, meaning: str, *, system: bool = False) -> str:
    ATTRIBUTES[(on, key)] = Attribute(key, on, system, meaning)
    return key


# ---- the study's -------------------------------------------------------------------------------
SPEC_ATTR = _declare("study", "spec", "the spec it was made with, every field (StudySpec.to_dict)")
DATASET_ATTR = _declare(
    "study", "dataset", "its data: name, source, sha256, channels, image size, classes, the folder read"
)
ARTIFACT_STORE_ATTR = _declare(
    "study", "artifact_store", "where its trials keep their files: a folder or s3:// URL, never credentials"
)
ARTIFACT_DIR_ATTR = _declare(
    "study", "artifact_dir", "the artifact folder of a study made before s3:// stores (read only)"
)
FID_FLOOR_ATTR = _declare("study", "fid_floor", "FID between the validation and test splits")
FEATURE_ACCURACY_ATTR = _declare(
    "study", "feature_net_validation_accuracy", "the feature network's accuracy on the validation split"
)
FEATURE_VERSION_ATTR = _declare(
    "study", "feature_net_version", "the feature network's recipe version (1 when absent: older studies)"
)
FEATURE_SHA256_ATTR = _declare(
    "study",
    "feature_net_sha256",
    "sha256 of its feature network's file, kept in its artifact store (absent: trained per machine)",
)
INIT_ATTR = _declare(
    "study", "init", "a warm start's source: path, sha256, member, discriminator (genopt.study.init_from)"
)
STOPPED_ATTR = _declare(
    "study", "stopped", "why the last run stopped early: --trials auto's verdict, its time budget or a signal"
)

# ---- a trial's: artifact ids in the study's artifact store -------------------------------------
SAMPLES_ATTR = _declare("trial", "samples", "artifact id of its sample grid (PNG, fixed noise)")
HISTORY_ATTR = _declare("trial", "history_csv", "artifact id of its per-epoch losses and scores (CSV)")
CHECKPOINT_ATTR = _declare("trial", "checkpoint", "artifact id of its generator checkpoint (best epoch)")
ARTIFACT_ATTRS = (SAMPLES_ATTR, HISTORY_ATTR, CHECKPOINT_ATTR)

# ---- a trial's: how it ran and ended -----------------------------------------------------------
BASELINE_ATTR = _declare(
    "trial", "baseline", "enqueued by --enqueue: trained to the full budget, never pruned"
)
SEED_ATTR = _declare("trial", "seed", "the torch seed it trained with")
EPOCHS_ATTR = _declare("trial", "epochs", "epochs it trained")
BEST_EPOCH_ATTR = _declare("trial", "best_epoch", "the epoch whose scores are its own (1-based)")
WALL_SECONDS_ATTR = _declare("trial", "wall_seconds", "its wall-clock time, training and scoring")
IMAGES_PER_SECOND_ATTR = _declare("trial", "images_per_second", "training images per second")
PRECISION_ATTR = _declare("trial", "precision", 'the precision it trained in, "fp32" or "bf16"')
TRIAL_FEATURE_VERSION_ATTR = _declare(
    "trial", "feature_net_version", "the feature network's recipe version that scored it"
)
TRIAL_FEATURE_SHA256_ATTR = _declare(
    "trial", "feature_net_sha256", "sha256 of the feature network's file that scored it"
)
LOSS_HISTORY_ATTR = _declare("trial", "loss_history", "[discriminator, generator] loss of every epoch")
STOP_REASON_ATTR = _declare("trial", "stop_reason", "why training stopped before its last epoch")
REASON_ATTR = _declare(
    "trial", "reason", 'why it ended FAIL, in one line: "interrupted", "artifact store full: ...", ...'
)
INFEASIBLE_ATTR = _declare(
    "trial", "infeasible", "COMPLETE but below the spec's min_label_accuracy: never best, never a member"
)
DRAWN_ATTR = _declare(
    "trial",
    "genopt:drawn",
    "the parameters a worker's sampler drew, before they are the trial's",
    system=True,
)
HEARTBEAT_ATTR = _declare(
    "trial", "genopt:heartbeat", "a journal storage's last heartbeat, seconds since the epoch", system=True
)


def history_attr(score: str) -> str:
    """The trial attribute holding every epoch's value of ``score``, e.g. ``fid_history``."""
    return f"{score}_history"


for _name, _score in SCORES.items():
    _declare("trial", _name, f"{_score.label} at the chosen epoch")
    _declare("trial", history_attr(_name), f"{_score.label} of every epoch")


def attribute(on: Literal["study", "trial"], key: str) -> Attribute | None:
    """The table's entry for ``key`` on a study or a trial, None when genopt never writes it."""
    return ATTRIBUTES.get((on, key))
