"""The article's other strategies, done right: warm starts, augmentation that suits GANs, a DCGAN.

Budgets are tiny (a few hundred training images, one epoch, 100-image FIDs): these tests check
that each strategy works and is wired where it belongs, not how much it helps (docs/strategies.md,
measured by the retired script `git show d34e495:bench/strategies.py`).
"""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from cli_runner import genopt, run_main, tiny_budget
from mnist_subsets import write_class_subset
from tiny import tiny_spec

from genopt.augment import augmentations, diffaugment, flip_rotate
from genopt.checkpoints import save_trial_checkpoint
from genopt.ensemble.build import EnsembleBuild, Member
from genopt.ensemble.export import save_ensemble
from genopt.ensemble.generator import EnsembleGenerator
from genopt.errors import GenoptError
from genopt.spec import StudySpec, spec_from_dict
from genopt.step import adam, train_step
from genopt.study.artifacts.stores import artifact_store
from genopt.study.init_from import read_init
from genopt.train import build_models, train
from genopt.warmstart import WarmStart, describe, warm_start

OLD_CHECKPOINT = (
    Path(__file__).parent / "data" / "old_cgan_study" / "artifacts" / "1ceafdd3-0c5b-4cde-a15b-34137aa0e97f"
)
TINY = tiny_spec(
    model="cgan", generator_widths=(32,), discriminator_widths=(32,), noise_dim=16, batch_size=32,
    train_limit=300,
)  # fmt: skip
DCGAN = dataclasses.replace(TINY, kind="dcgan", generator_channels=(8, 4), discriminator_channels=(4, 8))
BUDGET = tiny_budget(train_limit=300, fid_samples=100)


# -- augmentation -------------------------------------------------------------------------------


def test_augmentations_are_the_identity_at_probability_zero():
    images = torch.rand(16, 1, 28, 28) * 2 - 1
    for augment in (diffaugment, flip_rotate):
        assert torch.equal(augment(images, p=0.0, generator=torch.Generator().manual_seed(0)), images)


def test_diffaugment_moves_and_cuts_pixels_the_same_way_whatever_the_images():
    # The same draws transform any batch alike (pixels moved and zeroed, never mixed), so real
    # and generated images meet one family of transformations; and the generator's gradient passes.
    ones = torch.ones(64, 1, 28, 28, requires_grad=True)
    out = diffaugment(ones, p=1.0, generator=torch.Generator().manual_seed(3))
    twice = diffaugment(2 * ones.detach(), p=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(twice, 2 * out.detach())
    zeroed = (out == 0).flatten(1).sum(1)
    # every image loses pixels, at most a 14x14 cut plus 4 shifted-in rows and columns
    assert (zeroed > 0).all() and (zeroed <= 14 * 14 + 4 * 28 * 2).all()
    out.sum().backward()
    assert ones.grad.abs().sum() > 0


def test_diffaugment_reaches_real_and_fake_in_both_steps_and_article_only_real(mnist):
    real_aug, fake_aug = augmentations("diffaugment", p=1.0, generator=torch.Generator().manual_seed(0))
    assert real_aug is fake_aug
    article_real, article_fake = augmentations("article", p=1.0, generator=torch.Generator())
    assert article_real is not None and article_fake is None

    seen: list[tuple[int, bool]] = []

    def spy(images):
        seen.append((len(images), images.requires_grad))
        return real_aug(images)

    config = TINY.run_config({}, seed=0)
    G, D = build_models(config, mnist)
    real = mnist.train.images[:8].float() / 127.5 - 1
    labels = mnist.train.labels[:8]
    train_step(
        G, D, adam(G, config), adam(D, config), real, labels, torch.randn(8, 16),
        augment_real=spy, augment_fake=spy,
    )  # fmt: skip
    # D's step: the real batch, then the detached fakes; G's step: the fakes with their graph
    assert seen == [(8, False), (8, False), (8, True)]


def test_same_seed_same_augmented_run(mnist):
    spec = dataclasses.replace(TINY, augment="diffaugment", train_limit=96)
    first, second = (train(spec.run_config({}, seed=4), mnist, device="cpu") for _ in range(2))
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.generator.parameters(), second.generator.parameters(), strict=True)
    )


