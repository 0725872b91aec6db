"""Making a study when another process may be making the same one, on this machine or another.

Two ``genopt study`` runs that start a new study at the same moment share one storage, and the
storage's unique study name decides between them: ``create_new`` is Optuna's ``create_study``
without ``load_if_exists``, so exactly one process creates the study and the other is told (None).
The creator then records how the study is made (its feature network first, its spec last); the
other waits in ``made_study`` until the spec is there, and joins the study as it was made.
"""

from __future__ import annotations

import os
import time

import optuna
from optuna.exceptions import DuplicatedStudyError

from genopt.errors import GenoptError
from genopt.files import hold_while_exists
from genopt.study.record.records import StudyRecord

# How long a process waits for another to finish recording a study it created: an upload of the
# feature network and a few attribute writes, so seconds on any reachable storage.
CREATION_WAIT_S = 60.0
_POLL_S = 0.2


def made_study(study_name: str, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    """The study ``study_name`` once it is made, or None when there is none.

    A study that another process has created but not yet recorded (no spec, no trials) is waited
    for, with one line saying so. A study with trials and no spec was made by other means than
    ``genopt study``: it is returned as it is.

    Raises:
        GenoptError: the study stays without a spec for ``CREATION_WAIT_S`` (its creator stopped).
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None
    deadline = time.monotonic() + CREATION_WAIT_S
    told = False
    while not StudyRecord.of(study).made_by_genopt and not study.get_trials(deepcopy=False):
        if not told:
            print(f"study {study_name} is being created by another process: waiting for it", flush=True)
            told = True
        if time.monotonic() > deadline:
            raise GenoptError(
                f"study {study_name!r} exists but records no spec after {CREATION_WAIT_S:.0f} s: the process "
                "that created it stopped first, or another tool made it; use another --study name"
            )
        time.sleep(_POLL_S)
    return study


def create_new(
    study_name: str,
    storage: optuna.storages.BaseStorage,
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study | None:
    """A new, empty study, or None when another process created one of that name first."""
    _pause_for_tests("GENOPT_TEST_PAUSE_CREATE")
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner, direction="minimize"
        )
    except DuplicatedStudyError:
        return None
    _pause_for_tests("GENOPT_TEST_PAUSE_CREATED")
    return study


def _pause_for_tests(variable: str) -> None:
    """Test hook, unset in real use: with ``GENOPT_TEST_PAUSE_CREATE=PATH`` a process about to create
    a study (its feature network ready), with ``GENOPT_TEST_PAUSE_CREATED=PATH`` one that has just
    created it (nothing recorded yet), creates PATH and waits while it exists. A test runs a second
    process against it meanwhile: each interleaving of two creators, without a sleep
    (tests/test_yardstick.py)."""
    path = os.environ.get(variable)
    if path is not None:
        hold_while_exists(path)
