"""The levers (conditioning, spectral norm, weight averaging, objective, epoch selection): spec fields
that parse, search and validate like any other, models that train with each, and stored specs and
run configs from before they existed that still load as the article's behaviour."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny import tiny_config as shared_config
from tiny import tiny_spec
from torch import nn

from genopt.data import to_model_range
from genopt.errors import GenoptError
from genopt.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from genopt.models.base import latent_code
from genopt.spec import (
    ARTICLE_BEHAVIOUR,
    Param,
    RunConfig,
    StudySpec,
    format_params,
    load_spec,
    parse_value,
    spec_from_dict,
)
from genopt.step import TrainStep, WeightAverage, adam, train_step
from genopt.train import build_models, train

NEW_FIELDS = ("ema_decay", "conditioning", "spectral_norm", "objective", "min_label_accuracy", "select_epoch")


def tiny_config(model="cgan", **changes):
    return shared_config(tiny_spec(model=model, **changes))


# --- spec ---------------------------------------------------------------------------------------


def test_new_fields_parse_from_toml(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'model = "cgan"\n'
        "[training]\nema_decay = 0.999\n"
        '[architecture]\nconditioning = "projection"\nspectral_norm = true\n'
        '[evaluation]\nobjective = "fid"\nmin_label_accuracy = 1\nselect_epoch = "last"\n'
        "[search.params.ema_decay]\nlow = 0.9\nhigh = 0.9999\n"
        '[search.params.conditioning]\nchoices = ["concat", "acgan"]\n'
        "[search.params.spectral_norm]\nchoices = [false, true]\n"
    )
    spec = load_spec(path)
    assert (spec.ema_decay, spec.conditioning, spec.spectral_norm) == (0.999, "projection", True)
    assert (spec.objective, spec.min_label_accuracy, spec.select_epoch) == ("fid", 1.0, "last")
    assert isinstance(spec.min_label_accuracy, float)
    params = {p.name: p for p in spec.params}
    assert params["ema_decay"] == Param("ema_decay", low=0.9, high=0.9999)
    assert params["conditioning"].choices == ("concat", "acgan")
    assert params["spectral_norm"].choices == (False, True)
    config = spec.run_config({"conditioning": "acgan", "spectral_norm": False}, seed=0)
    assert (config.ema_decay, config.conditioning, config.spectral_norm) == (0.999, "acgan", False)


def test_new_specs_get_new_defaults_and_objective_auto_resolves():
    spec = StudySpec()
    # the shipped defaults, chosen in docs/quality.md (its script: git show 90689b8:bench/levers.py)
    assert (spec.objective, spec.select_epoch, spec.ema_decay) == ("auto", "best", 0.999)
    assert (spec.conditioning, spec.spectral_norm, spec.min_label_accuracy) == ("concat", False, None)
    assert StudySpec(model="gan").objective_name == "fid"
    assert StudySpec(model="cgan").objective_name == "intra_fid"
    assert StudySpec(model="cgan", objective="fid").objective_name == "fid"
    assert spec_from_dict({}, where="s.toml") == StudySpec()


BAD_LEVERS = {
    "ema decay of one": ("[training]\nema_decay = 1.0", "ema_decay must be in [0, 1), got 1.0"),
    "negative ema decay": ("[training]\nema_decay = -0.1", "ema_decay must be in [0, 1)"),
    "ema decay text": ('[training]\nema_decay = "high"', "ema_decay must be float"),
    "unknown conditioning": (
        '[architecture]\nconditioning = "film"',
        "unknown conditioning 'film': choose one of concat, projection, acgan",
    ),
    "spectral norm as int": ("[architecture]\nspectral_norm = 1", "spectral_norm must be true or false"),
    "unknown objective": ('[evaluation]\nobjective = "is"', "unknown objective 'is'"),
    "intra fid of a gan": (
        '[evaluation]\nobjective = "intra_fid"',
        "objective 'intra_fid' needs model 'cgan'",
    ),
    "label floor of a gan": (
        "[evaluation]\nmin_label_accuracy = 0.9",
        "min_label_accuracy needs model 'cgan'",
    ),
    "label floor above one": (
        'model = "cgan"\n[evaluation]\nmin_label_accuracy = 1.5',
        "min_label_accuracy must be in [0, 1], got 1.5",
    ),
    "unknown select epoch": ('[evaluation]\nselect_epoch = "first"', "unknown select_epoch 'first'"),
    "conditioning as a range": (
        "[search.params.conditioning]\nlow = 0\nhigh = 2",
        "search.params.conditioning: a str field is searched over choices only",
    ),
    "unknown conditioning choice": (
        '[search.params.conditioning]\nchoices = ["concat", "film"]',
        "search.params.conditioning: unknown conditioning 'film'",
    ),
    "spectral norm choice not bool": (
        "[search.params.spectral_norm]\nchoices = [false, 1]",
        "search.params.spectral_norm: choices must be a non-empty list of bool values",
    ),
    "spectral norm as a range": (
        "[search.params.spectral_norm]\nlow = 0\nhigh = 1",
        "a bool field is searched over choices only",
    ),
    "ema range reaching one": (
        "[search.params.ema_decay]\nlow = 0.9\nhigh = 1.0",
        "search.params.ema_decay: the range must lie in [0, 1)",
    ),
    "ema choice above one": (
        "[search.params.ema_decay]\nchoices = [0.0, 1.5]",
        "search.params.ema_decay: ema_decay must be in [0, 1)",
    ),
    "bool as lr choice": (
        "[search.params.lr]\nchoices = [true]",
        "choices must be a non-empty list of float",
    ),
}


@pytest.mark.parametrize("case", BAD_LEVERS, ids=list(BAD_LEVERS))
def test_bad_lever_values_are_named_in_one_line(case, tmp_path):
    text, message = BAD_LEVERS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GenoptError) as excinfo:
        load_spec(path)
    assert str(path) in str(excinfo.value) and message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_parse_value_types_command_line_text():
    assert parse_value("lr", "2e-4") == 2e-4
    assert parse_value("batch_size", " 64 ") == 64 and isinstance(parse_value("batch_size", "64"), int)
    assert parse_value("spectral_norm", "true") is True
    assert parse_value("spectral_norm", "False") is False
    assert parse_value("conditioning", "projection") == "projection"
    assert parse_value("ema_decay", "0.999") == 0.999


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("batch_size", "64.5", "batch_size needs a int, got '64.5'"),
        ("lr", "fast", "lr needs a float, got 'fast'"),
        ("lr", "nan", "lr needs a float"),
        ("lr", "-1", "lr must be positive"),
        ("spectral_norm", "maybe", "spectral_norm needs true or false, got 'maybe'"),
        ("conditioning", "film", "unknown conditioning 'film': choose one of concat, projection, acgan"),
        ("ema_decay", "1.5", "ema_decay must be in [0, 1)"),
        ("depth", "3", "'depth' is not a searchable field"),
    ],
)
def test_parse_value_rejects_bad_text_in_one_line(name, text, message):
    with pytest.raises(GenoptError) as excinfo:
        parse_value(name, text)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_format_params():
    params = {"lr": 0.0012345, "batch_size": 64, "conditioning": "acgan", "spectral_norm": True}
    assert format_params(params) == "lr=0.00123, batch_size=64, conditioning=acgan, spectral_norm=True"
    assert format_params({}) == ""


def test_a_spec_stored_before_the_levers_loads_as_the_articles_behaviour():
    stored = json.loads(json.dumps(StudySpec(model="cgan").to_dict()))
    for name in NEW_FIELDS:
        del stored[name]
    spec = StudySpec.from_dict(stored)
    assert {name: getattr(spec, name) for name in NEW_FIELDS} == {n: ARTICLE_BEHAVIOUR[n] for n in NEW_FIELDS}
    assert spec.objective_name == "fid"
    assert dataclasses.replace(spec, **{n: getattr(StudySpec(), n) for n in NEW_FIELDS}) == StudySpec(
        model="cgan"
    )
    # a spec stored with the fields keeps them, defaults included
    fresh = StudySpec(model="cgan", select_epoch="best", conditioning="acgan", spectral_norm=True)
    assert StudySpec.from_dict(json.loads(json.dumps(fresh.to_dict()))) == fresh


def test_a_run_config_stored_before_the_levers_still_builds():
    config = StudySpec().run_config({}, seed=0)
    stored = json.loads(json.dumps(dataclasses.asdict(config)))
    for name in ("ema_decay", "conditioning", "spectral_norm", "d_lr_ratio"):
        del stored[name]
    old = RunConfig(**stored)
    assert (old.ema_decay, old.conditioning, old.spectral_norm, old.d_lr_ratio) == (0.0, "concat", False, 1.0)


# --- models and training ------------------------------------------------------------------------


def test_the_discriminator_learns_at_d_lr_ratio_times_the_generators_rate(mnist):
    config = tiny_config(model="gan", d_lr_ratio=4.0)
    G, D = build_models(config, mnist)
    images, labels = mnist.train.images[:64], mnist.train.labels[:64]
    steps = TrainStep(config, G, D, images, labels, "fp32")
    assert steps.opt_G.param_groups[0]["lr"] == config.lr
    assert steps.opt_D.param_groups[0]["lr"] == pytest.approx(4 * config.lr)
    with pytest.raises(GenoptError, match="d_lr_ratio"):
        spec_from_dict({"training": {"d_lr_ratio": 0}}, where="s.toml")


@pytest.mark.parametrize("conditioning", ["concat", "projection", "acgan"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_each_conditioning_trains_a_step_with_finite_losses(conditioning, spectral_norm, mnist):
    config = tiny_config(conditioning=conditioning, spectral_norm=spectral_norm)
    torch.manual_seed(0)
    G, D = build_models(config, mnist)
    assert D.conditioning == conditioning
    before = [{k: v.detach().clone() for k, v in m.named_parameters()} for m in (G, D)]
    real = to_model_range(mnist.train.images[:8])
    labels = mnist.train.labels[:8]
    d_loss, g_loss = train_step(G, D, adam(G, config), adam(D, config), real, labels, torch.randn(8, 8))
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    for model, state in zip((G, D), before, strict=True):
        after = dict(model.named_parameters())
        assert all(not torch.equal(v, after[k]) for k, v in state.items() if "weight" in k)
    logits, classes = D.forward_with_classes(real, labels)
    assert logits.shape == (8,) and D(real, labels).shape == (8,)
    assert (classes is not None) == (conditioning == "acgan")
    if classes is not None:
        assert classes.shape == (8, 10)


@pytest.mark.parametrize("conditioning", ["concat", "projection", "acgan"])
def test_each_conditioning_trains_an_epoch(conditioning, mnist):
    result = train(tiny_config(conditioning=conditioning, spectral_norm=True), mnist)
    assert not result.diverged and len(result.epochs) == 1
    assert result.discriminator is not None and result.discriminator.conditioning == conditioning


def test_an_unconditional_model_ignores_conditioning(mnist):
    plain = build_models(tiny_config("gan"), mnist)[1]
    projected = build_models(tiny_config("gan", conditioning="projection"), mnist)[1]
    assert plain.conditioning == projected.conditioning == "none"
    assert plain.state_dict().keys() == projected.state_dict().keys()


def test_spectral_norm_bounds_every_linear_layer_of_the_discriminator():
    torch.manual_seed(0)
    config = DiscriminatorConfig((16,), (1, 28, 28), 10, conditioning="acgan", spectral_norm=True)
    D = Discriminator(config)
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(50):  # one power iteration per training-mode pass
        D(images, labels)
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3  # body, real/fake head, class head
    for layer in linears:
        assert torch.linalg.matrix_norm(layer.weight.detach(), ord=2) == pytest.approx(1.0, abs=0.01)
    # not vacuous: the body's unnormalised weight is far from norm one
    raw = linears[0].parametrizations.weight.original.detach()
    assert torch.linalg.matrix_norm(raw, ord=2) < 0.9
    plain = Discriminator(dataclasses.replace(config, spectral_norm=False))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_discriminator_config_from_an_older_dict_keeps_the_articles_behaviour():
    config = DiscriminatorConfig((16,), (1, 28, 28), 10, conditioning="projection", spectral_norm=True)
    assert DiscriminatorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = {"widths": [16], "image_shape": [1, 28, 28], "num_classes": 10, "leaky_slope": 0.2}
    assert DiscriminatorConfig.from_dict(old) == DiscriminatorConfig((16,), (1, 28, 28), 10)


def test_weight_average_follows_the_trained_weights():
    G = Generator(GeneratorConfig(4, (8,), (1, 2, 2)))
    average = WeightAverage(G, decay=0.99)
    start = [p.detach().clone() for p in G.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    average.update()  # warm-up: the first update decays by min(0.99, 1/10)
    for a, s, p in zip(average.model.parameters(), start, G.parameters(), strict=True):
        assert torch.allclose(a, 0.1 * s + 0.9 * p) and not a.requires_grad


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_ema_generator_is_scored_and_returned_and_training_is_unchanged(mnist):
    seen = []
    averaged = train(tiny_config(ema_decay=0.9), mnist, on_epoch=lambda g, stats: seen.append(g))
    plain = train(tiny_config(), mnist)
    assert seen == [averaged.generator] and averaged.generator is not averaged.raw_generator
    assert not all(
        torch.equal(a, b)
        for a, b in zip(weights(averaged.generator), weights(averaged.raw_generator), strict=True)
    )
    # averaging only reads the trained weights: the raw generator is the one trained without it
    assert all(
        torch.equal(a, b)
        for a, b in zip(weights(averaged.raw_generator), weights(plain.generator), strict=True)
    )
    assert plain.generator is plain.raw_generator and not averaged.generator.training


def test_latent_codes_switch_the_generator_and_are_learned_by_both_networks(mnist):
    """A GAN's latent code is the argmax of its noise's first coordinates: uniform over the codes,
    read by G (flipping only the code changes the image) and told apart by D's code head."""
    config = tiny_config(model="gan", latent_codes=4, noise_dim=8)
    torch.manual_seed(0)
    G, D = build_models(config, mnist)
    assert (G.config.codes, D.config.codes, D.conditioning) == (4, 4, "none")
    z = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(latent_code(z, 4), minlength=4)
    assert counts.min() > 900 and counts.max() < 1100
    a = torch.zeros(1, 8)
    a[0, 0] = 1.0
    b = a.clone()
    b[0, :4] = torch.tensor([1.0, 1.1, 0.0, 0.0])  # code 1 instead of 0, the rest of the noise alike
    G.eval()
    assert not torch.allclose(G(a), G(b))
    real = to_model_range(mnist.train.images[:8])
    logits, codes = D.forward_with_classes(real)
    assert logits.shape == (8,) and codes.shape == (8, 4)
    before = D.classifier.weight.detach().clone()
    d_loss, g_loss = train_step(G, D, adam(G, config), adam(D, config), real, None, torch.randn(8, 8))
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert not torch.equal(before, D.classifier.weight)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(G.config.to_dict()))) == G.config
    with pytest.raises(GenoptError, match="noise_dim"):
        build_models(tiny_config(model="gan", latent_codes=16, noise_dim=8), mnist)
