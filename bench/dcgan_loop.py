"""A plain PyTorch DCGAN loop, the shape of the PyTorch examples' ``dcgan/main.py``, on genopt's networks.

Per batch: D's gradients zeroed, a pass over the real images and its backward, the generator's fakes,
a pass over them detached and its backward, D's Adam step; then G's gradients zeroed, a third pass of
D over the fakes and its backward (through D's weights too), G's Adam step. Adam is PyTorch's default
(foreach) at betas (0.5, 0.999), the loss ``BCEWithLogitsLoss`` (genopt's D returns logits; the
example's Sigmoid + ``BCELoss`` is the same loss), fp32. The images come as in-memory batches already
in [-1, 1], no DataLoader: the loop is timed on the step alone. ``train_throughput.py`` runs it side
by side with genopt's ``train`` on the same networks (``genopt.train.build_models``).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from genopt.data import to_model_range
from genopt.train import build_models


def plain_dcgan_epoch(config, dataset, n: int) -> float:
    """Seconds of one epoch of the plain loop over the first n training images of ``dataset``, with
    the networks ``config`` describes (its lr, betas, batch size, noise size and seed)."""
    torch.manual_seed(config.seed)
    G, D = build_models(config, dataset)
    G.train()
    D.train()
    betas = (config.beta1, config.beta2)
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr, betas=betas)
    criterion = nn.BCEWithLogitsLoss()
    conditional = G.config.num_classes > 0
    images = to_model_range(dataset.train.images[:n])
    labels = dataset.train.labels[:n]
    order = torch.randperm(n)
    start = time.perf_counter()
    for first in range(0, n, config.batch_size):
        idx = order[first : first + config.batch_size]
        real, y = images[idx], labels[idx] if conditional else None
        b = len(real)
        ones, zeros = torch.ones(b), torch.zeros(b)
        D.zero_grad()
        loss_real = criterion(D(real, y).view(-1), ones)
        loss_real.backward()
        fake = G(torch.randn(b, config.noise_dim), y)
        loss_fake = criterion(D(fake.detach(), y).view(-1), zeros)
        loss_fake.backward()
        opt_D.step()
        G.zero_grad()
        loss_G = criterion(D(fake, y).view(-1), ones)
        loss_G.backward()
        opt_G.step()
    loss_G.item()
    return time.perf_counter() - start
