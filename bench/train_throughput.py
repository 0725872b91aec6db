"""Training throughput: genopt's trainer against a faithful re-implementation of the seed's loop.

The seed (../shared/seed/000_f430a925fb960c65.txt) trains from a torchvision MNIST DataLoader with
``ToTensor``, ends its discriminator with a Sigmoid under ``BCELoss``, runs three discriminator
passes per step (real, detached fake, fake) and uses Adam with its CPU default (a for-loop). Both
loops train the same MLPs on the same images; they run alternately in one process so that drift of
a shared machine falls on both. A lever ladder adds genopt's changes one at a time, and a short
training run scores fp32 against bf16 by validation FID.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import _common
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from genopt.data import load_dataset, to_model_range
from genopt.spec import StudySpec
from genopt.train import build_models, train, train_step

# Multiply-adds of the seed's MLPs, and the seed step's FLOPs per image: G forward and backward
# (3x), D forward and backward (3x) for each of its three passes.
G_MACS = 100 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784
D_MACS = 784 * 512 + 512 * 256 + 256 * 1
STEP_FLOP_PER_IMAGE = 2 * (3 * G_MACS + 3 * 3 * D_MACS)
SEED_LR, SEED_NOISE = 2e-4, 100
# The FID comparison trains at a learning rate that draws digits within a few epochs (FACTS.md).
FID_LR = 1.5e-3


# -- the seed's loop ------------------------------------------------------------------------------


class SeedMNIST(torch.utils.data.Dataset):
    """``torchvision.datasets.MNIST(transform=ToTensor())`` over genopt's uint8 train images.

    Like torchvision, each item is a PIL image made from the uint8 array, then ``ToTensor``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images[:, 0], labels
        self.transform = transforms.ToTensor()

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
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- genopt's trainer -----------------------------------------------------------------------------


def genopt_config(n: int, batch_size: int, precision: str = "fp32", epochs: int = 1, lr: float = SEED_LR):
    spec = StudySpec(train_limit=n, batch_size=batch_size, max_epochs=epochs, precision=precision)
    return spec.run_config({"lr": lr, "batch_size": batch_size, "noise_dim": SEED_NOISE}, seed=0)


def genopt_epoch(dataset, n: int, batch_size: int, device, precision: str = "fp32") -> float:
    """Seconds of one epoch of genopt's ``train`` over the first n images (setup not counted)."""
    result = train(genopt_config(n, batch_size, precision), dataset, device=device)
    return result.epochs[0].seconds


# -- the lever ladder -----------------------------------------------------------------------------

LADDER = [
    ("seed loop (DataLoader + ToTensor, Sigmoid + BCELoss, 3 D passes, for-loop Adam)", {}),
    ("+ in-memory uint8 batches", dict(memory=True)),
    ("+ BCE with logits", dict(memory=True, logits=True)),
    ("+ one D pass over real and fake", dict(memory=True, logits=True, joint=True)),
    ("+ D frozen in G's backward", dict(memory=True, logits=True, joint=True, freeze=True)),
    ("+ foreach Adam", dict(memory=True, logits=True, joint=True, freeze=True, adam="foreach")),
    ("+ fused Adam (genopt fp32)", dict(memory=True, logits=True, joint=True, freeze=True, adam="fused")),
    (
        "genopt fp32, 1 thread",
        dict(memory=True, logits=True, joint=True, freeze=True, adam="fused", threads=1),
    ),
    (
        "genopt fp32, 2 threads",
        dict(memory=True, logits=True, joint=True, freeze=True, adam="fused", threads=2),
    ),
    (
        "genopt + bf16 autocast",
        dict(memory=True, logits=True, joint=True, freeze=True, adam="fused", bf16=True),
    ),
]


