"""Where a warm-started study starts from: the file, read safely, checked to fit, and remembered.

``genopt study --init-from PATH`` names a trial checkpoint or an exported ensemble (its best member,
or ``--init-member N``). Both are read by ``genopt.checkpoints`` with ``weights_only``; an export's
sha256 is checked against its JSON first, by the same code as ``load_ensemble``. The study records
the file's path and sha256 (user attribute ``init``), and every later run of it (``genopt study``
again, ``genopt worker``) starts from the same file or refuses in one line. Loading the weights into
the networks, layer by layer, is ``genopt.warmstart``'s, beside training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import optuna
import torch

from genopt.checkpoints import read_export, read_trial_checkpoint
from genopt.data import Dataset
from genopt.errors import GenoptError
from genopt.spec import StudySpec
from genopt.study.stored import INIT_ATTR
from genopt.train import build_models
from genopt.warmstart import WarmStart, describe, warm_start


def read_init(path: str | Path, *, member: int | None = None) -> WarmStart:
    """The weights at ``path``: a trial checkpoint, or an ensemble export (a JSON beside it).

    Args:
        path: the file.
        member: an export's member, counted from 0 in its JSON's ``members``; default the member
            with the best validation objective. Only for an export.

    Raises:
        GenoptError: no such file, a file that is tampered with (its sha256 differs from its
            JSON), holds more than tensors and plain values, or is neither kind of checkpoint.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise GenoptError(f"--init-from {path}: no such file")
    if path.with_suffix(".json").is_file():
        checkpoint, sha256 = read_export(path)
        members = checkpoint.get("members")
        if (
            not members
            or not isinstance(members, list)
            or not all(isinstance(m, dict) and "value" in m for m in members)
        ):
            raise GenoptError(f"--init-from {path} lists no members with their values")
        if member is None:
            member = min(range(len(members)), key=lambda i: members[i]["value"])
        elif not 0 <= member < len(members):
            raise GenoptError(f"--init-member {member}: {path} has members 0 to {len(members) - 1}")
        chosen = members[member]
        return _checked(path, chosen.get("generator_config"), chosen.get("state_dict"), sha256, member=member)
    if member is not None:
        raise GenoptError(
            f"--init-member applies to an exported ensemble (a .pt with its .json beside it); {path} "
            "has no JSON beside it, so it is read as a trial checkpoint"
        )
    data = path.read_bytes()
    checkpoint = read_trial_checkpoint(io.BytesIO(data), name=f"--init-from {path}")
    return _checked(
        path,
        checkpoint.get("generator_config"),
        checkpoint.get("state_dict"),
        hashlib.sha256(data).hexdigest(),
        discriminator=(checkpoint.get("discriminator_config"), checkpoint.get("discriminator_state_dict")),
    )


def _checked(
    path: Path,
    config: Any,
    state: Any,
    sha256: str,
    *,
    member: int | None = None,
    discriminator: tuple[Any, Any] = (None, None),
) -> WarmStart:
    def is_state(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())

    if not isinstance(config, dict) or not is_state(state):
        raise GenoptError(f"--init-from {path} holds no generator config and weights")
    d_config, d_state = discriminator
    if not (isinstance(d_config, dict) and is_state(d_state)):
        d_config, d_state = None, None  # a checkpoint written before they were kept
    return WarmStart(config, state, d_config, d_state, path=str(path), sha256=sha256, member=member)


def study_init(study: optuna.Study | None, init: WarmStart | None, *, study_name: str) -> WarmStart | None:
    """The warm start a run of ``study`` uses: the one it was made with, or ``init`` for a new one.

    Args:
        study: the stored study, or None when this run creates it.
        init: what ``--init-from`` names this run, or None.

    Raises:
        GenoptError: ``init`` is not the study's own, or the study's file is gone or changed.
    """
    stored = study.user_attrs.get(INIT_ATTR) if study is not None else None
    if stored is None:
        if study is not None and init is not None:
            raise GenoptError(
                f"study {study_name!r} was made without --init-from: resume it without one, "
                "or use a new --study name"
            )
        return init
    where = f"{stored['path']}" + (f" member {stored['member']}" if stored.get("member") is not None else "")
    if init is not None and (init.sha256, init.member) != (stored["sha256"], stored.get("member")):
        raise GenoptError(
            f"study {study_name!r} was warm-started from {where} (sha256 {stored['sha256'][:12]}): resume it "
            "with that file or without --init-from, or use a new --study name"
        )
    if init is None:
        try:
            init = read_init(stored["path"], member=stored.get("member"))
        except GenoptError as exc:
            raise GenoptError(
                f"study {study_name!r} was warm-started from a file that cannot be read now: {exc}"
            ) from None
        if init.sha256 != stored["sha256"]:
            raise GenoptError(
                f"study {study_name!r} was warm-started from {where}, which has changed since (sha256 "
                "differs): put the study's file back, or use a new --study name"
            )
    return init


def check_init(spec: StudySpec, dataset: Dataset, init: WarmStart) -> str:
    """Check that ``init`` starts this study's networks; the line that tells the user how.

    Every searched ``kind`` is tried (each must share a generator layer with ``init``); the line
    describes the spec's fixed values, and names the layer a searched ``noise_dim`` refreshes.

    Raises:
        GenoptError: no generator layer fits for one of the study's architectures.
    """
    for config in spec.architectures():  # the spec's own kind last, to describe
        fresh = warm_start(*build_models(config, dataset), init)
    line = describe(init, fresh)
    source_noise = init.generator_config.get("noise_dim")
    if any(p.name == "noise_dim" for p in spec.params) and isinstance(source_noise, int):
        other = build_models(dataclasses.replace(config, noise_dim=source_noise + 1), dataset)
        extra = [n for n in warm_start(*other, init).generator if n not in fresh.generator]
        if extra:
            names = ", ".join(extra)
            line += f"; trials whose noise_dim is not {source_noise} also start generator {names} fresh"
    return line
