"""`genopt compare`: the same noise and labels through every generator, a column each.

The study here is real (SQLite, a folder store, checkpoints written by genopt's own upload) but its
generators are untrained tiny MLPs, so that what each column must show is known: the same weights
twice, a cGAN that draws class k at brightness k/9, a pruned trial, a trial of another image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from cli_runner import run_main
from optuna.trial import TrialState
from PIL import Image

from genopt.checkpoints import export_checkpoint, write_description, write_export
from genopt.models import Generator, GeneratorConfig
from genopt.report.compare import comparison
from genopt.report.sidebyside import GAN_ROWS, draw_comparison, generator_column
from genopt.study.artifacts.stores import artifact_store
from genopt.study.artifacts.upload import upload_checkpoint
from genopt.study.record.attrs import ARTIFACT_STORE_ATTR, DATASET_ATTR

SHAPE = (1, 8, 8)
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PRUNED, OTHER_SHAPE = 4, 5


def generator(seed: int, *, shape=SHAPE, classes: int = len(NAMES), noise_dim: int = 8) -> Generator:
    torch.manual_seed(seed)
    return Generator(GeneratorConfig(noise_dim, (16,), shape, classes)).eval()


def class_brightness() -> Generator:
    """A cGAN that ignores its noise and draws class k as a flat image of brightness tanh(2k/9 - 1)."""
    g = generator(0)
    first, last = g.net[0], g.net[2]
    with torch.no_grad():
        for layer in (first, last):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0, 8:] = torch.arange(len(NAMES)) * 2 / 9  # hidden unit 0 = 2k/9 for class k
        last.weight[:, 0] = 1.0
        last.bias.fill_(-1.0)
    return g


@dataclass(frozen=True)
class Compared:
    url: str
    name: str
    args: list[str]  # --study NAME --storage URL


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Compared:
    """Trial 0 the class-brightness cGAN, 1 and 2 one generator's weights twice, 3 another, 4 pruned
    (no checkpoint), 5 of 12-pixel images; each trial's value is its number."""
    root = tmp_path_factory.mktemp("compare")
    url, name = f"sqlite:///{root / 'compare.db'}", "side-by-side"
    store = artifact_store(root / "store")
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr(ARTIFACT_STORE_ATTR, str(root / "store"))
    study.set_user_attr(DATASET_ATTR, {"name": "test", "class_names": NAMES})
    twin = generator(1)
    drawn = [class_brightness(), twin, twin, generator(2), None, generator(3, shape=(1, 12, 12))]
    for number, g in enumerate(drawn):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        if g is None:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        upload_checkpoint(trial, store, g)
        study.tell(trial, float(number))
    return Compared(url, name, ["--study", name, "--storage", url])


def cells(picture, column: int, image: np.ndarray | None = None) -> np.ndarray:
    """Every cell of one column, as pixels of ``image`` (default the picture's own)."""
    pixels = np.asarray(picture.image) if image is None else image
    return np.stack(
        [pixels[top:bottom, left:right] for left, top, right, bottom in (r[column] for r in picture.cells)]
    )


def test_one_generator_fed_twice_draws_two_pixel_identical_columns(study, tmp_path, capfd):
    out = tmp_path / "compare.png"
    code, err = run_main(["compare", *study.args, "--trials", "1,2,3", "--out", str(out)], capfd)
    assert code == 0, err
    written = np.asarray(Image.open(out).convert("RGB"))
    picture = comparison(study_name=study.name, storage_url=study.url, trials=[1, 2, 3])
    assert np.array_equal(written, np.asarray(picture.image)), "the PNG is the comparison drawn"
    assert [h[0] for h in picture.headings] == ["trial 1", "trial 2", "trial 3"]
    # Trials 1 and 2 hold the same weights: the same noise and labels draw the same pixels.
    assert np.array_equal(cells(picture, 0, written), cells(picture, 1, written))
    assert not np.array_equal(cells(picture, 1, written), cells(picture, 2, written))
    # A cGAN draws one row per class, each row from the same noise vectors.
    assert len(picture.cells) == len(NAMES) and picture.row_names == tuple(NAMES)


def test_a_cgan_draws_its_rows_in_class_order(study):
    picture = comparison(study_name=study.name, storage_url=study.url, trials=[0])
    brightness = cells(picture, 0).reshape(len(NAMES), -1).mean(1)
    assert list(brightness) == sorted(brightness) and len(set(brightness.round(1))) == len(NAMES)
    assert picture.row_names == tuple(NAMES)


def test_top_draws_the_best_trials_with_a_checkpoint_headed_by_scores_and_parameters(study):
    picture = comparison(study_name=study.name, storage_url=study.url, top=2)
    assert [h[0] for h in picture.headings] == ["trial 0", "trial 1"]
    assert picture.headings[1][-1].startswith("lr=")


