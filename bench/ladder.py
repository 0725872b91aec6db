"""The lever ladder: genopt's training step reached from the seed's one change at a time.

Every rung is one ``Levers`` value, and ``ladder_step`` builds its step from genopt's own pieces
(``build_models``, ``autocast``, ``adam``, ``to_model_range``): Sigmoid + BCE or BCE with logits,
separate or one discriminator pass over real and fake. Once D is frozen in G's backward (which
needs the two before it) the step IS ``genopt.step.train_step``, unchanged; the rungs after it
change only the optimiser, the thread count or the precision. The first rung takes the seed's
DataLoader + ToTensor batches (``seed_loop.SeedMNIST``) through the seed's layers, which genopt's
GAN models are, with a Sigmoid on their logit: the seed's loop built from the same pieces.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator

import _common
import torch
import torch.nn.functional as F
from seed_loop import SeedMNIST, genopt_config, sync
from torch.utils.data import DataLoader

from genopt.data import to_model_range
from genopt.step import adam, autocast, train_step
from genopt.train import build_models

ADAMS = ("for-loop", "foreach", "fused")


@dataclasses.dataclass(frozen=True)
class Levers:
    """Which of genopt's changes a loop has; all off is the seed's loop."""

    memory: bool = False  # in-memory uint8 batches, else the seed's DataLoader + ToTensor
    logits: bool = False  # BCE with logits, else Sigmoid + BCE
    joint: bool = False  # one D pass over real and detached fake, else one each
    freeze: bool = False  # D frozen in G's backward: genopt's train_step (needs logits and joint)
    adam: str = "for-loop"  # Adam's implementation: the CPU default for-loop, foreach or fused
    bf16: bool = False  # bfloat16 autocast (genopt's precision = "bf16")
    threads: int | None = None  # torch threads for this loop; None: the process's count


SEED = Levers()
MEMORY = dataclasses.replace(SEED, memory=True)
LOGITS = dataclasses.replace(MEMORY, logits=True)
JOINT = dataclasses.replace(LOGITS, joint=True)
FROZEN = dataclasses.replace(JOINT, freeze=True)
FOREACH = dataclasses.replace(FROZEN, adam="foreach")
GENOPT = dataclasses.replace(FOREACH, adam="fused")

LADDER = [
    ("seed loop (DataLoader + ToTensor, Sigmoid + BCELoss, 3 D passes, for-loop Adam)", SEED),
    ("+ in-memory uint8 batches", MEMORY),
    ("+ BCE with logits", LOGITS),
    ("+ one D pass over real and fake", JOINT),
    ("+ D frozen in G's backward", FROZEN),
    ("+ foreach Adam", FOREACH),
    ("+ fused Adam (genopt fp32)", GENOPT),
    ("genopt fp32, 1 thread", dataclasses.replace(GENOPT, threads=1)),
    ("genopt fp32, 2 threads", dataclasses.replace(GENOPT, threads=2)),
    ("genopt + bf16 autocast", dataclasses.replace(GENOPT, bf16=True)),
]
QUICK = (0, 1, 4, 5, 6, 7, 8, 9)

Step = Callable[..., object]  # (G, D, opt_G, opt_D, real, z)


def ladder_step(levers: Levers) -> Step:
    """The training step of a rung: ``train_step`` itself once D is frozen, else composed."""
    precision = "bf16" if levers.bf16 else "fp32"
    if levers.freeze:
        if not (levers.logits and levers.joint):
            raise ValueError("freezing D is genopt's train_step: it needs logits and joint as well")
        return lambda G, D, opt_G, opt_D, real, z: train_step(G, D, opt_G, opt_D, real, None, z, precision)

    def loss(logits: torch.Tensor, target: float) -> torch.Tensor:
        logits = logits.float()
        targets = torch.full_like(logits, target)
        if levers.logits:
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.binary_cross_entropy(torch.sigmoid(logits), targets)

    def step(G, D, opt_G, opt_D, real, z) -> None:
        b = len(real)
        with autocast(precision, real.device):
            fake = G(z)
            if levers.joint:
                logits = D(torch.cat([real, fake.detach()]))
                real_logits, fake_logits = logits[:b], logits[b:]
            else:
                real_logits, fake_logits = D(real), D(fake.detach())
        d_loss = loss(real_logits, 1.0) + loss(fake_logits, 0.0)
        opt_D.zero_grad()
        d_loss.backward()
        opt_D.step()
        with autocast(precision, real.device):
            g_logits = D(fake)
        opt_G.zero_grad()
        loss(g_logits, 1.0).backward()
        opt_G.step()

    return step


def optimizers(G, D, config, kind: str) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D as the run config says: genopt's own (fused), or the for-loop or foreach."""
    if kind == "fused":
        return adam(G, config), adam(D, config)
    if kind not in ADAMS:
        raise ValueError(f"unknown Adam {kind!r}: choose one of {', '.join(ADAMS)}")
    betas = (config.beta1, config.beta2)
    return tuple(
        torch.optim.Adam(m.parameters(), lr=config.lr, betas=betas, foreach=kind == "foreach") for m in (G, D)
    )


