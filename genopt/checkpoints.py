"""The two files genopt keeps weights in: a trial's generator checkpoint and an ensemble export.

Both hold tensors and plain values only and are read with ``torch.load(weights_only=True)``, so
reading one runs no code. An export ``<name>.pt`` has ``<name>.json`` beside it: the same metadata
without the weights, and the file's sha256, checked before a byte of the ``.pt`` is unpickled.

This module imports torch and genopt's models, and nothing of Optuna: loading an export
(``genopt.load_ensemble``) costs torch only. Who writes the files (``genopt.study.artifacts.upload``
for a trial, ``genopt.ensemble.export`` for an export) and who reads them (the ensemble builder, the
report, warm starts, ``load_ensemble``) all go through the functions here.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import IO, Any

import torch

from genopt.errors import GenoptError
from genopt.files import atomic_write, plain
from genopt.models import Discriminator, Generator, GeneratorConfig

TRIAL_FORMAT = "genopt-generator/1"
EXPORT_FORMAT = "genopt-ensemble/1"
VALUE_RANGE = (0.0, 1.0)  # an export's images lie in [0, 1]

# Optional fields of a trial checkpoint: the discriminator's architecture and weights, kept for warm
# starts since these fields exist (genopt.study.init_from); older checkpoints lack them.
DISCRIMINATOR_FIELDS = ("discriminator_config", "discriminator_state_dict")


def _load(source: str | os.PathLike | IO[bytes], *, name: str) -> Any:
    """``torch.load(weights_only=True)`` with its failures as one line each."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything that would run code; pages of advice
        refused = f"{name} holds more than tensors and plain values: refusing to unpickle it"
        raise GenoptError(refused) from None
    except Exception as exc:  # not a torch file, or a truncated one
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenoptError(f"{name} cannot be read safely: {reason}") from None


def _generator(config: Any, state: Any, *, name: str) -> Generator:
    try:
        generator = Generator(GeneratorConfig.from_dict(config))
        generator.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        reason = " ".join(str(exc).split())  # load_state_dict's message spans lines
        raise GenoptError(f"{name} does not fit its own generator config: {reason}") from None
    return generator.requires_grad_(False).eval()


# -- trial checkpoints ----------------------------------------------------------------------------


def save_trial_checkpoint(
    target: str | os.PathLike | IO[bytes],
    generator: Generator | tuple[dict[str, Any], dict[str, torch.Tensor]],
    *,
    discriminator: Discriminator | tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None,
    **metadata: Any,
) -> None:
    """A trial's generator checkpoint: tensors and plain values only. Every writer of the format
    comes here: a trial's upload with its networks, a warm start's copy with their (config, weights).

    With ``discriminator``, its config and weights are kept too, so a warm start can begin both.
    """

    def parts(net) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if isinstance(net, tuple):
            return net
        return net.config.to_dict(), {k: v.detach().cpu() for k, v in net.state_dict().items()}

    config, state = parts(generator)
    checkpoint = {"format": TRIAL_FORMAT, "generator_config": config, "state_dict": state}
    if discriminator is not None:
        checkpoint["discriminator_config"], checkpoint["discriminator_state_dict"] = parts(discriminator)
    torch.save(checkpoint | metadata, target)


def read_trial_checkpoint(source: str | os.PathLike | IO[bytes], *, name: str) -> dict[str, Any]:
    """Everything a trial checkpoint holds, weights included, read without running any code.

    Args:
        source: a path or an open binary file.
        name: what to call the checkpoint in an error, e.g. ``"trial 3's checkpoint"``.

    Raises:
        GenoptError: the file holds more than tensors and plain values, or is not a generator's.
    """
    checkpoint = _load(source, name=name)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != TRIAL_FORMAT:
        raise GenoptError(f"{name} is not a {TRIAL_FORMAT} file")
    return checkpoint


