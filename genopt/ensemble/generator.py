"""One module that samples from several generators: their pixel mean, or a mixture of them.

``forward`` is a pure function of its inputs (noise, labels, and for a mixture a uniform draw per
image that picks its member), so the same inputs give the same images here and in the exported
``torch.export`` program; ``sample`` only draws those inputs. ``load_ensemble`` rebuilds one from
an export (``genopt.checkpoints``), importing torch and nothing of Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from genopt.checkpoints import export_class_names, export_members, read_export, without_weights
from genopt.device import rng_device
from genopt.ensemble.rejection import Rejection, draw_kept
from genopt.models import Generator

MODES = ("mean", "mixture")


class EnsembleGenerator(nn.Module):
    """Generators of one dataset combined into one sampler of images in [0, 1].

    Args:
        members: generators with the same image shape and number of classes.
        weights: one non-negative weight per member, summing to more than 0 (normalised here).
        mode: ``mean``: every image is the pixel mean of all members fed the same noise (member i
            uses the first ``noise_dim_i`` coordinates) and the same label; ``mixture``: each image
            comes from one member, chosen with probability ``weights[i]``.
        class_names: a conditional ensemble's class names in label order (an image folder's
            subfolder names); default the indices, "0", "1", ... Unconditional: none.

    Raises:
        ValueError: no members, members that disagree, bad weights, an unknown mode, or class names
            that are not one per class.
    """

    def __init__(
        self,
        members: list[Generator],
        weights: list[float],
        *,
        mode: str,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not members or len(weights) != len(members):
            raise ValueError(
                f"need at least one member and one weight each, got {len(members)} and {len(weights)}"
            )
        shapes = {(m.config.image_shape, m.config.num_classes) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"members differ in image shape or classes: {sorted(shapes)}")
        w = torch.tensor(weights, dtype=torch.float64)
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative and not all zero, got {weights}")
        self.mode = mode
        self.members = nn.ModuleList(members)
        self.weights = [float(x) for x in w / w.sum()]
        self.image_shape = members[0].config.image_shape
        self.num_classes = members[0].config.num_classes
        self.noise_dim = max(m.config.noise_dim for m in members)
        if class_names is None:
            class_names = [str(k) for k in range(self.num_classes)]
        elif len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        self.class_names: tuple[str, ...] = tuple(str(name) for name in class_names)
        # Upper ends of each member's interval of [0, 1); the last is 1 whatever rounding says.
        bounds = torch.cumsum(w / w.sum(), 0).float()
        bounds[-1] = 1.0
        self.register_buffer("bounds", bounds, persistent=False)
        # An unconditional ensemble's filter (genopt.ensemble.rejection), when its export has one.
        self.rejection: Rejection | None = None
        self.requires_grad_(False).eval()

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def channels(self) -> int:
        """Colour channels of its images: 1 (grey) or 3 (RGB)."""
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        """Height of its (square) images, in pixels."""
        return self.image_shape[1]

    def forward(
        self, noise: torch.Tensor, labels: torch.Tensor | None = None, choice: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images in [0, 1], shape (N, C, H, W).

        Args:
            noise: (N, noise_dim) standard normal draws, shared by the members.
            labels: (N,) class labels; required when conditional, ignored otherwise.
            choice: (N,) uniform draws in [0, 1) that pick each image's member; mixture only.
        """
        outputs = [
            m(noise[:, : m.config.noise_dim], labels if self.conditional else None) for m in self.members
        ]
        if self.mode == "mean":
            images = torch.stack(outputs).mean(0)
        else:
            if choice is None:
                raise ValueError("a mixture needs a choice per image")
            member = (choice.unsqueeze(1) >= self.bounds[:-1]).sum(1)
            images = outputs[0]
            for i in range(1, len(outputs)):
                images = torch.where((member == i).view(-1, 1, 1, 1), outputs[i], images)
        return (images + 1) / 2

    def inputs(
        self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The arguments ``forward`` (and the exported program) takes for n images.

        Noise is drawn first, then the mixture's choices, from ``generator``. Labels default to the
        classes in turn (0, 1, ..., 9, 0, ...) for a conditional ensemble.
        """
        device = self.bounds.device
        rng = rng_device(generator)
        noise = torch.randn(n, self.noise_dim, generator=generator, device=rng).to(device)
        args: list[torch.Tensor] = [noise]
        if self.conditional:
            if labels is None:
                labels = torch.arange(n) % self.num_classes
            labels = torch.as_tensor(labels, dtype=torch.long).to(device).expand(n).contiguous()
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
            args.append(labels)
        if self.mode == "mixture":
            args.append(torch.rand(n, generator=generator, device=rng).to(device))
        return tuple(args)

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n images in [0, 1], shape (n, C, H, W).

        Args:
            n: how many images.
            labels: one class for all, or (n,) classes; default the classes in turn. Ignored when
                the ensemble is unconditional.
            generator: the source of randomness; the same seed gives the same images.

        With a filter (``rejection``), the images are those it keeps of as many candidates as it takes.
        """
        if self.rejection is not None:
            return draw_kept(self, n, generator)
        args = self.inputs(n, labels, generator)
        if not self.conditional:
            return self(args[0], None, *args[1:])
        return self(*args)


def load_ensemble(path: str | Path) -> EnsembleGenerator:
    """The ensemble exported at ``path``, after checking its sha256 against the JSON beside it.

    The returned module (CPU, eval mode) has ``sample(n, labels=None, generator=None)`` giving
    images in [0, 1] of shape (n, C, H, W), ``metadata``: the JSON's content without weights, and
    ``class_names``: a conditional ensemble's classes as its data named them (an export made before
    they were recorded: the indices, "0", "1", ...). An export made with rejection sampling samples
    through its filter (``genopt.ensemble.rejection``).

    Raises:
        GenoptError: the file or its JSON is missing, the hash differs, or the file holds anything
            but tensors and plain values.
    """
    checkpoint, _ = read_export(path)
    members = export_members(checkpoint, name=str(path))
    names = export_class_names(checkpoint)
    ensemble = EnsembleGenerator(
        [g for g, _ in members],
        [w for _, w in members],
        mode=checkpoint["mode"],
        class_names=names if len(names) == members[0][0].config.num_classes else None,
    )
    if checkpoint.get("rejection"):
        ensemble.rejection = Rejection.from_record(checkpoint["rejection"], name=str(path))
    ensemble.metadata = without_weights(checkpoint)
    return ensemble
