"""Data: the sources agree, splits and classes are as documented, bad files are refused clearly."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from genopt.data import load_dataset, to_model_range
from genopt.data.hub import ArrayUnpickler
from genopt.data.idx import IDX_NAMES, read_idx, write_idx
from genopt.errors import GenoptError

# Official MNIST: per-class counts of the 60k training set and the 10k test set, and their first labels.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_FIRST = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
MNIST_TEST_FIRST = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def _digest(dataset) -> str:
    import hashlib

    h = hashlib.sha256()
    for split in (dataset.train, dataset.validation, dataset.test):
        h.update(split.images.numpy().tobytes())
        h.update(split.labels.numpy().tobytes())
    return h.hexdigest()


def test_mnist_splits_are_the_official_sets_in_official_order(mnist):
    assert (len(mnist.train), len(mnist.validation), len(mnist.test)) == (50_000, 10_000, 10_000)
    assert mnist.image_shape == (1, 28, 28) and mnist.num_classes == 10
    assert mnist.train.images.dtype == torch.uint8 and mnist.train.labels.dtype == torch.int64
    official_train = mnist.train.class_counts(10) + mnist.validation.class_counts(10)
    assert official_train.tolist() == MNIST_TRAIN_COUNTS
    assert mnist.test.class_counts(10).tolist() == MNIST_TEST_COUNTS
    assert mnist.train.labels[:10].tolist() == MNIST_TRAIN_FIRST
    assert mnist.test.labels[:10].tolist() == MNIST_TEST_FIRST


def test_folder_source_and_wheel_source_give_identical_tensors(mnist, tmp_path):
    # The official files in torchvision's layout (written here from the wheel's arrays, compressed
    # like the official downloads) must load to exactly the same tensors and content hash.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_images = torch.cat([mnist.train.images, mnist.validation.images]).squeeze(1).numpy()
    train_labels = torch.cat([mnist.train.labels, mnist.validation.labels]).numpy()
    arrays = (train_images, train_labels, mnist.test.images.squeeze(1).numpy(), mnist.test.labels.numpy())
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(raw / f"{name}.gz", array)
    from_folder = load_dataset("mnist", data_dir=tmp_path)
    assert from_folder.source.startswith("folder")
    assert from_folder.sha256 == mnist.sha256
    assert _digest(from_folder) == _digest(mnist)


def test_default_search_prefers_a_torchvision_layout_folder(mnist, monkeypatch, tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = (
        mnist.train.images[:600].squeeze(1).numpy(),
        mnist.train.labels[:600].numpy(),
        mnist.test.images[:100].squeeze(1).numpy(),
        mnist.test.labels[:100].numpy(),
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(raw / name, array)
    monkeypatch.setenv("GENOPT_HOME", str(tmp_path))
    load_dataset.cache_clear()
    try:
        small = load_dataset("mnist")
    finally:
        load_dataset.cache_clear()
    assert small.source == f"folder {raw}"
    # A sixth of a small training set is held out for validation, the rest kept in order.
    assert (len(small.train), len(small.validation), len(small.test)) == (500, 100, 100)
    assert torch.equal(small.train.images, mnist.train.images[:500])


def test_images_scale_to_the_generator_range(mnist):
    x = to_model_range(mnist.train.images[:256])
    assert x.dtype == torch.float32 and x.min() == -1.0 and x.max() == 1.0


def test_fashion_mnist_from_debian_package():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    fashion = load_dataset("fashion-mnist")
    assert (len(fashion.train), len(fashion.validation), len(fashion.test)) == (50_000, 10_000, 10_000)
    full = fashion.train.class_counts(10) + fashion.validation.class_counts(10)
    assert full.tolist() == [6000] * 10
    assert fashion.test.class_counts(10).tolist() == [1000] * 10


def test_no_data_names_the_ways_to_provide_it(tmp_path):
    with pytest.raises(GenoptError, match="no data in"):
        load_dataset("mnist", data_dir=tmp_path)


def test_unknown_dataset_is_refused():
    with pytest.raises(GenoptError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x02" + b"\x00" * 8, "bad magic"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01\x02", "corrupt"),
        (b"\x00\x00\x08\x03" + b"\x00\x00", "truncated"),
    ],
)
def test_corrupt_idx_files_are_refused(tmp_path, content, message):
    path = tmp_path / "labels"
    path.write_bytes(content)
    with pytest.raises(GenoptError, match=message):
        read_idx(path)


def test_idx_round_trip_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a", "a.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)


def test_wheel_unpickler_refuses_anything_but_arrays():
    for evil in (os.system, eval):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            ArrayUnpickler(io.BytesIO(pickle.dumps(evil)), encoding="latin1").load()
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(ArrayUnpickler(io.BytesIO(pickle.dumps(array))).load(), array)


class _SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (a dropping firewall)."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never read or answered

    def close(self):
        for connection in self.accepted:
            connection.close()
        self.sock.close()


@pytest.mark.slow
def test_a_download_that_never_answers_is_abandoned_and_the_next_source_used(tmp_path):
    # torchvision's download goes through a proxy that accepts and never answers: genopt must give up
    # after GENOPT_DOWNLOAD_TIMEOUT (10 s by default) and fall through to Debian's Fashion-MNIST folder.
    import subprocess
    import sys
    import time

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    server = _SilentServer()
    proxy = f"http://127.0.0.1:{server.port}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    # The default bound (10 s): long enough for the child to import torchvision on a busy machine.
    env |= {"GENOPT_HOME": str(tmp_path)}
    env.pop("GENOPT_DOWNLOAD_TIMEOUT", None)
    env |= {"http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
    code = "from genopt.data import load_dataset; print(load_dataset('fashion-mnist').source)"
    start = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
    finally:
        server.close()
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert server.accepted, "the download never reached the silent server"
    assert "/usr/share/datasets/fashion-mnist" in result.stdout
    assert elapsed < 30, f"the download attempt was not bounded: {elapsed:.0f} s"
    assert not (tmp_path / "data" / "FashionMNIST" / "raw").exists(), "an abandoned download left files"


def test_download_timeout_must_be_a_number(monkeypatch):
    from genopt.data.download import download_timeout

    monkeypatch.setenv("GENOPT_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(GenoptError, match="GENOPT_DOWNLOAD_TIMEOUT must be a number of seconds"):
        download_timeout()
