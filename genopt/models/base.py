"""What every architecture shares: the two configs, the way a label joins an input, the conditionings
(how a discriminator sees the label) and ``Architecture``, the entry of ``genopt.models.ARCHITECTURES``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator: noise size, hidden widths, image shape, classes (0: unconditional).

    A conditional generator always takes the article's one-hot label concatenated to the noise,
    whatever the discriminator's conditioning: projection and AC-GAN change only how the
    discriminator uses the label, so a generator checkpoint loads the same way for all three.
    ``kind`` names the architecture (``genopt.models.ARCHITECTURES``): ``widths`` are the hidden
    layers' units for ``"mlp"``, and for ``"dcgan"`` the channels of each stage, from the smallest
    feature map up (each stage doubles height and width).

    ``codes`` (an unconditional generator's, 0: none) is a categorical latent read from the noise
    itself, ``latent_code``: its one-hot joins the noise, so the generator can switch between modes
    (digits) instead of passing through blends of them (InfoGAN's discrete code, Chen et al. 2016).
    """

    noise_dim: int
    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    kind: str = "mlp"
    codes: int = 0

    @property
    def inputs(self) -> int:
        """The width of the first stage's input: the noise, one-hot label and one-hot code."""
        return self.noise_dim + self.num_classes + self.codes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        """Inverse of ``to_dict``; a dict written before ``kind`` existed is an MLP's."""
        return cls(
            d["noise_dim"],
            tuple(d["widths"]),
            tuple(d["image_shape"]),
            d["num_classes"],
            d.get("kind", "mlp"),
            d.get("codes", 0),
        )


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a discriminator: hidden widths, LeakyReLU slope, image shape, classes.

    ``conditioning`` (ignored when unconditional) is how the label enters (``CONDITIONINGS``).
    ``spectral_norm`` divides every linear and convolutional layer's weight by its largest singular
    value (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks"), bounding
    D's Lipschitz constant. ``kind`` names the architecture: for ``"dcgan"``, ``widths`` are the
    channels of each stride-2 convolution from the image down. ``codes`` (unconditional only): a
    head that tells which latent code a generated image was drawn with (``LATENT_CODES``).
    """

    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    leaky_slope: float = 0.2
    conditioning: str = "concat"
    spectral_norm: bool = False
    kind: str = "mlp"
    codes: int = 0

    @property
    def head_classes(self) -> int:
        """What a classifier head tells apart: the classes, or an unconditional D's latent codes."""
        return self.num_classes or self.codes

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
            d.get("kind", "mlp"),
            d.get("codes", 0),
        )


def with_labels(x: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """``x`` (N, features) with the one-hot ``labels`` appended; ``x`` itself when unconditional."""
    if num_classes == 0:
        return x
    if labels is None:
        raise ValueError("a conditional model needs labels")
    return torch.cat([x, F.one_hot(labels, num_classes).to(x.dtype)], dim=1)


def latent_code(z: torch.Tensor, codes: int) -> torch.Tensor:
    """The categorical code of each noise vector (N,): the argmax of its first ``codes`` coordinates,
    uniform over the codes for Gaussian noise, so every consumer that draws the noise draws the code."""
    return z[:, :codes].argmax(dim=1)


class Conditioning:
    """How a discriminator sees the label; this base is the unconditional discriminator's way.

    ``joins_input``: the label joins D's input (the architecture says how). ``modules`` are what it
    adds beside the real/fake ``head`` over D's features (``uses_features``: some), and ``output`` turns
    the head's logits into the real/fake logits and, for a classifier, class logits.
    """

    joins_input = False
    uses_features = False

    def modules(self, features: int, num_classes: int) -> dict[str, nn.Module]:
        return {}

    def output(
        self,
        discriminator: nn.Module,
        logits: torch.Tensor,
        features: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return logits, None


class Concat(Conditioning):
    """The article's: the one-hot label joins D's input."""

    joins_input = True


class Projection(Conditioning):
    """The inner product of a class embedding with D's features (Miyato & Koyama 2018, "cGANs with
    Projection Discriminator")."""

    uses_features = True

    def modules(self, features: int, num_classes: int) -> dict[str, nn.Module]:
        return {"embed": nn.Embedding(num_classes, features)}

    def output(self, discriminator, logits, features, labels):
        if labels is None:
            raise ValueError("a conditional model needs labels")
        # projection: y^T V phi(x), the label's embedding against the image's features
        return logits + (discriminator.embed(labels) * features).sum(1), None


class AuxiliaryClassifier(Conditioning):
    """An auxiliary classifier head beside the real/fake logit (Odena et al. 2017, "Conditional Image
    Synthesis with Auxiliary Classifier GANs")."""

    uses_features = True

    def modules(self, features: int, num_classes: int) -> dict[str, nn.Module]:
        return {"classifier": nn.Linear(features, num_classes)}

    def output(self, discriminator, logits, features, labels):
        return logits, discriminator.classifier(features)


class LatentCodes(AuxiliaryClassifier):
    """An unconditional D's head that tells which latent code drew a generated image (InfoGAN's Q
    head, sharing D's body): the step adds its cross-entropy on generated images to both losses."""


UNCONDITIONAL = Conditioning()
LATENT_CODES = LatentCodes()
# The conditionings a spec may name (genopt.spec.fields.CONDITIONING_NAMES; tests/test_registries.py).
CONDITIONINGS: dict[str, Conditioning] = {
    "concat": Concat(),
    "projection": Projection(),
    "acgan": AuxiliaryClassifier(),
}


def heads(features: int, conditioning: Conditioning, num_classes: int) -> dict[str, nn.Module]:
    """The real/fake ``head`` over ``features`` and the conditioning's own modules, in that order."""
    return {"head": nn.Linear(features, 1), **conditioning.modules(features, num_classes)}


@dataclass(frozen=True)
class Architecture:
    """One kind of network, as ``genopt.models.ARCHITECTURES`` names it.

    Attributes:
        generator: the generator's named stages, run in order: noise (with the one-hot label of a
            conditional model) -> images (N, C, H, W) in [-1, 1].
        discriminator: the discriminator's named modules for a conditioning: a ``body`` from the
            input to features plus ``heads``; or, when the conditioning does not use the features, possibly
            one ``net`` from the input straight to the logit (the article's MLP).
        discriminator_input: the images as the body reads them, with the labels joined (``num_classes``
            0: the label does not join the input).
        generator_widths, discriminator_widths: the ``RunConfig`` fields that hold the widths.
        widths_for_size: the widths actually built, from the spec's (generator's, discriminator's)
            and the image shape (C, H, W); None: the spec's as they are. The model configs record
            what this returns, so checkpoints rebuild the same networks.
    """

    generator: Callable[[GeneratorConfig], dict[str, nn.Module]]
    discriminator: Callable[[DiscriminatorConfig, Conditioning], dict[str, nn.Module]]
    discriminator_input: Callable[[torch.Tensor, torch.Tensor | None, int], torch.Tensor]
    generator_widths: str
    discriminator_widths: str
    widths_for_size: (
        Callable[
            [tuple[int, ...], tuple[int, ...], tuple[int, int, int]],
            tuple[tuple[int, ...], tuple[int, ...]],
        ]
        | None
    ) = None
