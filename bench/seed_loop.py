"""The seed's training loop, faithfully re-implemented, and genopt's trainer at the seed's settings.

The seed (the script this project started from) trains from a torchvision MNIST DataLoader with
``ToTensor``, ends its discriminator with a Sigmoid under ``BCELoss``, runs three discriminator
passes per step (real, detached fake, fake) and uses Adam with its CPU default (a for-loop). This
module is the one copy of that loop the benchmarks compare against (``train_throughput.py``), and of
genopt's ``train`` run at the seed's learning rate and noise size.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from genopt.spec import StudySpec, load_spec
from genopt.train import train

# Multiply-adds of the seed's MLPs, and the seed step's FLOPs per image: G forward and backward
# (3x), D forward and backward (3x) for each of its three passes.
G_MACS = 100 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784
D_MACS = 784 * 512 + 512 * 256 + 256 * 1
STEP_FLOP_PER_IMAGE = 2 * (3 * G_MACS + 3 * 3 * D_MACS)
SEED_LR, SEED_NOISE = 2e-4, 100
# The article's GAN spec as genopt ships it (its MLPs are the seed's), so what a speed-up is measured on.
SHIPPED_SPEC = Path(__file__).resolve().parents[1] / "studies" / "gan-article.toml"


class SeedMNIST(torch.utils.data.Dataset):
    """``torchvision.datasets.MNIST(transform=ToTensor())`` over genopt's uint8 train images.

    Like torchvision, each item is a PIL image made from the uint8 array, then ``ToTensor``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images[:, 0], labels
        self.transform = transforms.ToTensor()

    @classmethod
    def first(cls, dataset, n: int) -> SeedMNIST:
        """The first n images of a genopt dataset's train split."""
        return cls(dataset.train.images[:n], dataset.train.labels[:n])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i].numpy(), mode="L")
        return self.transform(image), int(self.labels[i])


class SeedGenerator(nn.Module):
    def __init__(self, noise_dim: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(noise_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, 28 * 28),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.model(z).reshape(-1, 1, 28, 28)


class SeedDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, img):
        return self.model(img)


def seed_epoch(dataset: SeedMNIST, batch_size: int, device: torch.device, seed: int = 0) -> float:
    """One epoch of the seed's ``train_gan`` loop; seconds spent in the loop."""
    torch.manual_seed(seed)
    dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    generator, discriminator = SeedGenerator(SEED_NOISE).to(device), SeedDiscriminator().to(device)
    optimizer_G = torch.optim.Adam(generator.parameters(), lr=SEED_LR)
    optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=SEED_LR)
    sync(device)
    start = time.perf_counter()
    for real_imgs, _ in dataloader:
        real_imgs = real_imgs.to(device)
        n = real_imgs.size(0)
        optimizer_D.zero_grad()
        noise = torch.randn(n, SEED_NOISE, device=device)
        fake_imgs = generator(noise)
        ones, zeros = torch.ones(n, 1, device=device), torch.zeros(n, 1, device=device)
        d_loss_real = nn.BCELoss()(discriminator(real_imgs), ones)
        d_loss_fake = nn.BCELoss()(discriminator(fake_imgs.detach()), zeros)
        d_loss = d_loss_real + d_loss_fake
        d_loss.backward()
        optimizer_D.step()
        optimizer_G.zero_grad()
        g_loss = nn.BCELoss()(discriminator(fake_imgs), ones)
        g_loss.backward()
        optimizer_G.step()
    d_loss.item()
    sync(device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    """Wait for the device, so that a timer read after it counts all queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- genopt's trainer at the seed's settings ------------------------------------------------------


def shipped_spec() -> StudySpec:
    """``studies/gan-article.toml``: the article's GAN as shipped (the built-in defaults without it)."""
    return load_spec(SHIPPED_SPEC) if SHIPPED_SPEC.is_file() else StudySpec()


def genopt_config(n: int, batch_size: int, precision: str | None = "fp32"):
    """A genopt run of the seed's GAN (noise 100) over the first n images, one epoch, seed 0,
    otherwise as shipped (``shipped_spec``); ``precision`` None keeps the shipped spec's."""
    spec = shipped_spec()
    spec = dataclasses.replace(
        spec, train_limit=n, batch_size=batch_size, max_epochs=1, precision=precision or spec.precision
    )
    return spec.run_config({"lr": SEED_LR, "batch_size": batch_size, "noise_dim": SEED_NOISE}, seed=0)


def genopt_epoch(dataset, n: int, batch_size: int, device, precision: str | None = "fp32") -> float:
    """Seconds of one epoch of genopt's ``train`` over the first n images (setup not counted)."""
    result = train(genopt_config(n, batch_size, precision), dataset, device=device)
    return result.epochs[0].seconds