def lever_epoch(dataset, n: int, batch_size: int, device: torch.device, levers: Levers) -> float:
    """Seconds of one epoch over the first n images of the loop with these levers (setup not counted)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(levers.threads or threads)
    try:
        torch.manual_seed(0)
        config = genopt_config(n, batch_size)
        G, D = (m.to(device) for m in build_models(config, dataset))
        opt_G, opt_D = optimizers(G, D, config, levers.adam)
        step = ladder_step(levers)
        if levers.memory:
            images = dataset.train.images[:n].to(device)

            def batches() -> Iterator[torch.Tensor]:
                order = torch.randperm(n)
                for first in range(0, n, batch_size):
                    yield to_model_range(images[order[first : first + batch_size]])
        else:
            loader = DataLoader(SeedMNIST.first(dataset, n), batch_size=batch_size, shuffle=True)

            def batches() -> Iterator[torch.Tensor]:
                for real, _ in loader:  # in [0, 1], as the seed feeds its discriminator
                    yield real.to(device)

        sync(device)
        start = time.perf_counter()
        for real in batches():
            step(G, D, opt_G, opt_D, real, torch.randn(len(real), config.noise_dim, device=device))
        sync(device)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def ladder_section(dataset, n: int, rounds: int, device: torch.device, quick: bool) -> list[str]:
    """Run the ladder at batch 64, rungs alternated in every round; the report's lines."""
    ladder = [LADDER[i] for i in QUICK] if quick else LADDER
    speed: dict[str, list[float]] = {}
    for r in range(rounds):
        for name, levers in ladder:
            speed.setdefault(name, []).append(n / lever_epoch(dataset, n, 64, device, levers))
        print(f"lever round {r + 1}/{rounds} done", flush=True)
    base = speed[ladder[0][0]]
    rows, previous = [], None
    for name, levers in ladder:
        over_seed = [a / b for a, b in zip(speed[name], base, strict=True)]
        step = ""
        if previous is not None:
            step = _common.median_range([a / b for a, b in zip(speed[name], previous, strict=True)]) + "x"
        rows.append(
            [name, f"{statistics.median(speed[name]):,.0f}", _common.median_range(over_seed) + "x", step]
        )
        if levers.threads is None:
            previous = speed[name]
    lines = [
        "",
        "### Levers, one at a time (batch 64)",
        "",
        "Each row adds one change to the row above; the thread rows change only the thread count of "
        "the fused-Adam row (the others run with the process's count), and bf16 builds on fused Adam. "
        "Same rounds, alternated.",
        "",
    ]
    return lines + _common.table(["loop", "img/s", "over seed", "over previous row"], rows)
