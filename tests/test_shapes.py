"""Images of any shape genopt takes: 1 or 3 channels, 28, 32 or 64 pixels, named classes.

Networks are built and run forward and backward on batches of two; exports record what their
images and classes are; ``genopt sample`` takes a class by name and writes colour for colour; a warm
start crosses channels and sizes, leaving the layers that do not fit fresh. No training, no data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_main
from PIL import Image

from genopt.checkpoints import read_description
from genopt.data import Dataset, Split
from genopt.ensemble.build import EnsembleBuild, Member, dataset_description
from genopt.ensemble.export import save_ensemble
from genopt.ensemble.generator import EnsembleGenerator, load_ensemble
from genopt.ensemble.sample import class_index
from genopt.errors import GenoptError
from genopt.grid import save_grid
from genopt.models import Generator
from genopt.models.dcgan import widths_for_size
from genopt.spec import StudySpec
from genopt.study.init_from import check_init
from genopt.train import build_models
from genopt.warmstart import WarmStart, warm_start

OLD_EXPORT = Path(__file__).parent / "data" / "old_cgan_study" / "old-export.pt"
CLASSES = ("cat", "dog", "owl")
SIZES = (28, 32, 64)
CONDITIONINGS = (None, "concat", "projection", "acgan")  # None: an unconditional GAN
DCGAN = StudySpec(
    kind="dcgan", generator_channels=(96, 48), discriminator_channels=(48, 96), noise_dim=16, ema_decay=0.0
)
MLP = StudySpec(kind="mlp", generator_widths=(32,), discriminator_widths=(32,), noise_dim=16, ema_decay=0.0)


def fake_dataset(channels: int, size: int, class_names: tuple[str, ...] = CLASSES) -> Dataset:
    """Six random uint8 images of the shape, two per class; the splits share them."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, channels, size, size), dtype=torch.uint8, generator=generator)
    split = Split(images, torch.arange(6) % len(class_names))
    return Dataset(
        f"fake-{channels}x{size}", "test", "0" * 64, len(class_names), split, split, split, class_names
    )


def run_config(spec: StudySpec, conditioning: str | None):
    model = "gan" if conditioning is None else "cgan"
    spec = dataclasses.replace(spec, model=model, conditioning=conditioning or "concat")
    return spec.run_config({}, seed=0)


