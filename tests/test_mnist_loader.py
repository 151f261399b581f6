"""bnref.experiments.data: the MNIST loader on tiny IDX and npz files made here, and its
rejections."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bnref.experiments.data import MNIST_IDX_FILES, Split, load_mnist, read_idx

RNG = np.random.default_rng(5)
X_TRAIN = RNG.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
Y_TRAIN = RNG.integers(0, 10, size=6, dtype=np.uint8)
X_TEST = RNG.integers(0, 256, size=(2, 4, 3), dtype=np.uint8)
Y_TEST = np.array([9, 0], dtype=np.uint8)


def idx_bytes(array: NDArray[Any], code: int = 0x08) -> bytes:
    """The IDX encoding, written independently of the loader: magic 00 00 code ndim, the sizes
    as big-endian uint32, then the elements big-endian in C order."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx_dir(directory: Path, *, gz: bool) -> Path:
    arrays = {"x_train": X_TRAIN, "y_train": Y_TRAIN, "x_test": X_TEST, "y_test": Y_TEST}
    for key, name in MNIST_IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory


def check_split(split: Split) -> None:
    x_train, y_train = X_TRAIN.reshape(6, 12) / 255.0, Y_TRAIN
    assert np.array_equal(split.X_train, x_train)
    assert np.array_equal(split.y_train, y_train)
    assert np.array_equal(split.X_test, X_TEST.reshape(2, 12) / 255.0)
    assert np.array_equal(split.y_test, Y_TEST)
    assert split.num_classes == 10


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path: Path, gz: bool) -> None:
    check_split(load_mnist(write_idx_dir(tmp_path, gz=gz)))


def test_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=X_TRAIN, y_train=Y_TRAIN, x_test=X_TEST, y_test=Y_TEST)
    check_split(load_mnist(path))


@pytest.mark.parametrize("code", [0x08, 0x0B, 0x0E])
def test_read_idx_types_are_big_endian(tmp_path: Path, code: int) -> None:
    array = np.arange(-3, 9).reshape(3, 4) if code != 0x08 else np.arange(12).reshape(3, 4)
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(array, code))
    got = read_idx(path)
    assert got.shape == (3, 4)
    assert np.array_equal(got, array)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "bad magic number"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "size mismatch"),  # header cut short
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "size mismatch"),  # one byte missing
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "size mismatch"),  # one byte too many
    ],
)
def test_read_idx_rejects(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad-idx3-ubyte" in str(info.value)  # the message names the file


def test_read_idx_rejects_a_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"x\.gz.*not a valid gzip"):
        read_idx(path)


def test_load_mnist_rejects_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="path must be"):
        load_mnist(tmp_path / "nowhere.npz")


def test_load_mnist_rejects_a_directory_without_the_files(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, gz=False)
    (tmp_path / MNIST_IDX_FILES["y_test"]).unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_mismatched_idx_counts(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, gz=False)
    (tmp_path / MNIST_IDX_FILES["y_train"]).write_bytes(idx_bytes(Y_TRAIN[:5]))
    with pytest.raises(ValueError, match="size mismatch"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_garbage_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a valid npz"):
        load_mnist(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"y_test": None}, "missing"),
        ({"y_train": Y_TRAIN[:5]}, "size mismatch"),
        ({"x_test": X_TEST.reshape(2, 12)}, "size mismatch"),
        ({"x_train": X_TRAIN.astype(np.float32)}, "uint8 pixels"),
        ({"y_train": np.full(6, 10, dtype=np.uint8)}, "digits 0..9"),
    ],
)
def test_load_mnist_rejects_bad_npz(
    tmp_path: Path, change: dict[str, NDArray[Any] | None], match: str
) -> None:
    arrays: dict[str, NDArray[Any] | None] = {
        "x_train": X_TRAIN,
        "y_train": Y_TRAIN,
        "x_test": X_TEST,
        "y_test": Y_TEST,
    }
    arrays.update(change)
    kept: dict[str, Any] = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "mnist.npz"
    np.savez(path, **kept)
    with pytest.raises(ValueError, match=match) as info:
        load_mnist(path)
    assert "mnist.npz" in str(info.value)
