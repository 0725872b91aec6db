"""One training step and what it carries: the optimisers, the generator's weight average, and on a
GPU the CUDA graph the step is captured in and replayed from.

``train_step`` is one discriminator update and one generator update. ``TrainStep`` wraps it for
``genopt.train.train``: it builds the optimisers and the weight average, draws each batch's noise,
adds up the losses, and on a GPU replays the step over a full batch from a CUDA graph (the same
updates, launched at once instead of op by op; docs/benchmarks_cuda_graphs.md).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genopt.augment import Augmentation
from genopt.data import to_model_range
from genopt.device import resolve_precision
from genopt.models import Discriminator, Generator
from genopt.models.base import latent_code
from genopt.spec import RunConfig

# Eager steps on a side stream before the step is captured, as torch.cuda.graph asks: autograd,
# the optimisers' state and the libraries' workspaces are set up on first use, not in a graph.
GRAPH_WARMUP_STEPS = 3


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a spec's ``precision``: none for ``fp32``, bfloat16 for ``bf16``.

    ``auto`` is either, as ``genopt.device.resolve_precision`` decides for ``device``.
    """
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adam(
    model: torch.nn.Module, config: RunConfig, *, lr_ratio: float = 1.0, capturable: bool = False
) -> torch.optim.Adam:
    """Adam as the run says, at ``lr_ratio`` times its lr; fused, which is measured fastest on the
    CPU (docs/benchmarks.md).

    ``capturable`` keeps all of its state on the device, so that its step can run in a CUDA graph.
    """
    return torch.optim.Adam(
        model.parameters(),
        lr=config.lr * lr_ratio,
        betas=(config.beta1, config.beta2),
        fused=True,
        capturable=capturable,
    )


def _unchanged(images: torch.Tensor) -> torch.Tensor:
    return images


