"""Where a warm-started study starts from: the file, read safely, checked to fit, and remembered.

``genopt study --init-from PATH`` names a trial checkpoint or an exported ensemble (its best member,
or ``--init-member N``). Both are read by ``genopt.checkpoints`` with ``weights_only``; an export's
sha256 is checked against its JSON first, by the same code as ``load_ensemble``. The study records
the file's path and sha256 (user attribute ``init``), and every later run of it (``genopt study``
again, ``genopt worker``) starts from the same file or refuses in one line. The weights are also
copied into the study's artifact store (``store_init``), so a worker on a machine without the file
(no shared disk, an S3 store) starts from the store's copy, checked against its own sha256.
Loading the weights into the networks, layer by layer, is ``genopt.warmstart``'s, beside training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import optuna
import torch

from genopt.checkpoints import read_export, read_trial_checkpoint, save_trial_checkpoint
from genopt.data import Dataset
from genopt.errors import GenoptError
from genopt.spec import StudySpec
from genopt.study.record.records import StudyRecord
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


def store_init(init: WarmStart, store) -> dict[str, Any]:
    """Copy ``init``'s weights into the artifact ``store`` as a trial checkpoint; the fields that the
    study's ``init`` record adds for it: ``artifact`` (its id) and ``artifact_sha256``."""
    discriminator = None
    if init.discriminator_state is not None:
        discriminator = (init.discriminator_config, init.discriminator_state)
    buffer = io.BytesIO()
    save_trial_checkpoint(buffer, (init.generator_config, init.generator_state), discriminator=discriminator)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    artifact_id = f"init-{sha256}"
    store.write(artifact_id, io.BytesIO(data))
    return {"artifact": artifact_id, "artifact_sha256": sha256}


def _stored_copy(stored: dict[str, Any], store) -> WarmStart | None:
    """The study's warm start from its artifact store's copy; None when it has none (made before copies
    were kept) or it cannot be read."""
    if store is None or "artifact" not in stored:
        return None
    try:
        with store.open_reader(stored["artifact"]) as f:
            data = f.read()
    except Exception:
        return None
    if hashlib.sha256(data).hexdigest() != stored.get("artifact_sha256"):
        return None
    checkpoint = read_trial_checkpoint(io.BytesIO(data), name=f"the store's copy of {stored['path']}")
    return _checked(
        Path(stored["path"]),
        checkpoint.get("generator_config"),
        checkpoint.get("state_dict"),
        stored["sha256"],
        member=stored.get("member"),
        discriminator=(checkpoint.get("discriminator_config"), checkpoint.get("discriminator_state_dict")),
    )


def study_init(
    study: optuna.Study | None, init: WarmStart | None, *, study_name: str, store=None
) -> WarmStart | None:
    """The warm start a run of ``study`` uses: the one it was made with, or ``init`` for a new one.

    Args:
        study: the stored study, or None when this run creates it.
        init: what ``--init-from`` names this run, or None.
        store: the study's artifact store, whose copy of the weights is used when the file is not on
            this machine.

    Raises:
        GenoptError: ``init`` is not the study's own, or the study's file is gone or changed.
    """
    stored = StudyRecord.of(study).init if study is not None else None
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
    if init is None and not Path(stored["path"]).is_file():
        init = _stored_copy(stored, store)
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
    describes the spec's fixed values, names the layer a searched ``noise_dim`` refreshes, and says
    when ``init`` was made for other images (channels or size): the layers that do not fit start fresh.

    Raises:
        GenoptError: no generator layer fits for one of the study's architectures.
    """
    for config in spec.architectures():  # the spec's own kind last, to describe
        fresh = warm_start(*build_models(config, dataset), init)
    line = describe(init, fresh)
    source_shape = init.generator_config.get("image_shape")
    if isinstance(source_shape, list | tuple) and tuple(source_shape) != tuple(dataset.image_shape):
        shapes = ("x".join(str(x) for x in s) for s in (source_shape, dataset.image_shape))
        line += "; its images are {}, this study's {}".format(*shapes)
    source_noise = init.generator_config.get("noise_dim")
    if any(p.name == "noise_dim" for p in spec.params) and isinstance(source_noise, int):
        other = build_models(dataclasses.replace(config, noise_dim=source_noise + 1), dataset)
        extra = [n for n in warm_start(*other, init).generator if n not in fresh.generator]
        if extra:
            names = ", ".join(extra)
            line += f"; trials whose noise_dim is not {source_noise} also start generator {names} fresh"
    return line