def test_a_gan_draws_fixed_noise_vectors_as_rows():
    twin = generator(7, classes=0)
    columns = [generator_column(g, name=str(i), heading=(str(i),)) for i, g in enumerate((twin, twin))]
    picture = draw_comparison(columns)
    assert len(picture.cells) == GAN_ROWS
    first, second = cells(picture, 0), cells(picture, 1)
    assert np.array_equal(first, second) and not np.array_equal(first[0], first[1])
    assert np.array_equal(picture.image, draw_comparison(columns).image), "the noise is fixed"


def test_colour_data_is_drawn_in_colour_and_grey_data_in_grey():
    colour, grey = generator(8, shape=(3, 8, 8), classes=0), generator(8, classes=0)
    for g, channels_differ in ((colour, True), (grey, False)):
        pixels = cells(draw_comparison([generator_column(g, name="g", heading=("g",))]), 0)
        assert (pixels[..., 0] != pixels[..., 1]).any() == channels_differ


def test_an_export_is_drawn_beside_its_members_from_the_same_noise(study, tmp_path, capfd):
    members, trials = [generator(1), generator(2)], [(1, 1.0), (3, 3.0)]
    content = export_checkpoint(
        generators=members,
        weights=[0.5, 0.5],
        trials=trials,
        mode="mean",
        scores={"mean": {"validation": {"fid": 12.5}, "test": {"fid": 13.0}}},
        metadata={"study": study.name, "best_single_trial": 1, "fid_samples": 10},
    )
    path = tmp_path / "export.pt"
    write_description(path, write_export(content, path))

    out = tmp_path / "export.png"
    code, err = run_main(["compare", "--checkpoint", str(path), "--out", str(out)], capfd)
    assert code == 0, err
    picture = comparison(checkpoint=path)
    written = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert [h[0] for h in picture.headings] == ["trial 1", "trial 3", "export (mean)"]
    assert "FID 12.50" in picture.headings[2]
    # The mean export feeds its members the noise its column got: its pixels are theirs, averaged.
    first, second, export = (cells(picture, i, written) for i in range(3))
    assert np.abs(export - (first + second) / 2).max() <= 1


@pytest.mark.parametrize(
    "trials, says",
    [
        ("0,9", "study 'side-by-side' has no trial 9: its trials are 0 to 5"),
        (str(PRUNED), f"trial {PRUNED} was pruned, so it kept no checkpoint: compare trials with a stored"),
        (
            f"0,{OTHER_SHAPE}",
            f"trial {OTHER_SHAPE} draws 1x12x12 images with 10 classes but trial 0 draws 1x8x8",
        ),
        ("3,x", "'3,x' is not a list of trial numbers"),
    ],
)
def test_bad_trials_are_refused_in_one_line(study, tmp_path, capfd, trials, says):
    out = tmp_path / "never.png"
    code, err = run_main(["compare", *study.args, "--trials", trials, "--out", str(out)], capfd)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genopt compare: error: ") and says in lines[0], err
    assert not out.exists()


def test_compare_without_a_study_or_an_export_says_what_to_give(capfd):
    code, err = run_main(["compare", "--out", str(Path("never.png"))], capfd)
    assert code == 2 and err.strip() == (
        "genopt compare: error: name a study (--study) or an export (--checkpoint) to compare"
    )


@pytest.mark.slow  # moto's S3 server in a subprocess
def test_compare_reads_checkpoints_from_an_s3_store(tmp_path, capfd, monkeypatch):
    from s3_server import s3_server

    with s3_server() as s3:
        for name, text in s3.env.items():
            monkeypatch.setenv(name, text)
        location = f"s3://{s3.bucket}/compare"
        store = artifact_store(location)
        url = f"sqlite:///{tmp_path / 's3.db'}"
        study = optuna.create_study(study_name="on-s3", storage=url)
        study.set_user_attr(ARTIFACT_STORE_ATTR, location)
        twin = generator(1)
        for number in range(2):
            trial = study.ask()
            upload_checkpoint(trial, store, twin)
            study.tell(trial, float(number))
        store.client.close()

        out = tmp_path / "s3.png"
        code, err = run_main(["compare", "--study", "on-s3", "--storage", url, "--out", str(out)], capfd)
        assert code == 0, err
        picture = comparison(study_name="on-s3", storage_url=url)
    written = np.asarray(Image.open(out).convert("RGB"))
    assert [h[0] for h in picture.headings] == ["trial 0", "trial 1"]
    assert np.array_equal(cells(picture, 0, written), cells(picture, 1, written))
