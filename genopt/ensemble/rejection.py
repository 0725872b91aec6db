"""Rejection sampling of an unconditional ensemble toward the data's classes (``genopt ensemble``).

An unconditional GAN draws some classes too often and some images that are no class at all; its
export can correct part of that by throwing candidates away. Each candidate image is classified by
the study's feature network. One whose top class probability is under the filter's ``confidence``
(``CONFIDENCE`` by default) is rejected;
one of class c is kept with probability ``accept[c]``, chosen so that the kept images' classes follow
the training split's class histogram t (rejection sampling: ``accept[c] = (t_c / q_c) / M``, with q
the ensemble's histogram of confident images, estimated once from a sample, and M the largest ratio,
capped at ``MAX_RATIO`` so that a class the ensemble almost never draws cannot make sampling
arbitrarily slow: such a class stays short).

The filter judges with the network genopt scores with, so genopt's own coverage and unsure share of
a filtered export improve partly by construction: ``bench/second_classifier.py``, a network of
another design, is the independent reading.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from genopt.device import rng_device
from genopt.errors import GenoptError
from genopt.metrics.features import FeatureNet

METHOD = "classes"
# The least top class probability of a kept image, by default. 0.99 rather than the unsure share's 0.9:
# in two 30-minute GAN studies it took the test FID down by 13-24 % and the second classifier's unsure
# share from 0.08-0.13 to 0.015-0.026; 0.999 keeps too few kinds of strokes (docs/quality.md).
CONFIDENCE = 0.99
MAX_RATIO = 8.0
# ``genopt ensemble --rejection auto`` leaves out a filter that would keep fewer candidates than this.
MIN_AUTO_RATE = 0.05
# The fit estimates the ensemble's class histogram on this many times the samples a score uses: the
# acceptances hang on the rarest confident class's count, whose noise shows in the kept classes.
FIT_DRAWS = 4
# Candidates drawn and classified at once at most (the network's activations are ~0.1 MB an image).
MAX_ROUND = 4096


def top_class(net: FeatureNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) top class probabilities and (N,) classes of ``images`` in [0, 1], by ``net``."""
    return net.logits(images * 2 - 1).float().softmax(dim=1).max(dim=1)