def test_spec_fields_are_validated_in_one_line():
    with pytest.raises(GenoptError, match="unknown augment 'flip'"):
        spec_from_dict({"training": {"augment": "flip"}}, where="x.toml")
    with pytest.raises(GenoptError, match="augment_probability must be in"):
        spec_from_dict({"training": {"augment_probability": 1.5}}, where="x.toml")
    with pytest.raises(GenoptError, match="unknown kind 'resnet'"):
        spec_from_dict({"search": {"params": {"kind": {"choices": ["mlp", "resnet"]}}}}, where="x.toml")
    with pytest.raises(GenoptError, match="generator_channels must be a non-empty list"):
        spec_from_dict({"architecture": {"generator_channels": []}}, where="x.toml")
    # a spec stored before these fields existed keeps meaning the MLPs without augmentation
    stored = StudySpec().to_dict()
    for name in ("augment", "kind", "augment_probability", "generator_channels", "discriminator_channels"):
        stored.pop(name)
    old = StudySpec.from_dict(json.loads(json.dumps(stored)))
    assert (old.augment, old.kind) == ("none", "mlp")


# -- architecture -------------------------------------------------------------------------------


def test_dcgan_refuses_an_image_size_it_cannot_build_in_one_line(mnist):
    spec = dataclasses.replace(DCGAN, generator_channels=(16, 8, 4))
    with pytest.raises(GenoptError, match="dcgan cannot build 28x28 images with 3 generator_channels"):
        build_models(spec.run_config({}, seed=0), mnist)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gan", "cgan"])
