"""A user's own pictures end to end: folders of colour PNG and JPEG files, with classes (one subfolder
each) and without, through study, ensemble, sample and report. After the study no command is told
where the data is: the study remembers the folder, its size, its channels and its class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from cli_runner import genopt
from mnist_subsets import write_coloured_digits
from PIL import Image

from genopt import load_ensemble
from genopt.study.record.attrs import DATASET_ATTR

# One short trial: these test that colour pictures flow through every command, not that they learn.
TINY = ["--trials", "1", "--epochs", "1", "--fid-samples", "200", "--no-progress"]
TINY += ["--enqueue", "lr=1.5e-3,batch_size=32,noise_dim=64"]


@pytest.fixture(scope="module")
def pictures(mnist, tmp_path_factory) -> Path:
    """600 coloured digits, 60 per class, as 32x32 PNG and JPEG files in class subfolders, with a
    text file (ignored) and a file that claims to be a PNG but does not decode (skipped)."""
    folder = tmp_path_factory.mktemp("pictures")
    keep = torch.cat([(mnist.train.labels == k).nonzero().squeeze(1)[:60] for k in range(10)])
    write_coloured_digits(mnist.train.images[keep], mnist.train.labels[keep], folder)
    (folder / "digit-3" / "notes.txt").write_text("not a picture\n")
    (folder / "digit-7" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder


def rgb(path: Path) -> Image.Image:
    image = Image.open(path)
    assert image.mode == "RGB", f"{path} is {image.mode}, not a colour PNG"
    return image


def coloured(image: Image.Image) -> bool:
    """Whether some pixel's red, green and blue differ: a grey picture saved as RGB has none."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.int16))
    r, g, b = pixels.unbind(-1)
    return bool(((r - g).abs() + (g - b).abs()).gt(30).any())


@pytest.mark.slow
def test_a_colour_folder_with_classes_from_study_to_export_sample_and_report(pictures, tmp_path):
    data = tmp_path / "pictures"
    shutil.copytree(pictures, data)
    db = f"sqlite:///{tmp_path / 'own.db'}"
    study = genopt("study", "--model", "cgan", "--data-dir", str(data), "--storage", db, *TINY)
    assert study.returncode == 0, study.stderr
    assert "skipped 1 file" in study.stderr and "broken.png" in study.stderr, study.stderr
    assert (
        "3x32x32, 10 classes (1 image file that did not decode skipped, 1 other file ignored)" in study.stdout
    ), study.stdout
    name = "cgan-pictures"  # the study is named after the folder
    record = optuna.load_study(study_name=name, storage=db).user_attrs[DATASET_ATTR]
    assert record["class_names"] == [f"digit-{k}" for k in range(10)]
    assert (record["channels"], record["image_size"]) == (3, 32)

    export = tmp_path / "own.pt"
    ensemble = genopt("ensemble", "--study", name, "--storage", db, "--top-k", "1", "--out", str(export))
    assert ensemble.returncode == 0, ensemble.stderr
    loaded = load_ensemble(export)
    assert loaded.sample(6).shape == (6, 3, 32, 32)
    assert loaded.class_names == tuple(f"digit-{k}" for k in range(10))

    grid = tmp_path / "grid.png"
    sample = genopt("sample", "--checkpoint", str(export), "--n", "20", "--out", str(grid))
    assert sample.returncode == 0, sample.stderr
    assert coloured(rgb(grid))
    sevens = tmp_path / "sevens.png"
    by_name = genopt(
        "sample", "--checkpoint", str(export), "--label", "digit-7", "--n", "4", "--out", str(sevens)
    )
    assert by_name.returncode == 0, by_name.stderr

    out = tmp_path / "report"
    report = genopt("report", "--study", name, "--storage", db, "--export", str(export), "--out", str(out))
    assert report.returncode == 0, report.stderr
    assert coloured(rgb(out / "best-samples.png"))

    changed = next((data / "digit-5").glob("*.png"))
    Image.new("RGB", (32, 32), (255, 0, 0)).save(changed)
    again = genopt(
        "ensemble", "--study", name, "--storage", db, "--top-k", "1", "--out", str(tmp_path / "x.pt")
    )
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "sha256 differs" in again.stderr, again.stderr


@pytest.mark.slow
def test_a_flat_folder_makes_a_gan_scored_by_fid_alone_in_rotation_features(mnist, tmp_path):
    data = write_coloured_digits(
        mnist.train.images[:400], mnist.train.labels[:400], tmp_path / "flat", flat=True
    )
    db = f"sqlite:///{tmp_path / 'flat.db'}"
    study = genopt("study", "--model", "gan", "--data-dir", str(data), "--storage", db, *TINY)
    assert study.returncode == 0, study.stderr
    assert "3x32x32, no classes" in study.stdout and "rotation task" in study.stdout, study.stdout
    trial = optuna.load_study(study_name="gan-flat", storage=db).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    scores = {k for k in trial.user_attrs if k.startswith(("intra_fid", "label_accuracy", "class_coverage"))}
    assert not scores, f"class scores on data without classes: {sorted(scores)}"
    note = optuna.load_study(study_name="gan-flat", storage=db)
    import optuna_dashboard

    assert "four rotations" in optuna_dashboard.get_note(note)

    export = tmp_path / "flat.pt"
    ensemble = genopt(
        "ensemble", "--study", "gan-flat", "--storage", db, "--top-k", "1", "--out", str(export)
    )
    assert ensemble.returncode == 0, ensemble.stderr
    assert load_ensemble(export).sample(3).shape == (3, 3, 32, 32)
