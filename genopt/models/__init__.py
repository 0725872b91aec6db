"""The generator and discriminator, unconditional or conditioned on a class label.

``ARCHITECTURES`` names each kind of network (``mlp.py``: the article's MLPs; ``dcgan.py``: DCGAN-style
convolutional networks); a new kind is a module beside them and one entry here. A model is rebuilt from
its plain config dict alone (stored in every checkpoint), as in nanoGPT. The generator is the same for
every conditioning; the discriminator sees the label in one of the ways of ``CONDITIONINGS`` and may be
spectrally normalised.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genopt.device import rng_device
from genopt.models import dcgan, mlp
from genopt.models.base import (
    CONDITIONINGS,
    LATENT_CODES,
    UNCONDITIONAL,
    Architecture,
    Conditioning,
    DiscriminatorConfig,
    GeneratorConfig,
    latent_code,
    with_labels,
)

# The kinds of network a spec may name (genopt.spec.fields.ARCHITECTURE_NAMES; tests/test_registries.py).
ARCHITECTURES: dict[str, Architecture] = {"mlp": mlp.ARCHITECTURE, "dcgan": dcgan.ARCHITECTURE}

__all__ = [
    "ARCHITECTURES",
    "CONDITIONINGS",
    "Architecture",
    "Conditioning",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "architecture",
]


def architecture(kind: str) -> Architecture:
    """The architecture named ``kind``.

    Raises:
        ValueError: no architecture has that name.
    """
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown kind {kind!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[kind]


class Generator(nn.Module):
    """Noise (and a one-hot label) -> the architecture's stages -> images in [-1, 1], shape (N, C, H, W)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        stages = architecture(config.kind).generator(config)
        self.config = config
        for name, stage in stages.items():
            self.add_module(name, stage)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = with_labels(z, labels, self.config.num_classes)
        if self.config.codes:
            x = with_labels(x, latent_code(z, self.config.codes), self.config.codes)
        for stage in self.children():  # the architecture's stages, in order
            x = stage(x)
        return x

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for ``labels`` (ignored when unconditional), one noise draw each."""
        device = next(self.parameters()).device
        z = torch.randn(len(labels), self.config.noise_dim, generator=generator, device=rng_device(generator))
        return self(z.to(device), labels.to(device) if self.config.num_classes else None)


class Discriminator(nn.Module):
    """Image (and label) -> the architecture's body -> one logit (BCE with logits).

    ``conditioning`` is the conditioning in effect: ``"none"`` for an unconditional model, else the
    config's. The architecture builds a ``body`` to features and the conditioning's heads over them
    (or, where the conditioning needs no features, may build one ``net`` to the logit).
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        if config.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"unknown conditioning {config.conditioning!r}: choose one of {', '.join(CONDITIONINGS)}"
            )
        self._architecture = architecture(config.kind)
        self.config = config
        self.conditioning = config.conditioning if config.num_classes else "none"
        unconditional = LATENT_CODES if config.codes else UNCONDITIONAL
        self._conditioning = CONDITIONINGS[config.conditioning] if config.num_classes else unconditional
        for name, module in self._architecture.discriminator(config, self._conditioning).items():
            self.add_module(name, module)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Linear | nn.Conv2d):
                    spectral_norm(module)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The real/fake logit of each image, shape (N,), for every conditioning."""
        return self.forward_with_classes(images, labels)[0]

    def forward_with_classes(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The real/fake logits (N,) and, for AC-GAN only, class logits (N, classes), or for latent
        codes their logits (N, codes); else None.

        One pass gives both, so the AC-GAN losses cost no extra forward pass.
        """
        joined = self.config.num_classes if self._conditioning.joins_input else 0
        x = self._architecture.discriminator_input(images, labels, joined)
        if hasattr(self, "net"):  # the article's MLP: body and head in one
            return self.net(x).squeeze(1), None
        features = self.body(x)
        return self._conditioning.output(self, self.head(features).squeeze(1), features, labels)
