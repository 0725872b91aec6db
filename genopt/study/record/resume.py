"""Whether a stored study may take more trials: the same data, and the same spec bar ``[search]``.

A resumed study must mean the same thing as the run that made it: its stored spec is compared field
by field with the current one, and only ``RESUMABLE_FIELDS`` may differ.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from genopt.errors import GenoptError
from genopt.files import plain
from genopt.spec import FIELDS, StudySpec, load_spec
from genopt.study.record.records import StudyRecord

# Spec fields that may change between runs of one study: those of [search] (how it searches, its
# seed, the checkpoints it keeps), bar the search space; the rest define what its scores mean.
RESUMABLE_FIELDS = frozenset(f.name for f in FIELDS if f.section == "search")


def check_resumable(study: optuna.Study, spec: StudySpec, dataset_sha256: str) -> None:
    """Refuse to add trials that would mean something else than the study's stored ones.

    Raises:
        GenoptError: other data (sha256), or a spec field outside ``RESUMABLE_FIELDS`` changed.
    """
    record = StudyRecord.of(study)
    if not record.made_by_genopt:
        return
    if record.dataset.get("sha256") not in (None, dataset_sha256):
        raise GenoptError(
            f"study {study.study_name!r} was made on other data (sha256 differs): use a new --study name"
        )
    current = plain(spec.to_dict())
    # A field added to genopt after the study was made meant what the study did then.
    stored = plain(StudySpec.from_dict(record.spec).to_dict())
    changed = sorted(k for k in current if k not in RESUMABLE_FIELDS and stored.get(k) != current[k])
    if changed:
        # A study made with a shipped spec that is no longer the default (the article's MLPs were,
        # until the DCGAN): name the file that resumes it.
        shipped = _shipped_spec_of(stored)
        hint = f" (the study's spec is {shipped}'s: it resumes with --spec {shipped})" if shipped else ""
        raise GenoptError(
            f"study {study.study_name!r} was made with a different {', '.join(changed)}: use the same "
            f"spec and options (genopt worker --study {study.study_name} resumes with the stored spec), "
            f"or a new --study name{hint}"
        )


def _shipped_spec_of(stored: dict) -> Path | None:
    """The spec file in this checkout's ``studies/`` whose non-resumable fields are ``stored``'s, if any."""
    for path in sorted(Path("studies").glob("*.toml")):
        try:
            shipped = plain(load_spec(path).to_dict())
        except GenoptError:
            continue
        if all(shipped.get(k) == v for k, v in stored.items() if k not in RESUMABLE_FIELDS):
            return path
    return None