def forward_backward(G, D, dataset: Dataset) -> torch.Tensor:
    """Two generated images through D, the losses' gradient back to G; the images."""
    labels = torch.tensor([0, 2]) if G.config.num_classes else None
    images = G(torch.randn(2, G.config.noise_dim), labels)
    logits, classes = D.forward_with_classes(images, labels)
    assert logits.shape == (2,)
    loss = logits.sum() + (classes.sum() if classes is not None else 0)
    loss.backward()
    for network in (G, D):
        grads = [p.grad for p in network.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    return images


# -- networks ---------------------------------------------------------------------------------------


def test_dcgan_adds_stages_until_the_smallest_map_is_at_most_8_pixels():
    widths = ((96, 48), (48, 96))
    assert widths_for_size(*widths, (1, 28, 28)) == widths  # 7x7
    assert widths_for_size(*widths, (3, 32, 32)) == widths  # 8x8
    assert widths_for_size(*widths, (3, 64, 64)) == ((192, 96, 48), (48, 96, 192))
    assert widths_for_size(*widths, (1, 128, 128)) == ((384, 192, 96, 48), (48, 96, 192, 384))
    # deep enough already, or a size that no longer halves evenly (36: 18, 9): as the spec says
    assert widths_for_size((64, 32, 16), (16, 32, 64), (3, 64, 64)) == ((64, 32, 16), (16, 32, 64))
    assert widths_for_size(*widths, (1, 36, 36)) == widths


@pytest.mark.parametrize("channels", [1, 3])
def test_a_64_pixel_dcgan_is_built_and_recorded_with_its_added_stages(channels):
    G, D = build_models(run_config(DCGAN, "projection"), fake_dataset(channels, 64))
    assert G.config.widths == (192, 96, 48) and D.config.widths == (48, 96, 192)
    assert G.project.out_features == 192 * 8 * 8  # from 8x8, not a 16x16 projection
    assert D.head.in_features == 192 * 8 * 8
    # the configs (what checkpoints keep) rebuild the same networks
    rebuilt = Generator(type(G.config).from_dict(G.config.to_dict()))
    rebuilt.load_state_dict(G.state_dict())


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_builds_and_trains_on_every_shape(channels, size, conditioning):
    torch.manual_seed(0)
    dataset = fake_dataset(channels, size)
    G, D = build_models(run_config(DCGAN, conditioning), dataset)
    assert G.config.num_classes == (0 if conditioning is None else 3)
    assert forward_backward(G, D, dataset).shape == (2, channels, size, size)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_mlp_builds_and_trains_on_every_flattened_size(channels, size, conditioning):
    torch.manual_seed(0)
    dataset = fake_dataset(channels, size)
    G, D = build_models(run_config(MLP, conditioning), dataset)
    assert G.config.widths == (32,) and D.config.widths == (32,)  # MLPs keep the spec's widths
    assert forward_backward(G, D, dataset).shape == (2, channels, size, size)


# -- exports, sampling, figures -------------------------------------------------------------------


def export(dataset: Dataset, tmp_path, *, conditional: bool = True):
    """An export of two untrained DCGAN generators for ``dataset``, as ``genopt ensemble`` writes it."""
    torch.manual_seed(1)
    spec = dataclasses.replace(DCGAN, generator_channels=(8, 4), discriminator_channels=(4, 8))
    generators = [
        build_models(run_config(spec, "concat" if conditional else None), dataset)[0].eval() for _ in range(2)
    ]
    members = [Member(i, 10.0 - i, g) for i, g in enumerate(generators)]
    names = dataset.class_names if conditional else None
    ensemble = EnsembleGenerator(generators, [0.5, 0.5], mode="mixture", class_names=names)
    metadata = {"study": "shapes", "dataset": dataset_description(dataset), "best_single_trial": 1}
    metadata["fid_samples"] = 10
    scores = {"mixture": {"validation": {"fid": 1.0}, "test": {"fid": 2.0}}}
    build = EnsembleBuild(ensemble, members, "fid", scores, [0.5, 0.5], members, metadata)
    path = tmp_path / "shapes.pt"
    save_ensemble(build, path=path)
    return path


def test_an_export_records_and_loads_its_channels_size_and_class_names(tmp_path):
    path = export(fake_dataset(3, 32), tmp_path)
    ensemble = load_ensemble(path)
    assert ensemble.sample(5).shape == (5, 3, 32, 32)
    assert ensemble.sample(4, labels=2).shape == (4, 3, 32, 32)
    assert (ensemble.channels, ensemble.image_size, ensemble.class_names) == (3, 32, CLASSES)
    record = ensemble.metadata["dataset"]
    assert record["channels"] == 3 and record["image_size"] == 32 and record["image_shape"] == [3, 32, 32]
    assert record["class_names"] == list(CLASSES)
    described = read_description(path)
    assert described.image_shape == (3, 32, 32) and described.class_names == CLASSES


def test_idx_data_names_its_classes_by_index_and_old_exports_load_with_index_names(tmp_path):
    digits = dataclasses.replace(fake_dataset(1, 28), num_classes=10, class_names=())  # as load_dataset makes
    assert dataset_description(digits)["class_names"] == [str(k) for k in range(10)]
    # an export made before the names were recorded (tests/data) reads the indices
    old = load_ensemble(OLD_EXPORT)
    assert old.class_names == tuple(str(k) for k in range(old.num_classes)) and old.channels == 1
    assert old.sample(2).shape == (2, *old.image_shape)


def test_class_names_are_one_per_class():
    G, _ = build_models(run_config(DCGAN, "concat"), fake_dataset(1, 28))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        EnsembleGenerator([G], [1.0], mode="mean", class_names=["a", "b"])


def test_a_class_name_wins_over_the_index_it_spells():
    G, _ = build_models(run_config(DCGAN, "concat"), fake_dataset(1, 28, class_names=("7", "0", "5")))
    ensemble = EnsembleGenerator([G], [1.0], mode="mean", class_names=["7", "0", "5"])
    assert class_index(ensemble, "0") == 1 and class_index(ensemble, "7") == 0  # names
    assert class_index(ensemble, "2") == 2 and class_index(ensemble, 2) == 2  # indices
    with pytest.raises(GenoptError, match="unknown label 3: this ensemble draws classes 0..2 \\(7, 0, 5\\)"):
        class_index(ensemble, "3")


def png(path) -> tuple[str, torch.Tensor]:
    """A PNG's mode and its pixels, one row each."""
    image = Image.open(path)
    return image.mode, torch.from_numpy(np.asarray(image).copy()).reshape(-1, len(image.getbands()))


def test_genopt_sample_takes_a_class_by_name_or_index_and_writes_colour(tmp_path, capfd):
    path = export(fake_dataset(3, 32), tmp_path)
    for label in ("owl", "2"):
        out = tmp_path / f"{label}.png"
        code, stderr = run_main(["sample", "--checkpoint", str(path), "--label", label, "--n", "4",
                                 "--out", str(out)], capfd)  # fmt: skip
        assert code == 0, stderr
        mode, pixels = png(out)
        assert mode == "RGB" and not torch.equal(pixels[:, 0], pixels[:, 1])  # colour, not grey as RGB
    assert png(tmp_path / "owl.png")[1].equal(png(tmp_path / "2.png")[1])  # owl is class 2
    code, stderr = run_main(["sample", "--checkpoint", str(path), "--label", "bat", "--out",
                             str(tmp_path / "x.png")], capfd)  # fmt: skip
    assert code == 2 and stderr.strip().count("\n") == 0, stderr
    assert "unknown class 'bat': this ensemble's classes are cat, dog, owl" in stderr


def test_genopt_sample_of_grey_data_stays_grey(tmp_path, capfd):
    path = export(fake_dataset(1, 28), tmp_path)
    out = tmp_path / "grey.png"
    code, stderr = run_main(["sample", "--checkpoint", str(path), "--n", "4", "--out", str(out)], capfd)
    assert code == 0, stderr
    mode, pixels = png(out)
    assert mode == "RGB" and all(torch.equal(pixels[:, 0], pixels[:, k]) for k in (1, 2))


@pytest.mark.parametrize("channels", [1, 3])
def test_sample_grids_for_the_report_are_rgb_and_colour_for_colour(channels, tmp_path):
    torch.manual_seed(0)
    G, _ = build_models(run_config(DCGAN, "concat"), fake_dataset(channels, 64))
    mode, pixels = png(save_grid(G.eval(), tmp_path / "grid.png"))
    assert mode == "RGB"
    assert torch.equal(pixels[:, 0], pixels[:, 1]) == (channels == 1)


# -- warm starts ----------------------------------------------------------------------------------


def source(dataset: Dataset, spec: StudySpec = DCGAN) -> WarmStart:
    G, D = build_models(run_config(spec, "projection"), dataset)
    return WarmStart(G.config.to_dict(), G.state_dict(), D.config.to_dict(), D.state_dict())


def copied(model, init_state, layer: str) -> bool:
    own = {k: v for k, v in model.state_dict().items() if k.startswith(f"{layer}.")}
    return bool(own) and all(torch.equal(v, init_state[k]) for k, v in own.items())


def test_a_warm_start_from_grey_28_pixels_starts_a_colour_32_pixel_dcgan(tmp_path):
    init = source(fake_dataset(1, 28, class_names=tuple("0123456789")))
    G, D = build_models(run_config(DCGAN, "projection"), fake_dataset(3, 32))
    fresh = warm_start(G, D, init)
    # G: the projection (noise and 10 -> 3 classes, 7x7 -> 8x8) and the last layer (48 -> 3 channels)
    assert fresh.generator == ["project", "body.6"]
    # D: the first layer (3 channels), the head (8x8 features), the class embedding (3 classes)
    assert fresh.discriminator == ["body.0", "head", "embed"]
    assert all(copied(G, init.generator_state, layer) for layer in ("body.1", "body.3", "body.4"))
    assert copied(D, init.discriminator_state, "body.2")


def test_a_warm_start_across_stage_counts_matches_the_later_stages(tmp_path):
    # 28 pixels: G [96, 48] from 7x7; 64 pixels: G [192, 96, 48] from 8x8, its stages 1 later
    init = source(fake_dataset(1, 28))
    G, D = build_models(run_config(DCGAN, "projection"), fake_dataset(3, 64))
    fresh = warm_start(G, D, init)
    assert fresh.generator == ["project", "body.1", "body.3", "body.9"]
    # the source's 96 -> 48 stage and its batch norms load where they sit in the deeper generator
    for source_layer, layer in (("body.1", "body.4"), ("body.3", "body.6"), ("body.4", "body.7")):
        own = {k.removeprefix(f"{layer}."): v for k, v in G.state_dict().items() if k.startswith(f"{layer}.")}
        assert all(torch.equal(v, init.generator_state[f"{source_layer}.{k}"]) for k, v in own.items())
    # D's stages keep their places: its 48 -> 96 stage loads; the head and the projection's class
    # embedding have 192x8x8 features against 96x7x7
    assert fresh.discriminator == ["body.0", "body.4", "head", "embed"]
    assert copied(D, init.discriminator_state, "body.2")


def test_a_warm_start_of_an_mlp_across_channels_refreshes_its_image_facing_layers():
    init = source(fake_dataset(1, 28), MLP)
    G, D = build_models(run_config(MLP, "projection"), fake_dataset(3, 32))
    fresh = warm_start(G, D, init)
    assert fresh.generator == ["net.2"] and fresh.discriminator == ["body.0"]
    assert copied(G, init.generator_state, "net.0") and copied(D, init.discriminator_state, "head")


def test_nothing_that_fits_names_the_other_images():
    spec = dataclasses.replace(MLP, generator_widths=(8,))
    init = source(fake_dataset(1, 28, class_names=tuple("0123456789")), spec)
    with pytest.raises(GenoptError, match="or other images: 1x28x28 against 3x32x32"):
        warm_start(*build_models(run_config(spec, "projection"), fake_dataset(3, 32)), init)


def test_a_study_warm_started_from_other_images_says_so():
    init = source(fake_dataset(1, 28))
    spec = dataclasses.replace(DCGAN, model="cgan", conditioning="projection")
    line = check_init(spec, fake_dataset(3, 32), init)
    assert "fresh layers (shapes differ): generator project, generator body.6, discriminator body.0" in line
    assert line.endswith("; its images are 1x28x28, this study's 3x32x32"), line
