"""The one table of study and trial attributes: a real study writes nothing outside it, no module
spells an attribute's key, and the typed records read what the study wrote."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from genopt.metrics.scores import SCORES
from genopt.study.record.attrs import ATTRIBUTES, attribute, history_attr
from genopt.study.record.records import StudyRecord, TrialRecord, best_trial
from genopt.study.storage.database import open_storage

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "genopt" / "study" / "record" / "attrs.py"

# An attribute read or written with its key spelled as a string, not through the table.
_SPELLED = re.compile(
    r"(?:user_attrs(?:\.get)?\(|user_attrs\[|set_user_attr\(|system_attrs(?:\.get)?\(|system_attrs\["
    r"|set_(?:trial|study)_system_attr\([^,()]*,)\s*f?[\"']"
)


@pytest.mark.slow
def test_every_attribute_a_real_study_writes_is_in_the_table(tiny_study):
    study = optuna.load_study(study_name=tiny_study.name, storage=open_storage(tiny_study.url))
    unknown = [k for k in study.user_attrs if attribute("study", k) is None]
    for t in study.trials:
        unknown += [f"trial {t.number}: {k}" for k in t.user_attrs if attribute("trial", k) is None]
        unknown += [
            f"trial {t.number}: system {k}"
            for k in t.system_attrs
            if k.startswith("genopt:") and attribute("trial", k) is None
        ]
    assert not unknown, unknown
    # and the table is what the study holds, not a superset that matches anything
    assert {"spec", "dataset", "fid_floor"} <= set(study.user_attrs)


@pytest.mark.slow
def test_the_records_read_what_the_study_wrote(tiny_study):
    study = optuna.load_study(study_name=tiny_study.name, storage=open_storage(tiny_study.url))
    record = StudyRecord.of(study)
    assert record.spec["model"] == "cgan" and record.dataset["name"] == "mnist"
    assert record.fid_floor == study.user_attrs["fid_floor"] > 0
    assert record.artifact_store and record.feature_version >= 1
    baseline = TrialRecord.of(study.trials[0])
    assert baseline.baseline and baseline.epochs == 1 and baseline.best_epoch == 1
    assert set(baseline.scores) == {"fid", "intra_fid", "label_accuracy"} <= set(SCORES)
    assert baseline.histories["intra_fid"] == [baseline.scores["intra_fid"]]
    best = best_trial(study)
    assert best is not None and TrialRecord.of(best).checkpoint is not None
    assert best.value == min(t.value for t in study.trials if t.value is not None)


def test_a_study_made_before_the_table_reads_with_its_defaults():
    old = StudyRecord.from_attrs({"spec": {"model": "gan"}, "artifact_dir": "/data/artifacts"})
    assert old.artifact_store == "/data/artifacts" and old.feature_version == 1 and old.stopped is None
    assert not StudyRecord.from_attrs({}).made_by_genopt


def test_every_score_has_its_two_trial_attributes():
    for name in SCORES:
        assert attribute("trial", name) is not None
        assert attribute("trial", history_attr(name)) is not None
    assert len({(a.on, a.key) for a in ATTRIBUTES.values()}) == len(ATTRIBUTES)


def test_no_module_of_genopt_or_bench_spells_an_attribute_key():
    spelled = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted([*(ROOT / "genopt").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])
        if path != TABLE
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if _SPELLED.search(line)
    ]
    assert not spelled, "read attributes through genopt.study.record:\n" + "\n".join(spelled)
    assert _SPELLED.search('t.user_attrs.get("reason")') and _SPELLED.search("trial.set_user_attr('x', 1)")
