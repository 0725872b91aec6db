"""Warm starts: a run's networks begin from another run's weights wherever the layers agree.

A layer (a module's weight, bias and buffers together) is loaded when the source has a layer of
the same name, every tensor the same shape, in a network of the same kind; else it keeps its fresh
initialisation. So a 10-class cGAN starts a 5-class one with all but its label-facing layers, and
another noise dimension refreshes only the generator's first layer. Other images work the same
way: another number of channels refreshes the layers that read or draw pixels, another size the
layers whose shape follows it (a DCGAN's projection and head, an MLP's image-facing layers); and
when the networks have another number of stages (a DCGAN gains some for larger images), each
stack of layers is matched at the offset where most of its layers fit (``aligned``). Reading the
weights from a trial checkpoint or an ensemble export, safely, is ``genopt.study.init_from``'s job: only
state dicts and plain config dicts come in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genopt.errors import GenoptError


@dataclass(frozen=True)
class WarmStart:
    """Weights to start from, and where they came from.

    Attributes:
        generator_config: the source generator's ``GeneratorConfig.to_dict()``.
        generator_state: its ``state_dict``.
        discriminator_config, discriminator_state: the same for its discriminator; None when the
            source holds none (an ensemble export, or a trial checkpoint written before genopt
            kept them).
        path: the file, resolved; sha256: its digest; member: the export's member index (None for
            a trial checkpoint).
    """

    generator_config: dict[str, Any]
    generator_state: dict[str, torch.Tensor]
    discriminator_config: dict[str, Any] | None = None
    discriminator_state: dict[str, torch.Tensor] | None = None
    path: str = ""
    sha256: str = ""
    member: int | None = None

    def record(self) -> dict[str, Any]:
        """Where the start came from, as plain values (the study's ``init`` attribute)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "member": self.member,
            "discriminator": self.discriminator_state is not None,
        }


@dataclass(frozen=True)
class Fresh:
    """The layers a warm start left freshly initialised, by network.

    ``discriminator`` is None when the source held no discriminator (then all of it is fresh).
    """

    generator: list[str] = field(default_factory=list)
    discriminator: list[str] | None = None

    def names(self) -> list[str]:
        return [f"generator {n}" for n in self.generator] + [
            f"discriminator {n}" for n in self.discriminator or []
        ]


def _layer(key: str) -> str:
    """The module a state-dict entry belongs to: ``net.0.weight`` -> ``net.0``."""
    if ".parametrizations." in key:  # spectral norm's weight.original and its power-iteration vectors
        return key.split(".parametrizations.")[0]
    return key.rpartition(".")[0] or key


def _layers(own: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """The state-dict keys of each layer, by layer name, in the model's order."""
    layers: dict[str, list[str]] = {}
    for key in own:
        layers.setdefault(_layer(key), []).append(key)
    return layers


def _fits(own: dict[str, torch.Tensor], keys: list[str], state: dict[str, torch.Tensor]) -> bool:
    # batch norm's step counter is a scalar: it says nothing about whether a layer fits
    shaped = [k for k in keys if not k.endswith("num_batches_tracked")]
    return all(k in state and state[k].shape == own[k].shape for k in shaped)


def _shifted(state: dict[str, torch.Tensor], prefix: str, offset: int) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` (``"body."``) with their index moved by ``offset``;
    those moved below 0 are dropped."""
    moved = {}
    for key, value in state.items():
        index, _, tail = key[len(prefix) :].partition(".")
        if index.isdigit() and int(index) + offset >= 0:
            moved[f"{prefix}{int(index) + offset}.{tail}"] = value
    return moved


def aligned(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each stack of layers (an ``nn.Sequential`` child of ``model``) renumbered to
    the offset at which most of its layers fit ``model``'s; unmoved where no offset fits more.

    A DCGAN generator gains stages at its start for larger images
    (``genopt.models.dcgan.widths_for_size``), so a 28-pixel source's ``body.3`` (its 96 to 48
    channel stage) is ``body.6`` of a 64-pixel generator: moved by 3, its later stages load.
    """
    own = model.state_dict()
    layers = _layers(own)
    out = dict(state)
    for name, child in model.named_children():
        prefix = f"{name}."
        entries = {k: v for k, v in state.items() if k.startswith(prefix)}
        if not isinstance(child, nn.Sequential) or not entries:
            continue
        stack = [keys for layer, keys in layers.items() if layer.startswith(prefix)]

        def fitting(offset: int, entries=entries, prefix=prefix, stack=stack) -> int:
            moved = _shifted(entries, prefix, offset)
            return sum(_fits(own, keys, moved) for keys in stack)

        # most layers fitting first; on a tie, no move
        best = max(range(-len(child) + 1, len(child)), key=lambda offset: (fitting(offset), offset == 0))
        if best != 0:
            out = {k: v for k, v in out.items() if not k.startswith(prefix)} | _shifted(entries, prefix, best)
    return out


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy into ``model`` each layer of ``state`` whose tensors all have ``model``'s names and shapes
    (after ``aligned``: a stack of layers may match at another offset).

    Returns:
        The loaded and the fresh layer names of ``model``, in its order.
    """
    own = model.state_dict()
    state = aligned(model, state)
    loaded, fresh, copied = [], [], {}
    for name, keys in _layers(own).items():
        if _fits(own, keys, state):
            loaded.append(name)
            copied.update({k: state[k] for k in keys if k in state})
        else:
            fresh.append(name)
    model.load_state_dict(copied, strict=False)
    return loaded, fresh


def warm_start(generator: nn.Module, discriminator: nn.Module, init: WarmStart) -> Fresh:
    """Load ``init`` into the two networks wherever their layers agree.

    Raises:
        GenoptError: not one layer of the generator agrees (another kind of network, or nothing
            of the same shape): that is no warm start.
    """
    kind = generator.config.kind
    source_kind = init.generator_config.get("kind", "mlp")
    loaded, g_fresh = load_matching(generator, init.generator_state if source_kind == kind else {})
    if not loaded:
        source_shape = init.generator_config.get("image_shape")
        target_shape = tuple(generator.config.image_shape)
        why = "other widths or kind"
        if isinstance(source_shape, list | tuple) and tuple(source_shape) != target_shape:
            why += f", or other images: {_shape(source_shape)} against {_shape(target_shape)}"
        raise GenoptError(
            f"--init-from {init.path}: no layer of its {source_kind} generator fits this study's {kind} "
            f"generator ({why}): start without --init-from, or from a checkpoint of the same architecture"
        )
    d_fresh = None
    if init.discriminator_state is not None:
        same = (init.discriminator_config or {}).get("kind", "mlp") == discriminator.config.kind
        d_fresh = load_matching(discriminator, init.discriminator_state if same else {})[1]
    return Fresh(g_fresh, d_fresh)


def _shape(shape) -> str:
    """(C, H, W) as ``3x32x32``."""
    return "x".join(str(x) for x in shape)


def describe(init: WarmStart, fresh: Fresh) -> str:
    """One line for the user: where the weights came from and which layers start fresh."""
    member = f" member {init.member}" if init.member is not None else ""
    names = fresh.names()
    line = f"warm start from {init.path}{member} (sha256 {init.sha256[:12]}): "
    line += f"fresh layers (shapes differ): {', '.join(names)}" if names else "every layer loaded"
    if fresh.discriminator is None:
        line += "; the discriminator starts fresh (the file holds none)"
    return line
