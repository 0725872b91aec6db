"""Specs: the shipped files are the documented defaults, and every mistake is named precisely."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from genopt.errors import GenoptError
from genopt.spec import DEFAULT_PARAMS, FIELDS, SEARCHABLE, Param, RunConfig, StudySpec, load_spec
from genopt.spec.fields import WIDTHS

OLD_STUDY = Path(__file__).parent / "data" / "old_cgan_study"


@pytest.mark.parametrize("model", ["gan", "cgan"])
def test_the_article_specs_are_the_built_in_defaults(model):
    spec = load_spec(f"studies/{model}-article.toml")
    assert spec == StudySpec(model=model)
    assert {p.name: (p.low, p.high, p.log, p.step) for p in spec.params} == {
        "lr": (1e-5, 1e-1, True, None),
        "batch_size": (16, 128, False, None),
        "noise_dim": (50, 200, False, None),
    }
    assert (spec.beta1, spec.beta2) == (0.5, 0.999)
    assert spec.fid_samples == 10_000


@pytest.mark.parametrize("model", ["gan", "cgan"])
def test_the_default_specs_are_the_small_dcgan_where_it_learns(model):
    spec, article = load_spec(f"studies/{model}.toml"), StudySpec(model=model)
    changed = {f.name for f in FIELDS if getattr(spec, f.name) != getattr(article, f.name)}
    # the GAN adds its latent code (docs/quality.md, "The unconditional GAN")
    extra = {"latent_codes"} if model == "gan" else set()
    assert changed == {"max_epochs", "kind", "generator_channels", "discriminator_channels"} | extra
    assert spec.latent_codes == (10 if model == "gan" else 0)
    assert (spec.kind, spec.generator_channels, spec.discriminator_channels) == ("dcgan", (96, 48), (48, 96))
    assert spec.max_epochs == 15
    assert {p.name: (p.low, p.high, p.log, p.step) for p in spec.params} == {
        "lr": (8e-4, 1.8e-3 if model == "gan" else 2.5e-3, True, None),
        "batch_size": (32, 64, False, 4),
        "noise_dim": (50, 200, False, 10),
    }


@pytest.mark.parametrize("name", ["gan", "cgan", "gan-article", "cgan-article"])
def test_the_shipped_files_list_the_levers(name):
    # the levers are listed in the shipped files, so their defaults are documented where they are set
    text = Path(f"studies/{name}.toml").read_text()
    for field in ("ema_decay", "conditioning", "spectral_norm", "objective", "select_epoch", "kind"):
        assert f"\n{field} = " in text, field
    spec = load_spec(f"studies/{name}.toml")
    assert spec.objective_name == ("intra_fid" if spec.model == "cgan" else "fid")


def test_a_spec_adds_to_and_replaces_the_default_search_space(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        "[search.params.beta1]\nlow = 0.0\nhigh = 0.9\n[search.params.batch_size]\nchoices = [32, 64]\n"
    )
    spec = load_spec(path)
    params = {p.name: p for p in spec.params}
    assert params["beta1"] == Param("beta1", low=0.0, high=0.9)
    assert params["batch_size"] == Param("batch_size", choices=(32, 64))
    assert params["lr"] == DEFAULT_PARAMS[0]


def test_run_config_takes_sampled_values_and_keeps_fixed_ones():
    spec = StudySpec(model="cgan", max_epochs=3, lr=1e-3)
    config = spec.run_config({"batch_size": 32, "noise_dim": 64}, seed=7)
    assert (config.model, config.lr, config.batch_size, config.noise_dim, config.epochs, config.seed) == (
        "cgan",
        1e-3,
        32,
        64,
        3,
        7,
    )


BAD_SPECS = {
    "not toml": ("model = ", "is not valid TOML"),
    "unknown top-level": ('modle = "gan"', "unknown field 'modle'"),
    "unknown in section": ("[training]\nepochs = 3", "unknown field 'epochs' [training]"),
    "wrong type": ('[training]\nmax_epochs = "ten"', "max_epochs must be int"),
    "bool is not int": ("[training]\nbatch_size = true", "batch_size must be int"),
    "negative budget": ("[training]\nmax_epochs = -1", "max_epochs must be at least 1"),
    "reversed range": (
        "[search.params.noise_dim]\nlow = 200\nhigh = 50",
        "low (200) must be below high (50)",
    ),
    "log of zero": ("[search.params.lr]\nlow = 0.0\nhigh = 0.1\nlog = true", "a log range needs low > 0"),
    "unsearchable": (
        "[search.params.depth]\nlow = 1\nhigh = 3",
        "search.params.depth: not a searchable field",
    ),
    "float batch": ("[search.params.batch_size]\nlow = 16.5\nhigh = 64", "low and high must be int"),
    "unknown param key": (
        "[search.params.lr]\nlow = 1e-4\nhigh = 1e-2\nstride = 2",
        "unknown field 'stride'",
    ),
    "step off the grid": (
        "[search.params.batch_size]\nlow = 16\nhigh = 100\nstep = 16",
        "high - low (84) must be a multiple of step (16)",
    ),
    "zero step": ("[search.params.noise_dim]\nlow = 50\nhigh = 200\nstep = 0", "step must be a positive int"),
    "float step of an int": (
        "[search.params.noise_dim]\nlow = 50\nhigh = 200\nstep = 2.5",
        "step must be a positive int",
    ),
    "step with log": (
        "[search.params.lr]\nlow = 1e-4\nhigh = 1e-2\nlog = true\nstep = 1e-4",
        "give either log or step, not both",
    ),
    "step with choices": (
        "[search.params.batch_size]\nchoices = [32, 64]\nstep = 8",
        "give either choices or low/high, not both",
    ),
    "unknown model": ('model = "vae"', "unknown model 'vae'"),
    "bad betas": ("[training]\nbetas = [0.5]", "betas must be two numbers"),
    "beta out of range": ("[training]\nbetas = [1.5, 0.999]", "beta1 must be in [0, 1)"),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_specs_name_the_file_and_the_problem(case, tmp_path):
    text, message = BAD_SPECS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GenoptError) as excinfo:
        load_spec(path)
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(GenoptError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_command_line_overrides_are_validated():
    assert StudySpec().override(max_epochs=3, seed=None).max_epochs == 3
    with pytest.raises(GenoptError, match="command line: fid_samples must be at least"):
        StudySpec().override(fid_samples=1)


def test_a_spec_survives_the_json_round_trip_a_study_stores_it_through(tmp_path):
    import json

    path = tmp_path / "s.toml"
    path.write_text(
        'model = "cgan"\n[search.params.beta1]\nchoices = [0.5, 0.9]\n[training]\nmax_epochs = 4\n'
        "[search.params.spectral_norm]\nchoices = [false, true]\n"
        '[evaluation]\nmin_label_accuracy = 0.8\nselect_epoch = "best"'
    )
    spec = load_spec(path)
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_stepped_ranges_are_searched_on_their_grid(tmp_path):
    import optuna

    from genopt.study.objective import suggest

    path = tmp_path / "s.toml"
    path.write_text(
        "[search.params.batch_size]\nlow = 16\nhigh = 128\nstep = 8\n"
        "[search.params.noise_dim]\nlow = 50\nhigh = 200\nstep = 10\n"
        "[search.params.beta1]\nlow = 0.0\nhigh = 0.9\nstep = 0.3\n"
    )
    spec = load_spec(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {name: set() for name in ("batch_size", "noise_dim", "beta1")}
    for _ in range(200):
        params = suggest(study.ask(), spec)
        for name in seen:
            seen[name].add(round(params[name], 9))
    assert seen["batch_size"] == set(range(16, 129, 8))  # ends included
    assert seen["noise_dim"] == set(range(50, 201, 10))
    assert seen["beta1"] == {0.0, 0.3, 0.6, 0.9}


def test_the_stored_form_of_a_spec_is_unchanged():
    """A study stores ``spec.to_dict()`` and compares it with the current spec on every resume."""
    assert list(StudySpec().to_dict()) == [
        "model", "dataset", "max_epochs", "lr", "batch_size", "noise_dim", "beta1", "beta2",
        "train_limit", "precision", "ema_decay", "augment", "augment_probability", "generator_widths",
        "discriminator_widths", "leaky_slope", "conditioning", "spectral_norm", "kind",
        "generator_channels", "discriminator_channels", "fid_samples", "objective", "min_label_accuracy",
        "select_epoch", "sampler", "multivariate", "startup_trials", "tpe_after", "pruner", "min_resource",
        "behind_factor", "seed", "keep_checkpoints", "image_size", "channels", "auto_patience",
        "auto_min_improvement", "auto_max_trials", "d_lr_ratio", "latent_codes", "loss", "params",
    ]  # fmt: skip
    with sqlite3.connect(OLD_STUDY / "old.db") as db:
        (stored,) = db.execute("SELECT value_json FROM study_user_attributes WHERE key = 'spec'").fetchone()
    old = StudySpec.from_dict(json.loads(stored))
    # stored before the levers: the article's behaviour, and the old file's own values
    assert (old.objective, old.select_epoch, old.ema_decay, old.precision, old.startup_trials) == (
        "fid", "last", 0.0, "fp32", 10,
    )  # fmt: skip
    assert (old.generator_widths, old.fid_samples, old.keep_checkpoints) == ((16,), 200, 2)


def _other_value(f):
    """A valid value of field ``f`` other than its default."""
    if f.choices:
        return next(c for c in f.choices if c != f.default)
    if f.type is bool:
        return not f.default
    if f.type is str:
        return "other"
    if f.type is WIDTHS:
        return (7,)
    if f.type is int:
        return 100 if f.default is None else f.default + 1
    if f.default is None:
        return 0.5
    return f.default * 1.5 if f.range is None or f.default * 1.5 in f.range else f.default / 2


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return json.dumps(list(value)) if isinstance(value, tuple | list) else repr(value)


def test_every_field_of_the_table_is_in_the_dataclasses_the_search_and_the_toml_layout(tmp_path):
    assert [f.name for f in dataclasses.fields(StudySpec)] == [f.name for f in FIELDS] + ["params"]
    run = {f.name for f in dataclasses.fields(RunConfig)}
    assert run == {f.name for f in FIELDS if f.run} | {"epochs", "seed"}
    assert {f.name: f.type for f in FIELDS if f.searchable} == SEARCHABLE and set(SEARCHABLE) <= run
    # each field is read from its own section, under its own key (or with its pair under a shared one)
    values = {f.name: _other_value(f) for f in FIELDS} | {"model": "cgan", "objective": "intra_fid"}
    sections: dict[str, dict[str, list]] = {}
    for f in FIELDS:
        sections.setdefault(f.section, {}).setdefault(f.toml or f.name, []).append(values[f.name])
    lines = [f"{key} = {_toml(v[0])}" for key, v in sections.pop("").items()]
    for section, keys in sections.items():
        lines += [f"[{section}]"] + [f"{k} = {_toml(v if len(v) > 1 else v[0])}" for k, v in keys.items()]
    path = tmp_path / "every.toml"
    path.write_text("\n".join(lines))
    spec = load_spec(path)
    assert {f.name: getattr(spec, f.name) for f in FIELDS} == values
    assert all(values[f.name] != f.default for f in FIELDS if f.name not in ("model", "objective"))


def test_the_spec_layer_imports_neither_torch_nor_optuna():
    import subprocess
    import sys

    code = "import sys, genopt.spec; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