def train_step(
    G: Generator,
    D: Discriminator,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor | None,
    z: torch.Tensor,
    precision: str = "fp32",
    *,
    augment_real: Augmentation | None = None,
    augment_fake: Augmentation | None = None,
    loss: str = "bce",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One discriminator update and one generator update; returns the two losses (detached).

    The same losses and gradients as separate discriminator passes over real and fake images
    (tests/test_train_step.py), with less work: one pass over both, and no gradients for D's
    weights during the generator's backward. (With spectral norm, D's power iteration runs once per
    pass, so once for both halves here.) An AC-GAN discriminator (Odena et al. 2017) adds the class
    cross-entropy of real and fake images to D's loss, and that of fake images to G's. An
    unconditional D with latent codes adds the cross-entropy of the code each fake image was drawn
    with (``latent_code`` of its noise) to both losses, as InfoGAN's mutual-information term.

    ``augment_real`` and ``augment_fake`` transform the images D sees (``genopt.augment``): the
    fakes in D's step and in G's alike, so G's gradient passes through the same augmentation.
    ``loss`` is the adversarial loss (``genopt.spec.fields.LOSSES``): ``bce``, the non-saturating
    cross-entropy, or ``hinge``: D minimises relu(1 - real) + relu(1 + fake), G minimises -fake.
    """
    b = len(real)
    for_real, for_fake = augment_real or _unchanged, augment_fake or _unchanged
    ctx = autocast(precision, real.device)
    with ctx:
        fake = G(z, labels)
        # discriminator: one pass over real and fake together (no batch statistics in D to mix)
        D.requires_grad_(True)
        logits, classes = D.forward_with_classes(
            torch.cat([for_real(real), for_fake(fake.detach())]),
            torch.cat([labels, labels]) if labels is not None else None,
        )
    if loss == "hinge":
        d_loss = F.relu(1 - logits[:b].float()).mean() + F.relu(1 + logits[b:].float()).mean()
    else:
        d_loss = F.binary_cross_entropy_with_logits(
            logits[:b].float(), torch.ones(b, device=real.device)
        ) + F.binary_cross_entropy_with_logits(logits[b:].float(), torch.zeros(b, device=real.device))
    codes = latent_code(z, D.config.codes) if labels is None and D.config.codes else None
    if classes is not None and codes is not None:
        d_loss = d_loss + F.cross_entropy(classes[b:].float(), codes)
    elif classes is not None:
        classes = classes.float()
        d_loss = d_loss + F.cross_entropy(classes[:b], labels) + F.cross_entropy(classes[b:], labels)
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_D.step()

    # generator: D's own gradients are not needed here, so D is frozen for this backward
    D.requires_grad_(False)
    with ctx:
        fake_logits, fake_classes = D.forward_with_classes(for_fake(fake), labels)
    if loss == "hinge":
        g_loss = -fake_logits.float().mean()
    else:
        g_loss = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones(b, device=real.device))
    if fake_classes is not None:
        g_loss = g_loss + F.cross_entropy(fake_classes.float(), labels if codes is None else codes)
    opt_G.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_G.step()
    D.requires_grad_(True)
    return d_loss.detach(), g_loss.detach()


class WeightAverage:
    """An exponential moving average of a generator's weights, updated after every generator step.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so the average forgets the random initial
    weights within the first epoch even at decay 0.999 rather than after thousands of steps.
    Buffers, which an average has no meaning for, are copied.

    With ``capturable`` the update count ``t`` is a float64 tensor on the model's device, so an
    update involves no Python number that changes from one to the next and a CUDA graph can replay
    it; the decay is the same float64 arithmetic, so the average is the same, bit for bit.
    """

    def __init__(self, model: Generator, decay: float, *, capturable: bool = False):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        device = next(model.parameters()).device
        self.updates: int | torch.Tensor = (
            torch.zeros((), dtype=torch.float64, device=device) if capturable else 0
        )
        self._params = list(self.model.parameters())
        self._source = list(model.parameters())
        self._buffers = list(zip(self.model.buffers(), model.buffers(), strict=True))

    @torch.no_grad()
    def update(self) -> None:
        if isinstance(self.updates, torch.Tensor):
            decay = ((1 + self.updates) / (10 + self.updates)).clamp_(max=self.decay)
            self.updates += 1
            # foreach lerp takes a tensor weight only as a list, one (broadcast) weight per tensor
            weight = (1.0 - decay).float()
            torch._foreach_lerp_(self._params, self._source, [weight] * len(self._params))
        else:
            decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
            self.updates += 1
            torch._foreach_lerp_(self._params, self._source, 1.0 - decay)
        for mine, theirs in self._buffers:
            mine.copy_(theirs)


def graphs_unsupported(config: RunConfig, device: torch.device, train_size: int) -> str | None:
    """Why ``train`` cannot replay this run's step from a CUDA graph, or None when it can.

    A graph replays the kernels it recorded on the memory it recorded them on, so every step must
    do the same work on the same device.

    Args:
        config: the run.
        device: where it trains.
        train_size: the training images it uses (``train_limit`` applied).
    """
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, and this run trains on {device.type!r}"
    if config.augment != "none":
        return (
            f"augment {config.augment!r} draws from a CPU random generator, which a CUDA graph cannot capture"
        )
    # The graph is captured on a full batch: without one it would never be, and be reported used.
    if train_size < config.batch_size:
        return f"no full batch to capture: {train_size} training images for batch_size {config.batch_size}"
    return None


@dataclass
class GraphState:
    """A graphed ``TrainStep``'s own state: the batch indices its graph reads, the side stream it
    warms up and captures on, how many warm-up steps it ran, and the graph once captured."""

    index: torch.Tensor
    stream: torch.cuda.Stream
    warmed: int = 0
    graph: torch.cuda.CUDAGraph | None = None


class TrainStep:
    """``train``'s step: one batch's noise, D's and G's updates, the weight average's update, and
    the batch's losses (times its size) added to ``d_total`` and ``g_total``.

    It builds the optimisers and the weight average (``average``, None when ``ema_decay`` is 0),
    which a graphed step needs in their capturable kinds. With ``graphed``, the step over a full
    batch runs eagerly on a side stream for its first ``GRAPH_WARMUP_STEPS`` batches, is then
    captured in a CUDA graph and from then on replayed: each replay gathers the batch from
    ``graph_state.index``, into which ``run`` copies the batch's indices, and draws fresh noise
    (a graph advances the default generator's philox offset on every replay). A partial batch, the
    last of an epoch, runs eagerly on the same weights, optimiser state and totals.
    """

    def __init__(
        self,
        config: RunConfig,
        G: Generator,
        D: Discriminator,
        images: torch.Tensor,
        labels: torch.Tensor,
        precision: str,
        *,
        graphed: bool = False,
        augment_real: Augmentation | None = None,
        augment_fake: Augmentation | None = None,
    ):
        device = images.device
        self.G, self.D = G, D
        self.opt_G = adam(G, config, capturable=graphed)
        self.opt_D = adam(D, config, lr_ratio=config.d_lr_ratio, capturable=graphed)
        self.average = (
            WeightAverage(G, config.ema_decay, capturable=graphed) if config.ema_decay > 0 else None
        )
        self.images, self.labels = images, labels
        self.conditional = G.config.num_classes > 0
        self.noise_dim, self.batch_size, self.precision = config.noise_dim, config.batch_size, precision
        self.loss = config.loss
        self.augment_real, self.augment_fake = augment_real, augment_fake
        self.d_total = torch.zeros((), device=device)
        self.g_total = torch.zeros((), device=device)
        self.graph_state = (
            GraphState(
                torch.zeros(config.batch_size, dtype=torch.long, device=device), torch.cuda.Stream(device)
            )
            if graphed
            else None
        )

    def reset_totals(self) -> None:
        """Zero ``d_total`` and ``g_total`` in place (a graph adds to these very tensors)."""
        self.d_total.zero_()
        self.g_total.zero_()

    def run(self, idx: torch.Tensor) -> None:
        """One training step on the batch ``images[idx]`` (``idx`` on the images' device)."""
        state = self.graph_state
        if state is None or len(idx) != self.batch_size:
            self._step(idx)
            return
        state.index.copy_(idx)
        if state.graph is not None:
            state.graph.replay()
            return
        main = torch.cuda.current_stream(state.index.device)
        state.stream.wait_stream(main)
        if state.warmed < GRAPH_WARMUP_STEPS:
            with torch.cuda.stream(state.stream):
                self._step(state.index)
            main.wait_stream(state.stream)
            state.warmed += 1
            return
        state.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(state.graph, stream=state.stream):
            self._step(state.index)
        state.graph.replay()  # capturing only records the step: this replay trains on the batch

    def _step(self, idx: torch.Tensor) -> None:
        real = to_model_range(self.images[idx])
        y = self.labels[idx] if self.conditional else None
        b = len(idx)
        z = torch.randn(b, self.noise_dim, device=self.images.device)
        d_loss, g_loss = train_step(
            self.G,
            self.D,
            self.opt_G,
            self.opt_D,
            real,
            y,
            z,
            self.precision,
            augment_real=self.augment_real,
            augment_fake=self.augment_fake,
            loss=self.loss,
        )
        if self.average is not None:
            self.average.update()
        self.d_total += d_loss * b
        self.g_total += g_loss * b
