"""CUDA graphs: genopt's training step launched op by op against the same step replayed as one graph.

At batch 64 a step of these small networks is a few hundred small kernels, and the GPU waits on
Python and the launches between them (docs/benchmarks_gpu.md: 3.8 ms a step on an H100). A CUDA
graph records the whole step once and replays it with one launch. Both loops run ``train``'s own
step, ``genopt.step.TrainStep`` (the discriminator's and the generator's updates with fused Adam,
the weight average's update, the noise draw, the batch gather): eagerly as ``train(graphs=False)``
runs it, and graphed as ``train`` runs it on a GPU (Adam ``capturable=True``, the batch indices
copied into a fixed buffer before each replay, the noise drawn inside the graph, so a replayed step
is a real training step). Random batches; the median of 3 alternated rounds.

``--train`` compares whole ``train`` runs instead: a few epochs of the MNIST cGAN at batch 64,
``graphs=False`` against ``graphs=True``, in images per second over the epochs after the first
(which holds the graph's warm-up and capture). Runs only where CUDA is available.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import _common
import torch

from genopt.data import Dataset, load_dataset
from genopt.spec import StudySpec
from genopt.step import TrainStep
from genopt.train import TrainResult, build_models, train

STEPS = 400
SETTINGS = (("mlp", 64), ("mlp", 256), ("dcgan", 64))
# --train: architecture and precision at batch 64, on the first TRAIN_IMAGES training images
# (10,000: 156 full batches an epoch and a partial one, which runs eagerly in both)
TRAIN_SETTINGS = (("mlp", "fp32"), ("mlp", "bf16"), ("dcgan", "fp32"))
TRAIN_IMAGES = 10_000
TRAIN_EPOCHS = 4


class Loop:
    """One training setup on the GPU whose step runs eagerly or from a captured graph."""

    def __init__(
        self, dataset: Dataset, kind: str, batch: int, precision: str, device: torch.device, graphed: bool
    ):
        spec = dataclasses.replace(StudySpec(model="cgan"), kind=kind, batch_size=batch, precision=precision)
        self.config = spec.run_config({}, seed=0)
        torch.manual_seed(0)
        G, D = (m.to(device) for m in build_models(self.config, dataset))
        images, labels = dataset.train.images.to(device), dataset.train.labels.to(device)
        self.steps = TrainStep(self.config, G, D, images, labels, precision, graphed=graphed)
        self.batch, self.device = batch, device

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps of random batches."""
        order = torch.randint(0, len(self.steps.images), (steps, self.batch), device=self.device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(steps):
            self.steps.run(order[i])
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps


def step_speedups(args: argparse.Namespace, dataset: Dataset, device: torch.device) -> None:
    steps, rounds = (100, 1) if args.quick else (STEPS, 3)
    rows, speedups = [], {}
    for kind, batch in [s for s in SETTINGS if s[0] in args.kind]:
        for precision in ("fp32", "bf16"):
            eager_loop = Loop(dataset, kind, batch, precision, device, graphed=False)
            graph_loop = Loop(dataset, kind, batch, precision, device, graphed=True)
            eager_loop.run(10)
            try:
                graph_loop.run(10)  # the warm-up steps, the capture and a few replays
            except Exception as error:  # a step this torch cannot capture: say so, measure the rest
                rows.append([kind, batch, precision, "", f"capture failed: {str(error).splitlines()[0]}", ""])
                continue
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                times[False].append(eager_loop.run(steps))
                times[True].append(graph_loop.run(steps))
            eager, graphed = (statistics.median(times[g]) for g in (False, True))
            finite = all(torch.isfinite(p).all() for p in graph_loop.steps.G.parameters())
            speedups[(kind, batch, precision)] = eager / graphed
            rows.append(
                [
                    kind,
                    batch,
                    precision,
                    f"{eager * 1e3:.2f} ({batch / eager:,.0f} img/s)",
                    f"{graphed * 1e3:.2f} ({batch / graphed:,.0f} img/s)"
                    + ("" if finite else ", weights not finite"),
                    f"{eager / graphed:.2f}x",
                ]
            )
            print(rows[-1], flush=True)
    lines = _common.header("CUDA graphs: the training step op by op against one replayed graph")
    lines += [
        f"genopt's cGAN step as `train` runs it (`TrainStep`: D and G updates with fused Adam, EMA "
        f"update, noise draw, batch gather), eager against graphed (Adam capturable), on random "
        f"batches of MNIST; {steps} steps a round, median of {rounds} alternated round(s). "
        "Milliseconds per step:",
        "",
        *_common.table(["architecture", "batch", "precision", "eager", "CUDA graph", "speedup"], rows),
    ]
    key = ("mlp", 64, "fp32")
    headline = f"cuda_graph_step_speedup_b64={speedups.get(key, float('nan')):.2f}"
    _common.finish(args, lines, headline)


def images_per_second(result: TrainResult) -> float:
    """Over the epochs after the first, which holds CUDA's start-up and a graph's warm-up and capture."""
    later = result.epochs[1:]
    return sum(e.images_per_second * e.seconds for e in later) / sum(e.seconds for e in later)


def train_speedups(args: argparse.Namespace, dataset: Dataset, device: torch.device) -> None:
    epochs = 2 if args.quick else TRAIN_EPOCHS
    settings = [s for s in TRAIN_SETTINGS if s[0] in args.kind]
    if args.quick:
        settings = settings[:1]
    rows, speedups = [], {}
    for kind, precision in settings:
        spec = dataclasses.replace(
            StudySpec(model="cgan"),
            kind=kind,
            batch_size=64,
            precision=precision,
            train_limit=TRAIN_IMAGES,
            max_epochs=epochs,
        )
        config = spec.run_config({}, seed=0)
        eager = train(config, dataset, device=device, graphs=False)
        graphed = train(config, dataset, device=device, graphs=True)
        assert graphed.graphed and not eager.graphed
        speed = {run: images_per_second(result) for run, result in (("eager", eager), ("graphed", graphed))}
        speedups[(kind, precision)] = speed["graphed"] / speed["eager"]
        rows.append(
            [
                kind,
                precision,
                f"{speed['eager']:,.0f}",
                f"{speed['graphed']:,.0f}",
                f"{speedups[(kind, precision)]:.2f}x",
                f"{eager.epochs[-1].d_loss:.3f} / {eager.epochs[-1].g_loss:.3f}",
                f"{graphed.epochs[-1].d_loss:.3f} / {graphed.epochs[-1].g_loss:.3f}",
            ]
        )
        print(rows[-1], flush=True)
    lines = _common.header("CUDA graphs in train: whole runs eager against graphed")
    lines += [
        f"`train` on the first {TRAIN_IMAGES:,} MNIST training images, cGAN at batch 64, {epochs} epochs, "
        "`graphs=False` then `graphs=True`; images per second over the epochs after the first (the "
        "first holds the graph's warm-up and capture), and each run's last-epoch losses (D / G), "
        "which should be alike:",
        "",
        *_common.table(
            [
                "architecture",
                "precision",
                "eager img/s",
                "graphed img/s",
                "speedup",
                "eager losses",
                "graphed losses",
            ],
            rows,
        ),
    ]
    headlines = [
        f"train_graphs_speedup_b64{suffix}={speedups.get(key, float('nan')):.2f}"
        for key, suffix in ((("mlp", "fp32"), ""), (("mlp", "bf16"), "_bf16"), (("dcgan", "fp32"), "_dcgan"))
    ]
    _common.finish(args, lines, *headlines)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--kind", choices=("mlp", "dcgan"), nargs="+", default=["mlp", "dcgan"], help="architectures"
    )
    p.add_argument("--train", action="store_true", help="whole train() runs instead of single steps")
    args = p.parse_args()
    _common.setup(args)
    if not torch.cuda.is_available():
        print("no GPU on this machine: nothing measured")
        return
    dataset = load_dataset("mnist")
    (train_speedups if args.train else step_speedups)(args, dataset, torch.device("cuda"))


if __name__ == "__main__":
    main()