def test_a_tiny_dcgan_study_completes_exports_and_samples(model, tmp_path):
    spec = tmp_path / "dcgan.toml"
    spec.write_text(
        f'model = "{model}"\n[training]\nema_decay = 0.0\naugment = "diffaugment"\n'
        '[architecture]\nkind = "dcgan"\ngenerator_channels = [16, 8]\ndiscriminator_channels = [8, 16]\n'
        'conditioning = "projection"\n'
    )
    db = f"sqlite:///{tmp_path / 'dcgan.db'}"
    study = genopt(
        "study", "--spec", str(spec), "--study", "dcgan", "--storage", db, "--trials", "1",
        "--artifact-dir", str(tmp_path / "artifacts"), "--enqueue", "lr=2e-3,batch_size=32,noise_dim=64",
        *BUDGET,
    )  # fmt: skip
    assert study.returncode == 0, study.stderr
    trial = optuna.load_study(study_name="dcgan", storage=db).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE

    export = tmp_path / "dcgan.pt"
    ensemble = genopt(
        "ensemble", "--study", "dcgan", "--storage", db, "--top-k", "1", "--fid-samples", "100",
        "--torch-export", "--out", str(export),
    )  # fmt: skip
    assert ensemble.returncode == 0, ensemble.stderr
    grid = tmp_path / "grid.png"
    sample = genopt("sample", "--checkpoint", str(export), "--n", "10", "--out", str(grid))
    assert sample.returncode == 0, sample.stderr
    assert grid.read_bytes().startswith(b"\x89PNG")
    program = torch.export.load(export.with_suffix(".pt2")).module()
    given = {"noise": torch.randn(3, 64), "labels": torch.arange(3), "choice": torch.rand(3)}
    given["accept_draw"] = torch.rand(3)  # a GAN whose samples its network reads as digits is filtered
    names = [i["name"] for i in json.loads(export.with_suffix(".json").read_text())["program"]["inputs"]]
    images = program(*(given[name] for name in names))
    images = images[0] if "accept_draw" in names else images
    assert images.shape == (3, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


# -- warm start ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint10(mnist, tmp_path_factory) -> Path:
    """A 10-class MNIST cGAN trial checkpoint, with its discriminator."""
    result = train(TINY.run_config({}, seed=0), mnist, device="cpu")
    path = tmp_path_factory.mktemp("checkpoint") / "mnist10.pt"
    save_trial_checkpoint(str(path), result.generator, discriminator=result.discriminator, epoch=1)
    return path


@pytest.fixture(scope="module")
def digits04(mnist, tmp_path_factory) -> Path:
    """MNIST digits 0-4 as an IDX folder: 1,200 training images, 300 test images."""
    return write_class_subset(mnist, tmp_path_factory.mktemp("digits04"), 5, 1200, 300)


@pytest.mark.slow
def test_a_warm_started_study_on_five_classes_lists_its_fresh_layers_and_workers_keep_the_start(
    checkpoint10, digits04, tmp_path
):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'model = "cgan"\n[training]\nema_decay = 0.0\n'
        "[architecture]\ngenerator_widths = [32]\ndiscriminator_widths = [32]\n"
    )
    db = f"sqlite:///{tmp_path / 'warm.db'}"
    common = ["--storage", db, "--artifact-store", str(tmp_path / "artifacts")]
    source = tmp_path / "start.pt"
    shutil.copyfile(checkpoint10, source)
    study = genopt(
        "study", "--spec", str(spec), "--data-dir", str(digits04), "--study", "warm", *common,
        "--trials", "1", "--init-from", str(source), "--enqueue", "lr=2e-3,batch_size=32,noise_dim=64",
        *BUDGET,
    )  # fmt: skip
    assert study.returncode == 0, study.stderr
    # one label-facing layer in each network: G's input (noise + 10 -> 5 classes), D's (image + classes)
    line = next(x for x in study.stdout.splitlines() if x.startswith("warm start from"))
    assert "fresh layers (shapes differ): generator net.0, discriminator net.0" in line, line
    stored = optuna.load_study(study_name="warm", storage=db)
    sha256 = hashlib.sha256(checkpoint10.read_bytes()).hexdigest()
    record = dict(stored.user_attrs["init"])
    copy, copy_sha256 = record.pop("artifact"), record.pop("artifact_sha256")
    assert record == {"path": str(source.resolve()), "sha256": sha256, "member": None, "discriminator": True}
    # the weights are also in the study's artifact store, for machines without the file
    with artifact_store(tmp_path / "artifacts").open_reader(copy) as f:
        assert hashlib.sha256(f.read()).hexdigest() == copy_sha256
    assert stored.trials[0].state == optuna.trial.TrialState.COMPLETE

    source.unlink()  # a worker on a machine without the file starts from the store's copy
    worker = genopt("worker", "--study", "warm", *common, "--trials", "1", "--no-progress")
    assert worker.returncode == 0, worker.stderr
    assert any(x.startswith(f"warm start from {source.resolve()}") for x in worker.stdout.splitlines())
    # the same study resumed with another start is refused before it runs
    other = tmp_path / "other.pt"
    torch.save(torch.load(checkpoint10, weights_only=True) | {"epoch": 2}, other)
    again = genopt("study", "--spec", str(spec), "--data-dir", str(digits04), "--study", "warm", *common,
                   "--trials", "1", "--init-from", str(other), *BUDGET)  # fmt: skip
    assert again.returncode == 2 and "was warm-started from" in again.stderr


def test_a_searched_noise_dim_refreshes_only_the_generators_first_layer(checkpoint10, mnist):
    init = read_init(checkpoint10)
    G, D = build_models(TINY.run_config({"noise_dim": 24}, seed=1), mnist)
    fresh = warm_start(G, D, init)
    assert fresh.generator == ["net.0"] and fresh.discriminator == []
    assert torch.equal(G.net[2].weight, init.generator_state["net.2.weight"])
    assert all(torch.equal(v, init.discriminator_state[k]) for k, v in D.state_dict().items())


