"""The optimised training step computes what a plain GAN step computes, so speed never changes results.

The reference is the textbook step: separate discriminator passes over real and fake images, BCE
with logits (plus the class cross-entropies for AC-GAN), and Adam's plain for-loop implementation,
for each discriminator conditioning. In fp32 losses, gradients and updated
weights agree to ``ATOL``: the joint pass only batches the same rows into one matrix product, and
fused Adam evaluates the same update formula, so the differences are float32 rounding (at most 3e-7 seen).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_config, tiny_spec

from genopt.data import to_model_range
from genopt.errors import GenoptError
from genopt.spec import StudySpec, spec_from_dict
from genopt.step import adam, train_step
from genopt.train import build_models, train

ATOL = 1e-6
TINY = tiny_spec(ema_decay=StudySpec().ema_decay)  # the shipped weight average


def reference_step(G, D, opt_G, opt_D, real, labels, z, loss="bce"):
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    fake = G(z, labels)
    opt_D.zero_grad()
    real_logits, real_classes = D.forward_with_classes(real, labels)
    fake_logits, fake_classes = D.forward_with_classes(fake.detach(), labels)
    if loss == "hinge":  # Lim & Ye 2017: D pushes real logits above 1 and fake ones under -1
        d_loss = torch.clamp(1 - real_logits, min=0).mean() + torch.clamp(1 + fake_logits, min=0).mean()
    else:
        d_loss = F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(
            fake_logits, zeros
        )
    if real_classes is not None:  # AC-GAN (Odena et al. 2017): class cross-entropy of real and fake
        d_loss = d_loss + F.cross_entropy(real_classes, labels) + F.cross_entropy(fake_classes, labels)
    d_loss.backward()
    d_grads = [p.grad.clone() for p in D.parameters()]
    opt_D.step()
    opt_G.zero_grad()
    logits, classes = D.forward_with_classes(fake, labels)
    g_loss = -logits.mean() if loss == "hinge" else F.binary_cross_entropy_with_logits(logits, ones)
    if classes is not None:
        g_loss = g_loss + F.cross_entropy(classes, labels)
    g_loss.backward()
    opt_G.step()
    return d_loss, g_loss, d_grads, [p.grad.clone() for p in G.parameters()]


def close(a, b) -> bool:
    return all(torch.allclose(x, y, rtol=0, atol=ATOL) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("model", "conditioning"),
    [("gan", "concat"), ("cgan", "concat"), ("cgan", "projection"), ("cgan", "acgan")],
)
def test_optimised_step_matches_the_plain_reference_step_in_fp32(model, conditioning, mnist):
    spec = dataclasses.replace(TINY, model=model, conditioning=conditioning)
    config = spec.run_config({"lr": 1e-2, "noise_dim": 8}, seed=0)
    torch.manual_seed(0)
    G, D = build_models(config, mnist)
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    opt_G, opt_D = adam(G, config), adam(D, config)
    betas = (config.beta1, config.beta2)
    ref_G = torch.optim.Adam(G_ref.parameters(), lr=config.lr, betas=betas, foreach=False, fused=False)
    ref_D = torch.optim.Adam(D_ref.parameters(), lr=config.lr, betas=betas, foreach=False, fused=False)

    for step in range(3):  # several steps, so Adam's moments and bias correction take part
        real = to_model_range(mnist.train.images[8 * step : 8 * step + 8])
        labels = mnist.train.labels[8 * step : 8 * step + 8] if model == "cgan" else None
        z = torch.randn(8, config.noise_dim)
        d_loss, g_loss = train_step(G, D, opt_G, opt_D, real, labels, z)
        d_grads, g_grads = [p.grad for p in D.parameters()], [p.grad for p in G.parameters()]
        ref_d, ref_g, ref_d_grads, ref_g_grads = reference_step(G_ref, D_ref, ref_G, ref_D, real, labels, z)

        assert torch.allclose(d_loss, ref_d, rtol=0, atol=ATOL), (step, d_loss, ref_d)
        assert torch.allclose(g_loss, ref_g, rtol=0, atol=ATOL), (step, g_loss, ref_g)
        assert close(d_grads, ref_d_grads) and close(g_grads, ref_g_grads), step
        assert close(D.parameters(), D_ref.parameters()) and close(G.parameters(), G_ref.parameters()), step
    # the comparison is not vacuous: the weights moved
    assert not close(G.parameters(), build_models(config, mnist)[0].parameters())


@pytest.mark.parametrize(("model", "conditioning"), [("gan", "concat"), ("cgan", "acgan")])
def test_the_hinge_loss_step_matches_the_plain_hinge_step(model, conditioning, mnist):
    """With SGD on both sides: at the start every hinge is active, so D's last bias has a gradient of
    exactly 0 whose rounding noise Adam would scale up to a full step of either sign."""
    spec = dataclasses.replace(TINY, model=model, conditioning=conditioning, loss="hinge")
    config = spec.run_config({"lr": 1e-2, "noise_dim": 8}, seed=0)
    torch.manual_seed(0)
    G, D = build_models(config, mnist)
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    sgd = [torch.optim.SGD(net.parameters(), lr=0.05) for net in (G, D, G_ref, D_ref)]
    for step in range(3):
        real = to_model_range(mnist.train.images[8 * step : 8 * step + 8])
        labels = mnist.train.labels[8 * step : 8 * step + 8] if model == "cgan" else None
        z = torch.randn(8, config.noise_dim)
        d_loss, g_loss = train_step(G, D, sgd[0], sgd[1], real, labels, z, loss=config.loss)
        ref_d, ref_g, _, _ = reference_step(G_ref, D_ref, sgd[2], sgd[3], real, labels, z, loss="hinge")
        assert torch.allclose(d_loss, ref_d, rtol=0, atol=ATOL), (step, d_loss, ref_d)
        assert torch.allclose(g_loss, ref_g, rtol=0, atol=ATOL), (step, g_loss, ref_g)
        assert close(D.parameters(), D_ref.parameters()) and close(G.parameters(), G_ref.parameters()), step


def test_bf16_training_runs_and_keeps_fp32_weights(mnist):
    config = tiny_config(TINY)
    fp32 = train(config, mnist)
    bf16 = train(dataclasses.replace(config, precision="bf16"), mnist)
    assert not bf16.diverged and all(p.dtype == torch.float32 for p in bf16.generator.parameters())
    # bf16 rounds the forward passes, so the runs differ, but only by rounding on one short epoch
    assert bf16.epochs[0].d_loss == pytest.approx(fp32.epochs[0].d_loss, rel=0.05)


def test_precision_is_validated_naming_the_field():
    assert spec_from_dict({"training": {"precision": "bf16"}}, where="s.toml").precision == "bf16"
    assert StudySpec().run_config({}, seed=0).precision == "auto"
    with pytest.raises(GenoptError, match=r"s\.toml: unknown precision 'fp16': choose one of fp32, bf16"):
        spec_from_dict({"training": {"precision": "fp16"}}, where="s.toml")
