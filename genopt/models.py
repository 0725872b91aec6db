"""The article's MLP generator and discriminator, unconditional or conditioned on a class label.

A model is rebuilt from its plain config dict alone (stored in every checkpoint), as in nanoGPT.
The generator is the same for every conditioning; the discriminator sees the label in one of three
ways (``DiscriminatorConfig.conditioning``) and may be spectrally normalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genopt.device import rng_device
from genopt.spec import CONDITIONINGS


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator: noise size, hidden widths, image shape, classes (0: unconditional).

    A conditional generator always takes the article's one-hot label concatenated to the noise,
    whatever the discriminator's conditioning: projection and AC-GAN change only how the
    discriminator uses the label, so a generator checkpoint loads the same way for all three.
    """

    noise_dim: int
    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return cls(d["noise_dim"], tuple(d["widths"]), tuple(d["image_shape"]), d["num_classes"])


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a discriminator: hidden widths, LeakyReLU slope, image shape, classes.

    ``conditioning`` (ignored when unconditional) is how the label enters: ``"concat"``, the
    article's one-hot appended to the flattened image; ``"projection"``, the inner product of a
    class embedding with the body's features (Miyato & Koyama 2018, "cGANs with Projection
    Discriminator"); ``"acgan"``, an auxiliary classifier head beside the real/fake logit (Odena et
    al. 2017, "Conditional Image Synthesis with Auxiliary Classifier GANs"). ``spectral_norm``
    divides every linear layer's weight by its largest singular value (Miyato et al. 2018,
    "Spectral Normalization for Generative Adversarial Networks"), bounding D's Lipschitz constant.
    """

    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    leaky_slope: float = 0.2
    conditioning: str = "concat"
    spectral_norm: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiscriminatorConfig:
        """Inverse of ``to_dict``; fields absent from an older dict keep the article's behaviour."""
        return cls(
            tuple(d["widths"]),
            tuple(d["image_shape"]),
            d.get("num_classes", 0),
            d.get("leaky_slope", 0.2),
            d.get("conditioning", "concat"),
            d.get("spectral_norm", False),
        )


def _mlp(sizes: list[int], activation: nn.Module) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(fan_in, fan_out), activation]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return layers


def _with_labels(x: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    if num_classes == 0:
        return x
    if labels is None:
        raise ValueError("a conditional model needs labels")
    return torch.cat([x, F.one_hot(labels, num_classes).to(x.dtype)], dim=1)


class Generator(nn.Module):
    """Noise (and a one-hot label) -> MLP with ReLU -> Tanh image in [-1, 1]."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        sizes = [config.noise_dim + config.num_classes, *config.widths, c * h * w]
        self.net = nn.Sequential(*_mlp(sizes, nn.ReLU()), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(_with_labels(z, labels, self.config.num_classes))
        return x.view(-1, *self.config.image_shape)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for ``labels`` (ignored when unconditional), one noise draw each."""
        device = next(self.parameters()).device
        z = torch.randn(len(labels), self.config.noise_dim, generator=generator, device=rng_device(generator))
        return self(z.to(device), labels.to(device) if self.config.num_classes else None)


class Discriminator(nn.Module):
    """Image (and label) -> MLP with LeakyReLU -> one logit (BCE with logits, not Sigmoid).

    ``kind`` is the conditioning in effect: ``"none"`` for an unconditional model, else the config's.
    ``"none"`` and ``"concat"`` keep the article's single ``net``; ``"projection"`` and ``"acgan"``
    run a ``body`` over the image alone, then a ``head`` (and a class embedding or classifier).
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        if config.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"unknown conditioning {config.conditioning!r}: choose one of {', '.join(CONDITIONINGS)}"
            )
        self.config = config
        self.kind = config.conditioning if config.num_classes else "none"
        c, h, w = config.image_shape
        activation = nn.LeakyReLU(config.leaky_slope)
        if self.kind in ("none", "concat"):
            sizes = [c * h * w + config.num_classes, *config.widths, 1]
            self.net = nn.Sequential(*_mlp(sizes, activation))
        else:
            sizes = [c * h * w, *config.widths]
            body: list[nn.Module] = []
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
                body += [nn.Linear(fan_in, fan_out), activation]
            self.body = nn.Sequential(*body)
            self.head = nn.Linear(sizes[-1], 1)
            if self.kind == "projection":
                self.embed = nn.Embedding(config.num_classes, sizes[-1])
            else:
                self.classifier = nn.Linear(sizes[-1], config.num_classes)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Linear):
                    spectral_norm(module)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The real/fake logit of each image, shape (N,), for every conditioning."""
        return self.forward_with_classes(images, labels)[0]

    def forward_with_classes(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The real/fake logits (N,) and, for AC-GAN only, class logits (N, classes); else None.

        One pass gives both, so the AC-GAN losses cost no extra forward pass.
        """
        x = images.flatten(1)
        if self.kind in ("none", "concat"):
            return self.net(_with_labels(x, labels, self.config.num_classes)).squeeze(1), None
        features = self.body(x)
        logits = self.head(features).squeeze(1)
        if self.kind == "acgan":
            return logits, self.classifier(features)
        if labels is None:
            raise ValueError("a conditional model needs labels")
        # projection: y^T V phi(x), the label's embedding against the image's features
        return logits + (self.embed(labels) * features).sum(1), None
