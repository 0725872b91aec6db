"""CUDA graphs: genopt's training step launched op by op against the same step replayed as one graph.

At batch 64 a step of these small networks is a few hundred small kernels, and the GPU waits on
Python and the launches between them (docs/benchmarks_gpu.md: 3.8 ms a step on an H100). A CUDA
graph records the whole step once (genopt's ``train_step``: the discriminator's and the generator's
updates with fused Adam, then the weight average's update) and replays it with one launch. The
batch indices are copied into a fixed buffer before each replay and the noise is drawn inside the
graph, so a replayed step is a real training step. Adam runs with ``capturable=True`` in both
loops, as a graph requires. Runs only where CUDA is available; the median of 3 alternated rounds.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import _common
import torch

from genopt.data import load_dataset, to_model_range
from genopt.spec import StudySpec
from genopt.train import WeightAverage, build_models, train_step

STEPS = 400
SETTINGS = (("mlp", 64), ("mlp", 256), ("dcgan", 64))


class Loop:
    """One training setup on the GPU whose step runs eagerly or from a captured graph."""

    def __init__(self, dataset, kind: str, batch: int, precision: str, device: torch.device):
        spec = dataclasses.replace(StudySpec(model="cgan"), kind=kind, batch_size=batch, precision=precision)
        self.config = spec.run_config({}, seed=0)
        torch.manual_seed(0)
        self.G, self.D = (m.to(device) for m in build_models(self.config, dataset))
        self.opts = [
            torch.optim.Adam(
                m.parameters(),
                lr=self.config.lr,
                betas=(self.config.beta1, self.config.beta2),
                fused=True,
                capturable=True,
            )
            for m in (self.G, self.D)
        ]
        self.average = WeightAverage(self.G, 0.999)
        self.average.updates = 10**6  # past the warm-up: a constant decay, which a graph can hold
        self.images = dataset.train.images.to(device)
        self.labels = dataset.train.labels.to(device)
        self.index = torch.zeros(batch, dtype=torch.long, device=device)
        self.batch, self.device, self.precision = batch, device, precision
        self.graph: torch.cuda.CUDAGraph | None = None

    def step(self) -> None:
        real = to_model_range(self.images[self.index])
        z = torch.randn(self.batch, self.config.noise_dim, device=self.device)
        opt_G, opt_D = self.opts
        train_step(self.G, self.D, opt_G, opt_D, real, self.labels[self.index], z, self.precision)
        self.average.update()

    def capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up steps on a side stream, as torch.cuda.graph asks
            for _ in range(3):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step()

    def run(self, steps: int, graphed: bool) -> float:
        """Seconds per step over ``steps`` steps of random batches."""
        order = torch.randint(0, len(self.images), (steps, self.batch), device=self.device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(steps):
            self.index.copy_(order[i])
            if graphed:
                self.graph.replay()
            else:
                self.step()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--kind", choices=("mlp", "dcgan"), nargs="+", default=["mlp", "dcgan"], help="architectures"
    )
    args = p.parse_args()
    _common.setup(args)
    if not torch.cuda.is_available():
        print("no GPU on this machine: nothing measured")
        return
    device = torch.device("cuda")
    dataset = load_dataset("mnist")
    steps, rounds = (100, 1) if args.quick else (STEPS, 3)
    rows, speedups = [], {}
    for kind, batch in [s for s in SETTINGS if s[0] in args.kind]:
        for precision in ("fp32", "bf16"):
            eager_loop = Loop(dataset, kind, batch, precision, device)
            graph_loop = Loop(dataset, kind, batch, precision, device)
            eager_loop.run(10, graphed=False)
            try:
                graph_loop.capture()
            except Exception as error:  # a step this torch cannot capture: say so, measure the rest
                rows.append([kind, batch, precision, "", f"capture failed: {str(error).splitlines()[0]}", ""])
                continue
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                times[False].append(eager_loop.run(steps, graphed=False))
                times[True].append(graph_loop.run(steps, graphed=True))
            eager, graphed = (statistics.median(times[g]) for g in (False, True))
            finite = all(torch.isfinite(p).all() for p in graph_loop.G.parameters())
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
        f"genopt's cGAN step (D and G updates, fused capturable Adam, EMA update) on random batches of "
        f"MNIST; {steps} steps a round, median of {rounds} alternated round(s). Milliseconds per step:",
        "",
        *_common.table(["architecture", "batch", "precision", "eager", "CUDA graph", "speedup"], rows),
    ]
    key = ("mlp", 64, "fp32")
    headline = (
        f"cuda_graph_step_speedup_b64={speedups[key]:.2f}"
        if key in speedups
        else "cuda_graph_step_speedup_b64=nan"
    )
    _common.finish(args, lines, headline)


if __name__ == "__main__":
    main()
