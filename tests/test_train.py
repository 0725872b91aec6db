"""The trainer: deterministic on the CPU, stoppable after any epoch, and honest about divergence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import tiny_config as shared_config
from tiny import tiny_spec

from genopt.train import build_models, train

# ema_decay 0: these tests follow the trained generator itself (EMA has tests of its own).
TINY = tiny_spec(max_epochs=2, train_limit=256, batch_size=32)


def tiny_config(model="gan", **changes):
    return shared_config(dataclasses.replace(TINY, model=model), **({"seed": 1} | changes))


def weights(result):
    return [p.detach().cpu().clone() for p in result.generator.parameters()]


LEVERS = {"ema_decay": 0.9, "conditioning": "projection", "spectral_norm": True}


@pytest.mark.parametrize(("model", "levers"), [("gan", {}), ("cgan", {}), ("cgan", LEVERS)])
def test_same_seed_same_generator(model, levers, mnist):
    a, b = train(tiny_config(model, **levers), mnist), train(tiny_config(model, **levers), mnist)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))
    c = train(tiny_config(model, seed=2, **levers), mnist)
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c), strict=True))


def test_training_changes_the_generator_and_reports_each_epoch(mnist):
    seen = []
    result = train(tiny_config(), mnist, on_epoch=lambda g, stats: seen.append(stats.epoch))
    assert seen == [1, 2] and [e.epoch for e in result.epochs] == [1, 2]
    assert result.stop_reason is None and result.images_per_second > 0
    # no weight averaging: the generator returned is the one trained; the discriminator comes along
    assert result.raw_generator is result.generator and result.discriminator is not None
    untrained, _ = build_models(tiny_config(), mnist)
    assert any(not torch.equal(p, q) for p, q in zip(weights(result), untrained.parameters(), strict=True))


def test_callback_stops_training(mnist):
    result = train(
        tiny_config(epochs=5), mnist, on_epoch=lambda g, stats: "enough" if stats.epoch == 2 else None
    )
    assert len(result.epochs) == 2 and result.stop_reason == "enough" and not result.diverged


def test_non_finite_losses_end_the_run_with_the_reason(mnist):
    result = train(tiny_config(lr=1e30), mnist)
    assert result.diverged and "non-finite loss at epoch 1" in result.stop_reason
    assert len(result.epochs) == 1


def test_conditional_generator_draws_the_requested_classes_shape(mnist):
    generator = train(tiny_config("cgan", epochs=1), mnist).generator
    images = generator.sample(torch.arange(10))
    assert images.shape == (10, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
