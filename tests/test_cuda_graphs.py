"""CUDA graphs in ``train``: used only where they can be, and a replayed step is an eager step.

The CPU tests check when ``train`` graphs a run and that the weight average's device-side update
count gives the same average as its Python one. The CUDA tests compare a replayed step with an
eager one on the same weights, batches and noise seeds, and a short graphed ``train`` with an eager one.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_config as shared_config
from tiny import tiny_spec

from genopt.models import Generator, GeneratorConfig
from genopt.step import GRAPH_WARMUP_STEPS, TrainStep, WeightAverage, graphs_unsupported
from genopt.train import build_models, train

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
TINY = tiny_spec(
    model="cgan",
    generator_widths=(32,),
    discriminator_widths=(32,),
    max_epochs=2,
    train_limit=256,
    batch_size=32,
    ema_decay=0.9,
    precision="fp32",
)


def tiny_config(**changes):
    return shared_config(TINY, seed=1, **changes)


def test_graphs_are_ruled_out_with_the_reason():
    config = tiny_config()
    assert graphs_unsupported(config, CUDA, 256) is None
    assert "CUDA device" in graphs_unsupported(config, CPU, 256)
    assert "'diffaugment' draws from a CPU random generator" in graphs_unsupported(
        tiny_config(augment="diffaugment"), CUDA, 256
    )
    assert "no full batch" in graphs_unsupported(config, CUDA, 31)


def test_graphs_on_the_cpu_are_refused_and_off_by_default(mnist):
    with pytest.raises(ValueError, match=r"^graphs=True, but CUDA graphs need a CUDA device"):
        train(tiny_config(), mnist, device=CPU, graphs=True)
    auto, eager = (
        train(tiny_config(), mnist, device=CPU),
        train(tiny_config(), mnist, device=CPU, graphs=False),
    )
    assert not auto.graphed and not eager.graphed
    assert all(
        torch.equal(a, b)
        for a, b in zip(auto.generator.parameters(), eager.generator.parameters(), strict=True)
    )


def test_the_device_side_update_count_averages_bit_for_bit_as_the_python_one():
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(4, (8,), (1, 2, 2)))
    python, device = WeightAverage(G, decay=0.9), WeightAverage(G, decay=0.9, capturable=True)
    for _ in range(100):  # past the warm-up: (1 + t) / (10 + t) reaches 0.9 at t = 80
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn_like(p))
        python.update()
        device.update()
        assert all(
            torch.equal(a, b)
            for a, b in zip(python.model.parameters(), device.model.parameters(), strict=True)
        )
    assert device.updates.dtype == torch.float64 and device.updates.item() == python.updates == 100


STEP_CASES = {
    "mlp": {},
    "mlp-projection-spectral": {"conditioning": "projection", "spectral_norm": True},
    "dcgan-acgan": {
        "kind": "dcgan",
        "generator_channels": (16, 8),
        "discriminator_channels": (8, 16),
        "conditioning": "acgan",
    },
}


def state(steps: TrainStep) -> dict[str, torch.Tensor]:
    """A copy of every weight and buffer of G, D and the weight average, by name."""
    models = {"G": steps.G, "D": steps.D, "average": steps.average.model}
    return {f"{m} {k}": v.clone() for m, model in models.items() for k, v in model.state_dict().items()}


@cuda_only
@pytest.mark.parametrize("changes", STEP_CASES.values(), ids=STEP_CASES.keys())
def test_a_replayed_step_is_an_eager_step(changes, mnist, monkeypatch):
    # deterministic convolutions, so that the two runs differ by the graph alone
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    config = tiny_config(batch_size=16, **changes)
    images, labels = mnist.train.images[:128].to(CUDA), mnist.train.labels[:128].to(CUDA)
    runs = {}
    for graphed in (False, True):
        torch.manual_seed(0)
        G, D = (m.to(CUDA) for m in build_models(config, mnist))
        runs[graphed] = TrainStep(config, G, D, images, labels, "fp32", graphed=graphed)
    eager, graphed = runs[False], runs[True]
    start = state(eager)
    # the warm-up steps, the capture, two replays, then a partial batch, which runs eagerly
    batches = [torch.arange(16 * i, 16 * i + 16, device=CUDA) for i in range(GRAPH_WARMUP_STEPS + 3)]
    batches.append(torch.arange(120, 128, device=CUDA))
    for i, idx in enumerate(batches):
        for steps in (eager, graphed):
            steps.reset_totals()
            torch.cuda.manual_seed(1000 + i)  # the same noise in both: a replay draws where eager does
            steps.run(idx)
        torch.cuda.synchronize()
        for total in ("d_total", "g_total"):
            torch.testing.assert_close(
                getattr(graphed, total), getattr(eager, total), rtol=1e-5, atol=1e-6, msg=f"step {i} {total}"
            )
        torch.testing.assert_close(
            state(graphed), state(eager), rtol=1e-5, atol=1e-6, msg=lambda m, i=i: f"step {i}: {m}"
        )
    assert graphed.graph_state.warmed == GRAPH_WARMUP_STEPS and graphed.graph_state.graph is not None
    # the comparison is not vacuous: G, D and the average moved
    moved = {k.split()[0] for k, v in state(eager).items() if not torch.equal(v, start[k])}
    assert {"G", "D", "average"} <= moved


@cuda_only
def test_a_short_graphed_training_learns_as_an_eager_one(mnist):
    # 1,000 images: 15 full batches of 64 an epoch, replayed after the warm-up, and a partial one
    config = tiny_config(
        generator_widths=(64,), discriminator_widths=(64,), batch_size=64, train_limit=1000, epochs=3
    )
    graphed, eager = train(config, mnist, device=CUDA), train(config, mnist, device=CUDA, graphs=False)
    assert graphed.graphed and not eager.graphed and not graphed.diverged
    for g, e in zip(graphed.epochs, eager.epochs, strict=True):
        assert all(map(math.isfinite, (g.d_loss, g.g_loss)))
        # the same initial weights, batches and noise offsets, but kernels replayed from a graph
        # may round differently, and training amplifies that: the same learning, not the same bits
        assert g.d_loss == pytest.approx(e.d_loss, rel=0.2) and g.g_loss == pytest.approx(e.g_loss, rel=0.2)
    torch.manual_seed(config.seed)
    untrained, _ = build_models(config, mnist)  # train's initial generator
    assert not any(
        torch.equal(a.cpu(), b)
        for a, b in zip(graphed.raw_generator.parameters(), untrained.parameters(), strict=True)
    )
    assert not torch.equal(next(graphed.generator.parameters()), next(graphed.raw_generator.parameters()))
