"""Ensemble checkpoints that are safe to share: tensors and plain values only, with a sha256 beside.

``<name>.pt`` is read by ``torch.load(path, weights_only=True)``; ``<name>.json`` holds the same
metadata (no weights) and the file's sha256, which ``load_ensemble`` checks before reading a byte
of the checkpoint as a pickle. ``--torch-export`` adds ``<name>.pt2``, a ``torch.export`` program
that maps noise (and labels, and a mixture's choices) to images with nothing but torch installed.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genopt import paths
from genopt.ensemble.build import EnsembleBuild, build_ensemble
from genopt.ensemble.generator import EnsembleGenerator
from genopt.errors import GenoptError
from genopt.files import atomic_write, plain
from genopt.models import Generator, GeneratorConfig

FORMAT = "genopt-ensemble/1"
VALUE_RANGE = (0.0, 1.0)


def _version() -> str:
    try:
        return importlib_metadata.version("genopt")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def program_inputs(ensemble: EnsembleGenerator) -> list[dict[str, Any]]:
    """Names, shapes and meaning of the exported program's inputs, in order."""
    inputs = [
        {"name": "noise", "shape": ["N", ensemble.noise_dim], "dtype": "float32", "law": "normal(0, 1)"}
    ]
    if ensemble.conditional:
        inputs.append(
            {"name": "labels", "shape": ["N"], "dtype": "int64", "law": f"0..{ensemble.num_classes - 1}"}
        )
    if ensemble.mode == "mixture":
        inputs.append({"name": "choice", "shape": ["N"], "dtype": "float32", "law": "uniform[0, 1)"})
    return inputs


def _checkpoint(build: EnsembleBuild) -> dict[str, Any]:
    ensemble = build.ensemble
    members = [
        {
            "generator_config": plain(g.config.to_dict()),
            "state_dict": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()},
            "weight": w,
            "trial_number": m.trial_number,
            "value": m.value,
        }
        for g, w, m in zip(ensemble.members, ensemble.weights, build.chosen, strict=True)
    ]
    return plain(build.metadata) | {
        "format": FORMAT,
        "mode": ensemble.mode,
        "image_shape": list(ensemble.image_shape),
        "num_classes": ensemble.num_classes,
        "value_range": list(VALUE_RANGE),
        "scores": build.scores,
        "members": members,
        "genopt_version": _version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _described(checkpoint: dict[str, Any]) -> dict[str, Any]:
    members = [{k: v for k, v in m.items() if k != "state_dict"} for m in checkpoint["members"]]
    return checkpoint | {"members": members}


def _ensemble_of(checkpoint: dict[str, Any]) -> EnsembleGenerator:
    generators = []
    for m in checkpoint["members"]:
        g = Generator(GeneratorConfig.from_dict(m["generator_config"]))
        g.load_state_dict(m["state_dict"])
        generators.append(g)
    ensemble = EnsembleGenerator(
        generators, [m["weight"] for m in checkpoint["members"]], mode=checkpoint["mode"]
    )
    ensemble.metadata = _described(checkpoint)
    return ensemble


class _Program(nn.Module):
    """The ensemble's ``forward`` with exactly the inputs ``program_inputs`` lists."""

    def __init__(self, ensemble: EnsembleGenerator) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.names = [i["name"] for i in program_inputs(ensemble)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.names, inputs, strict=True))
        return self.ensemble(named["noise"], named.get("labels"), named.get("choice"))