def lever_epoch(dataset, n: int, batch_size: int, device, lever: dict) -> float:
    """Seconds of one epoch of the loop with the given levers switched on (all off: the seed)."""
    if not lever.get("memory"):
        return seed_epoch(SeedMNIST(dataset.train.images[:n], dataset.train.labels[:n]), batch_size, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(lever.get("threads", threads))
    try:
        torch.manual_seed(0)
        config = genopt_config(n, batch_size)
        G, D = (m.to(device) for m in build_models(config, dataset))
        kind = lever.get("adam")
        options = {"fused": True} if kind == "fused" else {"foreach": kind == "foreach"}
        opt_G = torch.optim.Adam(G.parameters(), lr=SEED_LR, betas=(0.5, 0.999), **options)
        opt_D = torch.optim.Adam(D.parameters(), lr=SEED_LR, betas=(0.5, 0.999), **options)
        images = dataset.train.images[:n].to(device)
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(n)
        for first in range(0, n, batch_size):
            real = to_model_range(images[order[first : first + batch_size]])
            z = torch.randn(len(real), SEED_NOISE, device=device)
            if lever.get("freeze"):
                train_step(G, D, opt_G, opt_D, real, None, z, "bf16" if lever.get("bf16") else "fp32")
            else:
                unfused_step(G, D, opt_G, opt_D, real, z, lever)
        sync(device)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def unfused_step(G, D, opt_G, opt_D, real, z, lever: dict) -> None:
    b = len(real)
    ones, zeros = torch.ones(b, device=real.device), torch.zeros(b, device=real.device)

    def loss(x, target):
        if lever.get("logits"):
            return F.binary_cross_entropy_with_logits(x, target)
        return F.binary_cross_entropy(torch.sigmoid(x), target)

    fake = G(z)
    opt_D.zero_grad()
    if lever.get("joint"):
        logits = D(torch.cat([real, fake.detach()]))
        d_loss = loss(logits[:b], ones) + loss(logits[b:], zeros)
    else:
        d_loss = loss(D(real), ones) + loss(D(fake.detach()), zeros)
    d_loss.backward()
    opt_D.step()
    opt_G.zero_grad()
    loss(D(fake), ones).backward()
    opt_G.step()


# -- fp32 against bf16 by FID ---------------------------------------------------------------------


def precision_fid(dataset, n: int, epochs: int, seeds: list[int], fid_samples: int, device):
    """Validation FID after training at ``FID_LR`` in fp32 and in bf16, same seeds; rows per seed."""
    from genopt.metrics import FidEvaluator

    evaluator = FidEvaluator(dataset, device=device)
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for precision in ("fp32", "bf16"):
            config = dataclasses.replace(
                genopt_config(n, 64, precision, epochs=epochs, lr=FID_LR), seed=seed, model="cgan"
            )
            result = train(config, dataset, device=device)
            noise = torch.Generator(device).manual_seed(12345)
            fid = evaluator.score(
                lambda y, g=result.generator, noise=noise: g.sample(y, generator=noise), fid_samples
            )
            row[precision] = fid
            row[precision + "_ips"] = result.images_per_second
        rows.append(row)
    return rows


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.setup(args)
    quick = args.quick
    rounds = 3 if quick else 4
    n = 2048 if quick else 4096
    batch_sizes = (16, 64, 128)
    device = torch.device("cpu")
    dataset = load_dataset("mnist")
    seed_data = SeedMNIST(dataset.train.images[:n], dataset.train.labels[:n])

    peak32 = _common.matmul_peak(torch.float32)
    peak16 = _common.matmul_peak(torch.bfloat16)
    print(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s", flush=True)

    # warm up allocators and oneDNN/MKL kernels of every path once
    seed_epoch(SeedMNIST(dataset.train.images[:512], dataset.train.labels[:512]), 64, device)
    genopt_epoch(dataset, 512, 64, device)
    genopt_epoch(dataset, 512, 64, device, "bf16")

    speed: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for bs in batch_sizes:
            for name, fn in (
                ("seed", lambda bs=bs, r=r: seed_epoch(seed_data, bs, device, seed=r)),
                ("genopt", lambda bs=bs: genopt_epoch(dataset, n, bs, device)),
                ("genopt-bf16", lambda bs=bs: genopt_epoch(dataset, n, bs, device, "bf16")),
            ):
                speed.setdefault((name, bs), []).append(n / fn())
        print(f"round {r + 1}/{rounds} done", flush=True)

    def ratios(name, bs):
        return [a / b for a, b in zip(speed[(name, bs)], speed[("seed", bs)], strict=True)]

    rows = []
    for bs in batch_sizes:
        g, s, h = (statistics.median(speed[(k, bs)]) for k in ("genopt", "seed", "genopt-bf16"))
        rows.append(
            [
                bs,
                f"{s:,.0f}",
                f"{g:,.0f}",
                _common.median_range(ratios("genopt", bs)) + "x",
                f"{g * STEP_FLOP_PER_IMAGE / 1e9:.0f} ({g * STEP_FLOP_PER_IMAGE / 1e9 / peak32:.0%})",
                f"{h:,.0f}",
                _common.median_range(ratios("genopt-bf16", bs)) + "x",
                f"{h * STEP_FLOP_PER_IMAGE / 1e9:.0f} ({h * STEP_FLOP_PER_IMAGE / 1e9 / peak16:.0%})",
            ]
        )
    lines = _common.header("Training throughput: genopt's trainer against the seed's loop")
    lines += [
        f"MNIST, the seed's MLPs (G 100-256-512-1024-784, D 784-512-256-1), {n} images per epoch, "
        f"{rounds} rounds alternating seed / genopt fp32 / genopt bf16 at each batch size. Speed-ups are "
        "per-round ratios, median (min-max). GFLOP/s counts the seed step's "
        f"{STEP_FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image for every loop, against the measured "
        f"`torch.mm` 2048x2048 peak: fp32 {peak32:.0f}, bf16 {peak16:.0f} GFLOP/s.",
        "",
    ]
    lines += _common.table(
        [
            "batch",
            "seed img/s",
            "genopt fp32 img/s",
            "speed-up fp32",
            "fp32 GFLOP/s (of peak)",
            "genopt bf16 img/s",
            "speed-up bf16",
            "bf16 GFLOP/s (of bf16 peak)",
        ],
        rows,
    )

    # lever ladder at batch 64
    ladder = LADDER if not quick else [LADDER[i] for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    lever_speed: dict[str, list[float]] = {}
    for r in range(rounds):
        for name, lever in ladder:
            lever_speed.setdefault(name, []).append(n / lever_epoch(dataset, n, 64, device, lever))
        print(f"lever round {r + 1}/{rounds} done", flush=True)
    base = lever_speed[ladder[0][0]]
    lever_rows = []
    previous = None
    for name, _ in ladder:
        over_seed = [a / b for a, b in zip(lever_speed[name], base, strict=True)]
        step = (
            _common.median_range([a / b for a, b in zip(lever_speed[name], previous, strict=True)]) + "x"
            if previous is not None
            else ""
        )
        lever_rows.append(
            [
                name,
                f"{statistics.median(lever_speed[name]):,.0f}",
                _common.median_range(over_seed) + "x",
                step,
            ]
        )
        if "thread" not in name:
            previous = lever_speed[name]
    lines += [
        "",
        "### Levers, one at a time (batch 64)",
        "",
        "Each row adds one change to the row above; the thread rows change only the thread count of "
        "the fused-Adam row (the others run with the process's count), and bf16 builds on fused Adam. "
        "Same rounds, alternated.",
        "",
    ]
    lines += _common.table(["loop", "img/s", "over seed", "over previous row"], lever_rows)

    # fp32 against bf16 by validation FID
    seeds = [0, 1] if quick else [0, 1, 2]
    fid_n, fid_epochs, fid_samples = (4096, 2, 2000) if quick else (30_000, 3, 10_000)
    fid_rows = precision_fid(dataset, fid_n, fid_epochs, seeds, fid_samples, device)
    lines += [
        "",
        "### bf16 autocast and FID",
        "",
        f"cGAN (the seed's MLPs) trained at lr {FID_LR:g}, batch 64, {fid_epochs} epochs of {fid_n} "
        f"images, same seed in both precisions; validation FID of {fid_samples} samples (genopt's "
        "feature-net FID). Read a difference against the seed-to-seed spread at this budget.",
        "",
    ]
    lines += _common.table(
        ["seed", "FID fp32", "FID bf16", "bf16 - fp32", "img/s fp32", "img/s bf16"],
        [
            [
                r["seed"],
                f"{r['fp32']:.2f}",
                f"{r['bf16']:.2f}",
                f"{r['bf16'] - r['fp32']:+.2f}",
                f"{r['fp32_ips']:,.0f}",
                f"{r['bf16_ips']:,.0f}",
            ]
            for r in fid_rows
        ],
    )

    if args.png is not None:
        plot(args.png, batch_sizes, speed)
    b64 = ratios("genopt", 64)
    print(f"bf16 speed-up at batch 64: {_common.median_range(ratios('genopt-bf16', 64))}x")
    _common.finish(args, lines, f"train_speedup_b64={statistics.median(b64):.2f}")


def plot(path, batch_sizes, speed) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.27
    x = np.arange(len(batch_sizes))
    for i, (key, label) in enumerate(
        (("seed", "seed loop"), ("genopt", "genopt fp32"), ("genopt-bf16", "genopt bf16"))
    ):
        med = [statistics.median(speed[(key, bs)]) for bs in batch_sizes]
        lo = [med[j] - min(speed[(key, bs)]) for j, bs in enumerate(batch_sizes)]
        hi = [max(speed[(key, bs)]) - med[j] for j, bs in enumerate(batch_sizes)]
        ax.bar(x + (i - 1) * width, med, width, yerr=[lo, hi], label=label, capsize=3)
    ax.set_xticks(x, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (median, range)")
    ax.set_title("Training throughput, MNIST MLP GAN, CPU")
    ax.legend()
    _common.save_figure(fig, path)


if __name__ == "__main__":
    main()
