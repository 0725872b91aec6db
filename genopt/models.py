"""The generator and discriminator, unconditional or conditioned on a class label.

Two kinds: the article's MLPs (``"mlp"``), or DCGAN-style convolutional networks (``"dcgan"``,
Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs").
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
from genopt.errors import GenoptError
from genopt.spec import CONDITIONINGS, KINDS


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator: noise size, hidden widths, image shape, classes (0: unconditional).

    A conditional generator always takes the article's one-hot label concatenated to the noise,
    whatever the discriminator's conditioning: projection and AC-GAN change only how the
    discriminator uses the label, so a generator checkpoint loads the same way for all three.
    ``widths`` are the hidden layers' units for ``kind = "mlp"``, and for ``"dcgan"`` the channels
    of each stage, from the smallest feature map up (each stage doubles height and width).
    """

    noise_dim: int
    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    kind: str = "mlp"

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
        )


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
    For ``kind = "dcgan"``, ``widths`` are the channels of each stride-2 convolution from the image
    down, and ``"concat"`` appends the one-hot label as constant image planes.
    """

    widths: tuple[int, ...]
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    leaky_slope: float = 0.2
    conditioning: str = "concat"
    spectral_norm: bool = False
    kind: str = "mlp"

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


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")


def _halvings(size: int) -> int:
    """How many times ``size`` halves evenly: 28 -> 2 (28, 14, 7), 32 -> 5."""
    return (size & -size).bit_length() - 1


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al. 2016): weights from N(0, 0.02), batch norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _dcgan_generator(
    fan_in: int, channels: tuple[int, ...], image_shape: tuple[int, int, int]
) -> tuple[nn.Module, nn.Module]:
    """DCGAN's generator: a linear projection of the noise to the smallest feature map, then one
    stride-2 transposed convolution per stage, batch norm and ReLU between, Tanh at the end."""
    c, h, w = image_shape
    stages = len(channels)
    if _halvings(h) < stages or _halvings(w) < stages:
        most = min(_halvings(h), _halvings(w))
        raise GenoptError(
            f"dcgan cannot build {h}x{w} images with {stages} generator_channels stages: each stage doubles "
            f"height and width, so both must be multiples of {2**stages}; this size allows at most {most}"
        )
    h0, w0 = h >> stages, w >> stages
    project = nn.Linear(fan_in, channels[0] * h0 * w0, bias=False)
    layers: list[nn.Module] = [nn.Unflatten(1, (channels[0], h0, w0)), nn.BatchNorm2d(channels[0]), nn.ReLU()]
    for fan_in_c, fan_out_c in zip(channels[:-1], channels[1:], strict=True):
        layers += [
            nn.ConvTranspose2d(fan_in_c, fan_out_c, 4, 2, 1, bias=False),
            nn.BatchNorm2d(fan_out_c),
            nn.ReLU(),
        ]
    layers += [nn.ConvTranspose2d(channels[-1], c, 4, 2, 1), nn.Tanh()]
    return project, nn.Sequential(*layers)


def _dcgan_discriminator(
    in_channels: int, channels: tuple[int, ...], size: tuple[int, int], activation: nn.Module
) -> tuple[nn.Module, int]:
    """DCGAN's discriminator body: stride-2 convolutions with LeakyReLU, flattened; and its width.

    No batch norm: genopt's step passes real and fake images through D together (``train_step``),
    and batch statistics would mix the two; ``spectral_norm`` is the way to normalise D.
    """
    h, w = size
    stages = len(channels)
    if h >> stages < 1 or w >> stages < 1:
        raise GenoptError(
            f"dcgan cannot read {h}x{w} images with {stages} discriminator_channels stages: each halves "
            f"height and width, so both must be at least {2**stages}"
        )
    layers: list[nn.Module] = []
    for fan_in_c, fan_out_c in zip((in_channels, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv2d(fan_in_c, fan_out_c, 4, 2, 1), activation]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), channels[-1] * (h >> stages) * (w >> stages)


class Generator(nn.Module):
    """Noise (and a one-hot label) -> an MLP with ReLU, or DCGAN's transposed convolutions -> Tanh.

    Images are in [-1, 1], shape (N, C, H, W).
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        _check_kind(config.kind)
        self.config = config
        c, h, w = config.image_shape
        fan_in = config.noise_dim + config.num_classes
        if config.kind == "dcgan":
            self.project, self.body = _dcgan_generator(fan_in, config.widths, config.image_shape)
            _dcgan_init(self)
        else:
            self.net = nn.Sequential(*_mlp([fan_in, *config.widths, c * h * w], nn.ReLU()), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = _with_labels(z, labels, self.config.num_classes)
        if self.config.kind == "dcgan":
            return self.body(self.project(x))
        return self.net(x).view(-1, *self.config.image_shape)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for ``labels`` (ignored when unconditional), one noise draw each."""
        device = next(self.parameters()).device
        z = torch.randn(len(labels), self.config.noise_dim, generator=generator, device=rng_device(generator))
        return self(z.to(device), labels.to(device) if self.config.num_classes else None)


class Discriminator(nn.Module):
    """Image (and label) -> MLP or strided convolutions with LeakyReLU -> one logit (BCE with logits).

    ``kind`` is the conditioning in effect: ``"none"`` for an unconditional model, else the config's.
    The MLP's ``"none"`` and ``"concat"`` keep the article's single ``net``; every other case runs
    a ``body`` over the image (for a DCGAN with ``"concat"``, the image and its label planes), then
    a ``head`` (and a class embedding or classifier).
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        if config.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"unknown conditioning {config.conditioning!r}: choose one of {', '.join(CONDITIONINGS)}"
            )
        _check_kind(config.kind)
        self.config = config
        self.kind = config.conditioning if config.num_classes else "none"
        c, h, w = config.image_shape
        activation = nn.LeakyReLU(config.leaky_slope)
        if config.kind == "dcgan":
            planes = config.num_classes if self.kind == "concat" else 0
            self.body, features = _dcgan_discriminator(c + planes, config.widths, (h, w), activation)
        elif self.kind in ("none", "concat"):
            sizes = [c * h * w + config.num_classes, *config.widths, 1]
            self.net = nn.Sequential(*_mlp(sizes, activation))
        else:
            sizes = [c * h * w, *config.widths]
            body: list[nn.Module] = []
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
                body += [nn.Linear(fan_in, fan_out), activation]
            self.body = nn.Sequential(*body)
            features = sizes[-1]
        if hasattr(self, "body"):
            self.head = nn.Linear(features, 1)
            if self.kind == "projection":
                self.embed = nn.Embedding(config.num_classes, features)
            elif self.kind == "acgan":
                self.classifier = nn.Linear(features, config.num_classes)
        if config.kind == "dcgan":
            _dcgan_init(self)
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
        """The real/fake logits (N,) and, for AC-GAN only, class logits (N, classes); else None.

        One pass gives both, so the AC-GAN losses cost no extra forward pass.
        """
        classes = self.config.num_classes
        if self.config.kind == "dcgan":
            x = images
            if self.kind == "concat":
                planes = _with_labels(images.new_zeros(len(images), 0), labels, classes)
                x = torch.cat([images, planes[:, :, None, None].expand(-1, -1, *images.shape[2:])], dim=1)
            features = self.body(x)
        elif self.kind in ("none", "concat"):
            return self.net(_with_labels(images.flatten(1), labels, classes)).squeeze(1), None
        else:
            features = self.body(images.flatten(1))
        logits = self.head(features).squeeze(1)
        if self.kind == "acgan":
            return logits, self.classifier(features)
        if self.kind == "projection":
            if labels is None:
                raise ValueError("a conditional model needs labels")
            # projection: y^T V phi(x), the label's embedding against the image's features
            return logits + (self.embed(labels) * features).sum(1), None
        return logits, None