class Rejection(nn.Module):
    """Keeps a candidate image with a probability set by its class (see the module docstring).

    Args:
        net: the feature network that classifies (its ``task`` must be ``classes``).
        accept: (K,) the probability of keeping a confident image of each class.
        target: (K,) the class histogram the kept images should follow.
        acceptance_rate: the share of candidates kept, as measured when it was fitted.
        image_shape: (C, H, W) of the images the network reads.
        confidence: the least top class probability of a kept image.
    """

    def __init__(
        self,
        net: FeatureNet,
        accept: torch.Tensor,
        *,
        target: list[float],
        acceptance_rate: float,
        image_shape: tuple[int, int, int],
        confidence: float = CONFIDENCE,
    ) -> None:
        super().__init__()
        if net.task != "classes" or len(accept) != net.head.out_features:
            raise ValueError("rejection needs a class network with one acceptance per class")
        if not 0 < confidence < 1:
            raise ValueError(f"the confidence must be in (0, 1), got {confidence}")
        self.confidence = float(confidence)
        self.net = net.requires_grad_(False).eval()
        self.register_buffer("accept", torch.as_tensor(accept, dtype=torch.float32))
        self.target = [float(x) for x in target]
        self.acceptance_rate = float(acceptance_rate)
        self.image_shape = tuple(int(x) for x in image_shape)

    def forward(self, images: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which of ``images`` (in [0, 1]) to keep, given (N,) uniform ``draw`` in [0, 1)."""
        top, guess = top_class(self.net, images)
        return (top >= self.confidence) & (draw < self.accept[guess])

    def record(self) -> dict[str, Any]:
        """Plain values and tensors for the export (``from_record`` reads them back)."""
        net = self.net
        return {
            "method": METHOD,
            "confident_at_least": self.confidence,
            "target": self.target,
            "accept": [float(x) for x in self.accept],
            "acceptance_rate": self.acceptance_rate,
            "max_ratio": MAX_RATIO,
            "feature_net": {
                "sha256": net.sha256,
                "image_shape": list(self.image_shape),
                "num_classes": net.head.out_features,
                "channels": [net.conv1.out_channels, net.conv2.out_channels],
                "batch_norm": isinstance(net.norm_fc, nn.BatchNorm1d),
            },
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, name: str) -> Rejection:
        """The filter an export recorded.

        Raises:
            GenoptError: an unknown method, or a record whose weights do not fit its network.
        """
        try:
            if record["method"] != METHOD:
                raise GenoptError(f"{name}: unknown rejection method {record['method']!r}: upgrade genopt")
            spec = record["feature_net"]
            net = FeatureNet(
                tuple(spec["image_shape"]),
                int(spec["num_classes"]),
                channels=tuple(spec["channels"]),
                batch_norm=bool(spec["batch_norm"]),
            )
            net.load_state_dict(record["state_dict"])
            net.sha256 = str(spec["sha256"])
            accept = torch.tensor(record["accept"], dtype=torch.float32)
            return cls(
                net,
                accept,
                target=record["target"],
                acceptance_rate=record["acceptance_rate"],
                image_shape=tuple(spec["image_shape"]),
                confidence=float(record["confident_at_least"]),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())
            raise GenoptError(f"{name} has a bad rejection record: {reason}") from None


@torch.no_grad()
def fit_rejection(
    ensemble: nn.Module,
    net: FeatureNet,
    target: torch.Tensor,
    *,
    samples: int,
    generator: torch.Generator,
    confidence: float = CONFIDENCE,
) -> Rejection:
    """A filter that moves the unconditional ``ensemble``'s classes toward ``target``.

    Args:
        ensemble: an unconditional ``EnsembleGenerator`` without a filter.
        net: the study's feature network, trained on the data's classes.
        target: (K,) the class histogram to move toward (the training split's).
        samples: candidates drawn to estimate the ensemble's own histogram.
        generator: the source of those candidates.
        confidence: the least top class probability of a kept image.

    When none of the candidates is confidently any class, the filter keeps nothing: its
    ``acceptance_rate`` is 0, for the caller to refuse or leave out.
    """
    target = target.double() / target.sum()
    confident = []
    for start in range(0, samples, MAX_ROUND):
        args = ensemble.inputs(min(MAX_ROUND, samples - start), generator=generator)
        images = ensemble(args[0], None, *args[1:])
        top, guess = top_class(net.to(images.device), images)
        confident.append(guess[top >= confidence].cpu())
    q = torch.bincount(torch.cat(confident), minlength=len(target)).double() / samples
    ratio = torch.where(q > 0, target / q.clamp_min(1e-12), torch.zeros_like(q))
    accept = (ratio / min(float(ratio.max()), MAX_RATIO)).clamp(max=1.0) if q.any() else ratio
    rate = float((q * accept).sum())
    # A copy of its own, on the ensemble's device: it moves with the ensemble and is exported with
    # it, while the study's network stays as its evaluator uses it.
    return Rejection(
        copy.deepcopy(net),
        accept.float(),
        target=target.tolist(),
        acceptance_rate=rate,
        image_shape=ensemble.image_shape,
        confidence=confidence,
    )


@torch.no_grad()
def draw_kept(ensemble: nn.Module, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n images in [0, 1] that ``ensemble.rejection`` keeps, drawn in rounds from ``generator``.

    Each round draws the ensemble's inputs, then one uniform per candidate for the filter, enough
    candidates for what is missing at the fitted acceptance rate (with a margin).
    """
    rejection: Rejection = ensemble.rejection
    rate = max(rejection.acceptance_rate, 1e-3)
    kept, have, empty = [], 0, 0
    while have < n:
        m = min(MAX_ROUND, max(64, math.ceil((n - have) / rate * 1.1)))
        args = ensemble.inputs(m, generator=generator)
        images = ensemble(args[0], None, *args[1:])
        draw = torch.rand(m, generator=generator, device=rng_device(generator)).to(images.device)
        keep = rejection(images, draw)
        kept.append(images[keep])
        have += int(keep.sum())
        empty = 0 if keep.any() else empty + 1
        if empty == 20:
            raise GenoptError(f"rejection sampling kept none of {20 * m:,} candidates in a row")
    return torch.cat(kept)[:n]