def test_a_dcgan_warm_start_with_another_noise_dim_refreshes_only_its_projection(mnist):
    source_g, source_d = build_models(DCGAN.run_config({}, seed=0), mnist)
    init = WarmStart(
        source_g.config.to_dict(), source_g.state_dict(), source_d.config.to_dict(), source_d.state_dict()
    )
    G, D = build_models(DCGAN.run_config({"noise_dim": 20}, seed=1), mnist)
    assert warm_start(G, D, init).names() == ["generator project"]


def test_nothing_that_fits_is_an_error(checkpoint10, mnist):
    with pytest.raises(GenoptError, match="no layer of its mlp generator fits this study's dcgan generator"):
        warm_start(*build_models(DCGAN.run_config({}, seed=0), mnist), read_init(checkpoint10))


def test_an_old_checkpoint_without_a_discriminator_still_warm_starts_the_generator(mnist):
    init = read_init(OLD_CHECKPOINT)
    assert init.discriminator_state is None and init.generator_config.get("kind") is None
    spec = dataclasses.replace(TINY, noise_dim=141, generator_widths=(16,), train_limit=64)
    G, D = build_models(spec.run_config({}, seed=0), mnist)
    fresh = warm_start(G, D, init)
    assert fresh.generator == [] and fresh.discriminator is None
    assert all(torch.equal(v, init.generator_state[k]) for k, v in G.state_dict().items())
    assert "the discriminator starts fresh (the file holds none)" in describe(init, fresh)
    assert train(spec.run_config({}, seed=0), mnist, device="cpu", init=init).fresh_layers == []


def _export(generators, tmp_path) -> Path:
    members = [Member(i, 10.0 - i, g) for i, g in enumerate(generators)]
    build = EnsembleBuild(
        ensemble=EnsembleGenerator(generators, [1.0] * len(generators), mode="mixture"),
        members=members, objective="fid", scores={}, mixture_weights=[1.0] * len(generators), chosen=members,
        metadata={"study": "x"},
    )  # fmt: skip
    path = tmp_path / "export.pt"
    save_ensemble(build, path=path)
    return path


def test_an_export_starts_from_its_best_member_or_the_one_named(mnist, tmp_path):
    generators = [build_models(TINY.run_config({}, seed=s), mnist)[0].eval() for s in range(2)]
    path = _export(generators, tmp_path)
    best = read_init(path)  # member 1 has the lower value (9.0)
    assert best.member == 1 and torch.equal(best.generator_state["net.0.weight"], generators[1].net[0].weight)
    assert read_init(path, member=0).member == 0
    with pytest.raises(GenoptError, match="--init-member 2: .* has members 0 to 1"):
        read_init(path, member=2)


def _refused(path: Path, message: str, tmp_path: Path, capfd) -> None:
    with pytest.raises(GenoptError, match=message):
        read_init(path)
    db = f"sqlite:///{tmp_path / 'refused.db'}"
    code, stderr = run_main(
        ["study", "--model", "cgan", "--storage", db, "--trials", "1", "--init-from", str(path), *BUDGET],
        capfd,
    )
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], stderr
    assert optuna.get_all_study_summaries(db) == []


def test_init_from_a_pickled_trial_checkpoint_is_refused_in_one_line(checkpoint10, tmp_path, capfd):
    checkpoint = torch.load(checkpoint10, weights_only=True)
    checkpoint["note"] = fractions.Fraction(1, 3)  # any object that needs more than tensors to load
    path = tmp_path / "pickled.pt"
    torch.save(checkpoint, path)
    _refused(path, "holds more than tensors and plain values: refusing to unpickle it", tmp_path, capfd)


def test_init_from_a_tampered_export_is_refused_in_one_line(mnist, tmp_path, capfd):
    path = _export([build_models(TINY.run_config({}, seed=0), mnist)[0].eval()], tmp_path)
    with path.open("ab") as f:
        f.write(b"\0")
    _refused(path, "does not match the sha256", tmp_path, capfd)