def load_trial_checkpoint(
    source: str | os.PathLike | IO[bytes], *, name: str
) -> tuple[Generator, dict[str, Any]]:
    """The generator (CPU, eval mode) of a trial checkpoint, and its metadata without any weights.

    Raises:
        GenoptError: as ``read_trial_checkpoint``, or the weights do not fit the generator's config.
    """
    checkpoint = read_trial_checkpoint(source, name=name)
    generator = _generator(checkpoint.get("generator_config"), checkpoint.get("state_dict"), name=name)
    weights = ("generator_config", "state_dict", *DISCRIMINATOR_FIELDS)
    return generator, {k: v for k, v in checkpoint.items() if k not in weights}


# -- ensemble exports -----------------------------------------------------------------------------


def _version() -> str:
    try:
        return importlib_metadata.version("genopt")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def export_checkpoint(
    *,
    generators: Sequence[Generator],
    weights: Sequence[float],
    trials: Sequence[tuple[int, float]],
    mode: str,
    scores: dict[str, dict[str, dict[str, float]]],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """An export's content: each member's config and weights, and plain values about them.

    Args:
        generators: the members, all of one image shape and number of classes.
        weights: each member's weight (a mixture's probabilities; the mean's are equal).
        trials: each member's (trial number, value of the study's objective).
        mode: ``mean`` or ``mixture``.
        scores: ``{"best_single" | "mean" | "mixture": {"validation" | "test": {score: value}}}``.
        metadata: plain values: study, objective, dataset, sample budget, candidates, ...
    """
    members = [
        {
            "generator_config": plain(g.config.to_dict()),
            "state_dict": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()},
            "weight": w,
            "trial_number": number,
            "value": value,
        }
        for g, w, (number, value) in zip(generators, weights, trials, strict=True)
    ]
    config = generators[0].config
    return plain(metadata) | {
        "format": EXPORT_FORMAT,
        "mode": mode,
        "image_shape": list(config.image_shape),
        "num_classes": config.num_classes,
        "value_range": list(VALUE_RANGE),
        "scores": scores,
        "members": members,
        "genopt_version": _version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def without_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """An export's content less its members' (and rejection filter's) weights: what its JSON holds."""
    weightless = [{k: v for k, v in m.items() if k != "state_dict"} for m in checkpoint["members"]]
    rejection = {k: v for k, v in (checkpoint.get("rejection") or {}).items() if k != "state_dict"}
    return checkpoint | {"members": weightless} | ({"rejection": rejection} if rejection else {})


def write_export(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Write an export's ``.pt``; the description its JSON will hold (``write_description``).

    Returns:
        ``without_weights(checkpoint)`` with the ``.pt``'s file name and sha256.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    atomic_write(path, data)
    return without_weights(checkpoint) | {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}


def write_description(path: str | Path, described: dict[str, Any]) -> None:
    """Write the JSON beside the export at ``path``; last, so an export with a JSON is whole."""
    atomic_write(Path(path).with_suffix(".json"), (json.dumps(described, indent=2) + "\n").encode())


def read_export(path: str | Path) -> tuple[dict[str, Any], str]:
    """An export's content, weights included, and its sha256.

    The sha256 is checked against the JSON beside the file first, then the file is loaded with
    ``weights_only``.

    Raises:
        GenoptError: the file or its JSON is missing, the hash differs, or the file holds anything
            but tensors and plain values, or is not an export.
    """
    path = Path(path)
    json_path = path.with_suffix(".json")
    if not path.is_file():
        raise GenoptError(f"no ensemble checkpoint at {path}: make one with `genopt ensemble`")
    try:
        expected = json.loads(json_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise GenoptError(
            f"{json_path} is missing or has no sha256: the checkpoint cannot be verified"
        ) from None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise GenoptError(f"{path} does not match the sha256 in {json_path.name}: refusing to load it")
    checkpoint = _load(io.BytesIO(data), name=str(path))
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != EXPORT_FORMAT:
        raise GenoptError(f"{path} is not a {EXPORT_FORMAT} checkpoint")
    return checkpoint, expected


def export_members(checkpoint: dict[str, Any], *, name: str) -> list[tuple[Generator, float]]:
    """Each member of an export (``read_export``) as a generator (CPU, eval mode) and its weight.

    Raises:
        GenoptError: a member's weights do not fit its own config.
    """
    try:
        members = [
            (m["generator_config"], m["state_dict"], float(m["weight"])) for m in checkpoint["members"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise GenoptError(f"{name} is not a {EXPORT_FORMAT} checkpoint (bad or missing {exc})") from None
    return [
        (_generator(config, state, name=f"{name} member {i}"), weight)
        for i, (config, state, weight) in enumerate(members)
    ]


def export_class_names(checkpoint: dict[str, Any]) -> list[str]:
    """The class names in an export's dataset record (or its JSON), in label order; empty when it
    records none (an export made before genopt recorded them, or data without classes)."""
    dataset = checkpoint.get("dataset")
    names = dataset.get("class_names") if isinstance(dataset, dict) else None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        return []
    return list(names)


@dataclass(frozen=True)
class Description:
    """An export's JSON, as ``write_description`` writes it and ``read_description`` reads it back.

    Attributes:
        study: the study the members came from.
        mode: ``mean`` or ``mixture``.
        objective: the score that chose the members and weights (exports made before genopt
            scored cGANs by intra-FID chose by ``fid``).
        scores: ``{"best_single" | "mean" | "mixture": {"validation" | "test": {score: value}}}``.
        members: ``(trial number, weight)`` of each member of the exported ensemble.
        best_single_trial: the candidate with the best validation objective.
        fid_samples: generated images per evaluation.
        file: the checkpoint's file name; sha256: its digest.
        program: the ``.pt2`` program's file name, when one was written.
        raw: the whole JSON.
        image_shape: the images' (C, H, W); None when the JSON lacks it.
        class_names: the dataset's class names in label order, as its dataset record holds them
            (``"dataset"``: also ``channels`` and ``image_size``); empty for an export made before
            they were recorded.
    """

    study: str
    mode: str
    objective: str
    scores: dict[str, dict[str, dict[str, float]]]
    members: list[tuple[int, float]]
    best_single_trial: int
    fid_samples: int
    file: str
    sha256: str
    program: str | None
    raw: dict[str, Any]
    image_shape: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] = ()


def read_description(path: str | Path) -> Description:
    """The JSON beside an export (``<name>.json``), checked and typed.

    Raises:
        GenoptError: the file is missing, is not JSON, or lacks a field an export has.
    """
    path = Path(path).with_suffix(".json")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise GenoptError(f"no export description at {path}: make one with `genopt ensemble`") from None
    except (OSError, ValueError) as exc:
        raise GenoptError(f"cannot read {path}: {exc}") from None
    try:
        # Exports made before class-aware scores held one FID per split.
        scores = {
            name: {split: v if isinstance(v, dict) else {"fid": v} for split, v in by_split.items()}
            for name, by_split in raw["scores"].items()
        }
        return Description(
            study=raw["study"],
            mode=raw["mode"],
            objective=raw.get("objective", "fid"),
            scores=scores,
            members=[(int(m["trial_number"]), float(m["weight"])) for m in raw["members"]],
            best_single_trial=int(raw["best_single_trial"]),
            fid_samples=int(raw["fid_samples"]),
            file=raw["file"],
            sha256=raw["sha256"],
            program=(raw.get("program") or {}).get("file"),
            raw=raw,
            image_shape=tuple(int(x) for x in raw["image_shape"]) if raw.get("image_shape") else None,
            class_names=tuple(export_class_names(raw)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GenoptError(f"{path} is not a {EXPORT_FORMAT} description (bad or missing {exc})") from None