def export_program(ensemble: EnsembleGenerator, *, path: str | Path) -> str:
    """Write a ``torch.export`` program of ``ensemble`` (any batch size) to ``path``; its sha256."""
    path = Path(path)
    example = ensemble.inputs(4, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch")
    # One entry for the whole ``*inputs`` of ``_Program.forward``; the batch size is free in each.
    dynamic_shapes = (tuple({0: batch} for _ in example),)
    program = torch.export.export(_Program(ensemble), example, dynamic_shapes=dynamic_shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def save_ensemble(build: EnsembleBuild, *, path: str | Path, torch_export: bool = False) -> dict[str, Any]:
    """Write ``path`` (``.pt``), the JSON beside it and, with ``torch_export``, the ``.pt2`` program.

    Returns:
        The JSON's content: the checkpoint's metadata, its file name and sha256, and the program's.
    """
    path = Path(path)
    checkpoint = _checkpoint(build)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    described = _described(checkpoint) | {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write(path, data)
    if torch_export:
        program_path = path.with_suffix(".pt2")
        sha256 = export_program(build.ensemble, path=program_path)
        described["program"] = {
            "file": program_path.name,
            "sha256": sha256,
            "inputs": program_inputs(build.ensemble),
        }
    atomic_write(path.with_suffix(".json"), (json.dumps(described, indent=2) + "\n").encode())
    return described


def load_ensemble(path: str | Path) -> EnsembleGenerator:
    """The ensemble saved at ``path``, after checking its sha256 against the JSON beside it.

    The returned module (CPU, eval mode) has ``sample(n, labels=None, generator=None)`` giving
    images in [0, 1] of shape (n, C, H, W), and ``metadata``: the JSON's content without weights.

    Raises:
        GenoptError: the file or its JSON is missing, the hash differs, or the file holds anything
            but tensors and plain values.
    """
    return _ensemble_of(read_checkpoint(path)[0])


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], str]:
    """The checkpoint saved at ``path`` as plain values and tensors, and its sha256.

    Checked as ``load_ensemble`` checks it (a warm start reads members' weights through this): the
    sha256 against the JSON beside it first, then loaded with ``weights_only``.

    Raises:
        GenoptError: as ``load_ensemble``.
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
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # weights_only refuses anything that would run code; the message is pages long
        raise GenoptError(
            f"{path} holds more than tensors and plain values: refusing to unpickle it"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise GenoptError(f"{path} is not a {FORMAT} checkpoint")
    return checkpoint, expected


@dataclass(frozen=True)
class Description:
    """An export's JSON, as ``save_ensemble`` writes it and ``read_description`` reads it back.

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
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GenoptError(f"{path} is not a {FORMAT} description (bad or missing {exc})") from None


def default_path(study_name: str) -> Path:
    """``storage/exports/<study>.pt``, the study name made safe for a file name."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study_name)
    return paths.exports_dir() / f"{safe}.pt"


@dataclass(frozen=True)
class Export:
    """What ``export_ensemble`` wrote and measured."""

    build: EnsembleBuild
    path: Path
    description: dict[str, Any]


def export_ensemble(
    *,
    study_name: str,
    top_k: int = 5,
    mode: str = "auto",
    storage_url: str | None = None,
    out: str | Path | None = None,
    torch_export: bool = False,
    fid_samples: int | None = None,
    data_dir: Path | None = None,
    artifact_dir: Path | None = None,
) -> Export:
    """Build the study's ensemble (``genopt.ensemble.build_ensemble``) and save it.

    Args:
        out: the ``.pt`` file to write; default ``storage/exports/<study>.pt``. The JSON (and the
            ``.pt2`` program) go beside it under the same name.
        Other arguments: as for ``build_ensemble``.

    Raises:
        GenoptError: bad input (checked before any work), or anything ``build_ensemble`` refuses.
    """
    path = Path(out) if out is not None else default_path(study_name)
    if path.suffix != ".pt":
        raise GenoptError(f"--out must end in .pt (the JSON and program go beside it), got {path}")
    if not path.parent.is_dir() and out is not None:
        raise GenoptError(f"--out: folder {path.parent} does not exist")
    build = build_ensemble(
        study_name=study_name,
        top_k=top_k,
        mode=mode,
        storage_url=storage_url,
        fid_samples=fid_samples,
        data_dir=data_dir,
        artifact_dir=artifact_dir,
    )
    description = save_ensemble(build, path=path, torch_export=torch_export)
    return Export(build, path, description)
