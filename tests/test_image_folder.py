"""Folders of images as datasets (genopt/data/folder/): layouts, modes, sizes, bad files, cache."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from genopt.data.folder import decode, is_image_folder, load_image_folder, scan
from genopt.errors import GenoptError

COLOURS = ((200, 40, 40), (40, 160, 40), (40, 40, 220))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """A genopt home of this test's own, so every load starts with an empty image cache."""
    monkeypatch.setenv("GENOPT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def rectangle(index: int, colour: tuple[int, int, int], size=(40, 30)) -> Image.Image:
    """A ``colour`` background with a darker rectangle that moves with ``index``."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    x, y = index % (size[0] - 10), index % (size[1] - 8)
    pixels[y : y + 8, x : x + 10] = np.array(colour) // 3
    return Image.fromarray(pixels)


def class_folder(root: Path, names=("b_dog", "a_cat", "c_eel"), per_class=10, size=(40, 30)) -> Path:
    """One subfolder per class of coloured rectangles, PNG and JPEG, the last class in a nested folder."""
    for label, name in enumerate(names):
        for i in range(per_class):
            sub = root / name / ("nested" if label == 2 and i % 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            rectangle(i, COLOURS[label % 3], size).save(sub / f"{i:03}.{'png' if i % 2 else 'JPG'}")
    return root


def flat_folder(root: Path, count=14, size=(40, 30), mode="RGB") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rectangle(i, COLOURS[i % 3], size).convert(mode).save(root / f"{i:03}.png")
    return root


def all_images(ds) -> torch.Tensor:
    return torch.cat([ds.train.images, ds.validation.images, ds.test.images])


def assert_same_splits(first, second) -> None:
    for a, b in zip(
        (first.train, first.validation, first.test),
        (second.train, second.validation, second.test),
        strict=True,
    ):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 RGB PNG whose header (with its CRC fixed) claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(buffer, "PNG")
    png = bytearray(buffer.getvalue())
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


# Layouts.


def test_class_subfolders(tmp_path):
    root = class_folder(tmp_path / "pets")
    (root / "notes.txt").write_text("not an image")
    (root / "a_cat" / "labels.csv").write_text("x")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "a_cat" / ".hidden.png").write_bytes(b"garbage")
    (root / ".thumbs").mkdir()
    rectangle(0, COLOURS[0]).save(root / ".thumbs" / "x.png")
    ds = load_image_folder(root)
    assert ds.class_names == ("a_cat", "b_dog", "c_eel")
    assert ds.labelled and ds.num_classes == 3 and ds.name == "pets"
    assert ds.source == f"image folder {root.resolve()}"
    assert ds.image_shape == (3, 32, 32)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (23, 4, 3)
    for split in (ds.train, ds.validation, ds.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape == (len(split), 3, 32, 32)
        assert set(split.labels.tolist()) == {0, 1, 2}  # stratified: every class in every split
    d = ds.details
    assert (d["files"], d["classes"], d["ignored_files"], d["skipped_files"]) == (30, 3, 2, 0)
    assert (d["image_size"], d["channels"], d["background"]) == (32, 3, "black")
    assert d["split"].startswith("seeded stratified split, seed 0")
    assert d["counts"] == {"train": 23, "validation": 4, "test": 3}
    assert d["cache"] == "miss" and d["decode_s"] >= 0 and d["images_per_s"] > 0
    # a_cat, made green, is label 0: labels follow the sorted folder names, not the order made.
    cat = ds.train.images[ds.train.labels == 0].float().mean(dim=(0, 2, 3))
    assert cat[1] > cat[0] and cat[1] > cat[2]
    assert is_image_folder(root)


def test_flat_folder_is_unlabelled(tmp_path):
    ds = load_image_folder(flat_folder(tmp_path / "loose"), name="mine")
    assert not ds.labelled and ds.num_classes == 1 and ds.class_names == () and ds.name == "mine"
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (10, 2, 2)
    assert all(int(s.labels.max()) == 0 for s in (ds.train, ds.validation, ds.test))
    assert ds.details["classes"] == 0


def test_train_and_test_folders(tmp_path):
    class_folder(tmp_path / "d" / "train", per_class=8)
    class_folder(tmp_path / "d" / "test", per_class=3)
    ds = load_image_folder(tmp_path / "d")
    assert ds.class_names == ("a_cat", "b_dog", "c_eel")
    assert len(ds.test) == 9 and sorted(ds.test.labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (len(ds.train), len(ds.validation)) == (20, 4)
    assert ds.details["split"] == "test/ folder"
    assert set(ds.train.labels.tolist()) == {0, 1, 2}


def test_train_folder_alone_and_flat(tmp_path):
    flat_folder(tmp_path / "d" / "train", count=21)
    ds = load_image_folder(tmp_path / "d")
    assert not ds.labelled and (len(ds.train), len(ds.validation), len(ds.test)) == (15, 3, 3)


def test_split_is_deterministic_and_classes_interleaved(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d", per_class=14)
    first = load_image_folder(root)
    monkeypatch.setenv("GENOPT_HOME", str(tmp_path / "other-home"))  # decode again, no cache
    second = load_image_folder(root)
    assert second.details["cache"] == "miss"
    assert_same_splits(first, second)
    assert first.train.labels.tolist() != sorted(first.train.labels.tolist())  # shuffled
    assert first.test.class_counts(3).tolist() == [2, 2, 2]  # 14 / 7 per class


# Channels and sizes.


def test_channels_auto(tmp_path):
    grey = flat_folder(tmp_path / "grey", mode="L")
    Image.new("RGB", (40, 30), (90, 90, 90)).save(grey / "rgb-but-grey.png")
    ds = load_image_folder(grey)
    assert ds.channels == 1 and ds.details["channels"] == 1
    assert load_image_folder(grey, channels=3).channels == 3
    Image.new("RGB", (40, 30), (90, 91, 90)).save(grey / "colour.png")
    assert load_image_folder(grey).channels == 3


def test_forced_channels(tmp_path):
    root = flat_folder(tmp_path / "f", size=(32, 32))
    grey = load_image_folder(root, channels=1)
    colour = load_image_folder(root, channels="3")
    assert grey.channels == 1 and colour.channels == 3 and grey.sha256 != colour.sha256
    # Pillow's L formula of each colour in use, image for image.
    expected = {round(0.299 * r + 0.587 * g + 0.114 * b) for r, g, b in COLOURS}
    assert {int(v) for v in all_images(grey)[:, 0, 31, 31]} == expected  # a corner the rectangles miss
    assert colour.sha256 == load_image_folder(root).sha256  # auto resolved to 3: the same data
    repeated = load_image_folder(flat_folder(tmp_path / "g", mode="L"), channels=3)
    images = all_images(repeated)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


@pytest.mark.parametrize(("size", "expected"), [((40, 30), 32), ((90, 64), 64), ((200, 63), 32)])
def test_default_size(tmp_path, size, expected):
    ds = load_image_folder(flat_folder(tmp_path / "f", size=size))
    assert ds.image_shape == (3, expected, expected) and ds.details["image_size"] == expected


def test_chosen_size_and_centre_crop(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    for i in range(8):  # a wide image: red | green | blue thirds; the centre square is all green
        pixels = np.zeros((40, 120, 3), np.uint8)
        pixels[:, :40], pixels[:, 40:80], pixels[:, 80:] = COLOURS[0], (0, 255, 0), COLOURS[2]
        Image.fromarray(pixels).save(root / f"{i}.png")
    images = all_images(load_image_folder(root, image_size=16))
    assert images.shape == (8, 3, 16, 16)
    # Green inside; the outermost columns blend with the crop's neighbours, as resize-then-crop does.
    inside = images[:, :, :, 1:-1]
    assert (inside[:, 1] == 255).all() and (inside[:, 0] == 0).all() and (inside[:, 2] == 0).all()
    assert images[:, 0, :, 0].float().mean() > 0  # a little of the red third at the left edge


@pytest.mark.parametrize("bad", [30, 0, -4, 2.0, True])
def test_image_size_must_be_a_positive_multiple_of_4(tmp_path, bad):
    with pytest.raises(GenoptError, match="positive multiple of 4"):
        load_image_folder(flat_folder(tmp_path / "f"), image_size=bad)


def test_bad_channels_and_workers(tmp_path):
    with pytest.raises(GenoptError, match="channels must be"):
        load_image_folder(tmp_path, channels=2)
    with pytest.raises(GenoptError, match="workers must be at least 1"):
        load_image_folder(tmp_path, workers=0)


# Modes and formats.


def test_modes_and_formats(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    Image.new("RGBA", (32, 32), (200, 100, 50, 128)).save(root / "rgba.png")
    Image.new("LA", (32, 32), (200, 64)).save(root / "la.png")
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.paste(0, (0, 0, 32, 16))  # the top half: index 0, red but transparent
    palette.save(root / "palette.png", transparency=0)
    Image.fromarray(np.full((32, 32), 25700, np.uint16)).save(root / "sixteen.png")  # 100 * 257
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(root / "cmyk.tif")
    frames = [Image.new("RGB", (32, 32), (10, 200, 30)), Image.new("RGB", (32, 32), (250, 250, 0))]
    frames[0].save(root / "anim.GIF", save_all=True, append_images=frames[1:])
    Image.new("RGB", (32, 32), (30, 60, 90)).save(root / "lossless.webp", lossless=True)
    Image.new("RGB", (32, 32), (70, 20, 120)).save(root / "plain.bmp")
    Image.new("1", (32, 32), 1).save(root / "one-bit.png")
    Image.new("RGB", (32, 32), (5, 6, 7)).save(root / "plain.tiff")
    ds = load_image_folder(root, image_size=32)
    assert ds.details["files"] == 10 and ds.channels == 3
    corners = [(tuple(im[:, 0, 0].tolist()), tuple(im[:, 31, 0].tolist())) for im in all_images(ds)]

    def found(top, bottom=None):
        bottom = bottom or top
        return any(max(abs(a - b) for a, b in zip(t + u, top + bottom, strict=True)) <= 1 for t, u in corners)

    assert found((100, 50, 25)), corners  # RGBA on black
    assert found((50, 50, 50)), corners  # LA on black
    assert found((0, 0, 0), (0, 255, 0)), corners  # palette: transparent top black, green bottom
    assert found((100, 100, 100)), corners  # 16 bit scaled to 8
    assert found((255, 0, 0)), corners  # CMYK
    assert found((10, 200, 30)), corners  # GIF: the first frame
    assert found((30, 60, 90)) and found((70, 20, 120)) and found((5, 6, 7)), corners
    assert found((255, 255, 255)), corners  # 1 bit


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "phone"
    root.mkdir()
    pixels = np.zeros((200, 400, 3), np.uint8)  # stored wide: red left half, blue right half
    pixels[:, :200] = (255, 0, 0)
    pixels[:, 200:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: tall, red on top, blue below
    for i in range(8):
        Image.fromarray(pixels).save(root / f"{i}.jpg", exif=exif, quality=95)
    images = all_images(load_image_folder(root, image_size=16)).float()
    assert images.shape == (8, 3, 16, 16)
    top, bottom = images[:, :, :6].mean(dim=(0, 2, 3)), images[:, :, 10:].mean(dim=(0, 2, 3))
    assert top[0] > 200 and top[2] < 50, top
    assert bottom[2] > 200 and bottom[0] < 50, bottom


# Bad files.


def test_broken_files_are_skipped_with_one_warning(tmp_path, capsys):
    root = class_folder(tmp_path / "d")
    (root / "a_cat" / "000-garbage.jpg").write_bytes(b"this is not a JPEG" * 20)
    whole = (root / "b_dog" / "001.png").read_bytes()
    (root / "b_dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    ds = load_image_folder(root)
    assert ds.details["files"] == 30 and ds.details["skipped_files"] == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("warning: skipped 2 files that do not decode as images (first: ")
    assert str(root / "a_cat" / "000-garbage.jpg") in err[0]
    again = load_image_folder(root)  # from the cache: counted, not warned again
    assert again.details["skipped_files"] == 2 and capsys.readouterr().err == ""
    with pytest.raises(
        GenoptError, match=r"holds 2 image files that do not decode \(first: .*000-garbage.jpg"
    ):
        load_image_folder(root, strict=True)


def test_decompression_bombs_are_skipped_undecoded(tmp_path, monkeypatch, capsys):
    root = flat_folder(tmp_path / "d")
    (root / "bomb.png").write_bytes(png_claiming(50_000, 50_000))  # above twice the limit: an error
    (root / "warned.png").write_bytes(png_claiming(10_000, 10_000))  # above the limit: a warning
    loaded = []  # the size of every image whose pixels are decoded (decoding runs in this process)
    load = ImageFile.ImageFile.load

    def spy(self):
        loaded.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    ds = load_image_folder(root, channels=3)
    assert ds.details["files"] == 14 and ds.details["skipped_files"] == 2
    assert loaded and max(w * h for w, h in loaded) <= Image.MAX_IMAGE_PIXELS
    err = capsys.readouterr().err
    assert "skipped 2 files" in err and "bomb.png: Image size (2500000000 pixels) exceeds limit" in err


def test_bomb_in_a_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "POOL_MIN_FILES", 0)
    root = flat_folder(tmp_path / "d")
    (root / "warned.png").write_bytes(png_claiming(10_000, 10_000))
    ds = load_image_folder(root, workers=2)
    assert ds.details["workers"] == 2 and ds.details["skipped_files"] == 1
    assert "pixels" in ds.details["first_skipped"]


# Errors.


def _missing(tmp):
    return tmp / "nowhere"


def _a_file(tmp):
    (tmp / "file.png").write_bytes(b"x")
    return tmp / "file.png"


def _empty(tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _no_images(tmp):
    (tmp / "texts" / "sub").mkdir(parents=True)
    (tmp / "texts" / "a.txt").write_text("a")
    (tmp / "texts" / "sub" / "b.csv").write_text("b")
    return tmp / "texts"


def _lonely_class(tmp):
    root = class_folder(tmp / "d")
    for path in sorted((root / "b_dog").iterdir())[1:]:
        path.unlink()
    return root


def _mixed(tmp):
    root = class_folder(tmp / "d")
    rectangle(0, COLOURS[0]).save(root / "loose.png")
    return root


def _all_broken(tmp):
    (tmp / "d").mkdir()
    for i in range(5):
        (tmp / "d" / f"{i}.png").write_bytes(b"nope")
    return tmp / "d"


def _test_classes_differ(tmp):
    class_folder(tmp / "d" / "train")
    class_folder(tmp / "d" / "test", names=("b_dog", "a_cat", "z_fox"), per_class=2)
    return tmp / "d"


def _test_layout_differs(tmp):
    class_folder(tmp / "d" / "train")
    flat_folder(tmp / "d" / "test", count=3)
    return tmp / "d"


def _beside_train(tmp):
    class_folder(tmp / "d" / "train")
    flat_folder(tmp / "d" / "val", count=3)
    return tmp / "d"


def _empty_test(tmp):
    class_folder(tmp / "d" / "train")
    (tmp / "d" / "test").mkdir()
    return tmp / "d"


def _too_few(tmp):
    return flat_folder(tmp / "d", count=3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, r"image folder .*nowhere does not exist"),
        (_a_file, r"file.png is not a folder"),
        (_empty, r"empty is empty"),
        (_no_images, r"texts holds no image files \(.png .jpg .*\); 2 other files are ignored"),
        (_lonely_class, r"class folder .*b_dog holds 1 image: it needs at least 2"),
        (_mixed, r"d mixes layouts: loose.png lies beside class folders such as a_cat/"),
        (_all_broken, r"none of the 5 image files in .*d decode \(first: .*0.png: "),
        (_test_classes_differ, r"classes of test/ differ from train/'s \(missing from test/: c_eel; not in "),
        (_test_layout_differs, r"train/ holds class folders but test/ holds loose images"),
        (_beside_train, r"holds val/ beside train/"),
        (_empty_test, r"test is empty"),
        (_too_few, r"too few images \(3 that decode\)"),
    ],
)
def test_errors(tmp_path, make, message):
    with pytest.raises(GenoptError, match=message):
        load_image_folder(make(tmp_path))


def test_unreadable_folder(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "d")
    scandir = os.scandir

    def refuse(path):
        if Path(path) == root:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(scan.os, "scandir", refuse)
    with pytest.raises(GenoptError, match=r"cannot read .*d: permission denied"):
        load_image_folder(root)


def test_is_image_folder(tmp_path):
    assert not is_image_folder(tmp_path / "nowhere")
    assert not is_image_folder(_no_images(tmp_path))
    (tmp_path / "hidden" / ".cache").mkdir(parents=True)
    rectangle(0, COLOURS[0]).save(tmp_path / "hidden" / ".cache" / "a.png")
    assert not is_image_folder(tmp_path / "hidden")
    rectangle(0, COLOURS[0]).save(tmp_path / "hidden" / "deep.PNG")
    assert is_image_folder(tmp_path / "hidden")


# The cache, the sha256 and the workers.


def test_cache_hit_and_sha256(tmp_path, home):
    root = class_folder(tmp_path / "d")
    first = load_image_folder(root)
    assert len(list((home / "cache" / "images").glob("*.pt"))) == 1
    second = load_image_folder(root)
    assert first.details["cache"] == "miss" and second.details["cache"] == "hit"
    assert (
        first.sha256 == second.sha256 and first.details["content_sha256"] == second.details["content_sha256"]
    )
    assert_same_splits(first, second)
    assert load_image_folder(root, image_size=16).sha256 != first.sha256  # another size
    (root / "notes.txt").write_text("ignored files do not count")
    assert load_image_folder(root).sha256 == first.sha256
    rectangle(99, COLOURS[1]).save(root / "a_cat" / "003.JPG")
    changed = load_image_folder(root)
    assert changed.sha256 != first.sha256 and changed.details["cache"] == "miss"


def test_damaged_cache_is_rebuilt(tmp_path, home):
    root = flat_folder(tmp_path / "d")
    first = load_image_folder(root)
    (cached,) = (home / "cache" / "images").glob("*.pt")
    cached.write_bytes(b"not a torch file")
    again = load_image_folder(root)
    assert again.details["cache"] == "miss" and torch.equal(all_images(first), all_images(again))


def test_workers_give_the_same_tensors(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "POOL_MIN_FILES", 0)
    root = class_folder(tmp_path / "d", per_class=12)
    (root / "a_cat" / "broken.png").write_bytes(b"nope")
    serial = load_image_folder(root, workers=1)
    monkeypatch.setenv("GENOPT_HOME", str(tmp_path / "other-home"))
    parallel = load_image_folder(root, workers=2)
    assert (serial.details["workers"], parallel.details["workers"]) == (1, 2)
    assert parallel.details["cache"] == "miss" and parallel.details["skipped_files"] == 1
    assert serial.sha256 == parallel.sha256
    assert_same_splits(serial, parallel)
