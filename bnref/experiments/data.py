"""The data sets of the experiments: scikit-learn's digits and two moons, and a local MNIST.

Nothing is downloaded. `digits_split`, `two_moons` and `course_moons` use scikit-learn's bundled
digits (1797 images of 8x8 pixels with values 0..16) and its moons generator. `load_mnist` reads a
copy of MNIST the user already has, in one of the two usual forms:

* an ``.npz`` file with the arrays ``x_train`` (N, 28, 28), ``y_train`` (N,), ``x_test``,
  ``y_test``, as Keras's ``mnist.npz`` (https://keras.io/api/datasets/mnist/);
* a directory with the four IDX files of http://yann.lecun.com/exdb/mnist/ --
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` -- each possibly gzipped (``.gz`` appended).

IDX layout (the page above): a 4-byte magic number, bytes 0 and 1 zero, byte 2 the element
type (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E
float64), byte 3 the number of dimensions d; then d sizes as 4-byte big-endian integers; then
the elements in C order, big-endian. MNIST's images have magic 0x00000803 and its labels
0x00000801. A file that breaks any of these rules raises a ValueError naming it.
"""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_digits, make_moons

from reference._validation import Float64Array, check_int

IntArray = NDArray[np.int64]

# IDX element types: byte 2 of the magic number -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
MNIST_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MNIST_KEYS = tuple(MNIST_IDX_FILES)


@dataclass(frozen=True)
class Split:
    """Examples along axis 0: X_train (n_train, features) in [0, 1], y_train (n_train,) class
    indices, and the same for the test set."""

    X_train: Float64Array
    y_train: IntArray
    X_test: Float64Array
    y_test: IntArray

    @property
    def num_classes(self) -> int:
        """1 + the largest label of either set."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _shuffled_split(X: Float64Array, y: IntArray, n_train: int, seed: int, what: str) -> Split:
    """The first n_train examples of a seeded permutation for training, the rest for testing."""
    n_train = check_int(n_train, "n_train", minimum=1)
    if n_train >= len(X):
        raise ValueError(
            f"n_train must be smaller than the {len(X)} examples of {what}, got {n_train}"
        )
    order = np.random.default_rng(check_int(seed, "seed", minimum=0)).permutation(len(X))
    train, test = order[:n_train], order[n_train:]
    return Split(X[train], y[train], X[test], y[test])


def digits_split(n_train: int, seed: int) -> Split:
    """scikit-learn's 1797 digits as X = pixels / 16 in [0, 1] (64 features), shuffled by
    `seed`; n_train examples for training, the other 1797 - n_train for testing."""
    digits = load_digits()
    X = np.asarray(digits.data, dtype=np.float64) / 16.0  # pixel values are 0..16
    y = np.asarray(digits.target, dtype=np.int64)
    return _shuffled_split(X, y, n_train, seed, "the digits")


def two_moons(seed: int, n_samples: int = 300, noise: float = 0.2) -> tuple[Float64Array, IntArray]:
    """``sklearn.datasets.make_moons(n_samples, noise=noise, random_state=seed)``: X (n, 2),
    y (n,) in {0, 1}."""
    X, y = make_moons(
        n_samples=check_int(n_samples, "n_samples", minimum=2),
        noise=noise,
        random_state=check_int(seed, "seed", minimum=0),
    )
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def course_moons(seed: int = 0) -> tuple[Float64Array, IntArray]:
    """The course's two moons: its ``load_dataset`` calls ``np.random.seed(3)`` and then
    ``sklearn.datasets.make_moons(n_samples=300, noise=.2)``, which draws from NumPy's global
    RandomState. Here the same draws come from a private ``np.random.RandomState(3 + seed)``
    (the global one is left alone): seed 0 gives the course's 300 points exactly. X (300, 2),
    y (300,) in {0, 1}."""
    state = np.random.RandomState(3 + check_int(seed, "seed", minimum=0))
    X, y = make_moons(n_samples=300, noise=0.2, random_state=state)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def _read_bytes(path: Path) -> bytes:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data: bytes = handle.read()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a valid gzip file: {exc}") from exc
    return data


def read_idx(path: str | Path) -> NDArray[Any]:
    """The array stored in the IDX file `path` (gzipped if its name ends in .gz), in the
    file's element type; see the module docstring for the layout that is checked."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(
            f"{str(path)!r} is not an IDX file: bad magic number {data[:4].hex() or '(empty)'}, "
            "expected bytes 00 00, a type code in "
            f"{[hex(code) for code in IDX_DTYPES]} and the number of dimensions"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{str(path)!r} has a size mismatch: {len(data)} bytes cannot hold the header of "
            f"{ndim} dimension sizes ({header} bytes)"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{str(path)!r} has a size mismatch: the header announces shape {shape} of "
            f"{dtype.name} ({expected} bytes with the header), the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"{str(directory)!r} must hold the MNIST IDX file {name} (or {name}.gz)")


def _read_npz(path: Path) -> dict[str, NDArray[Any]]:
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it instead
        raise ValueError(f"{str(path)!r} is not a valid npz file: it is not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in MNIST_KEYS if key not in archive.files]
            if missing:
                raise ValueError(
                    f"{str(path)!r} must hold the arrays {list(MNIST_KEYS)}, missing {missing}"
                )
            return {key: archive[key] for key in MNIST_KEYS}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a valid npz file: {exc}") from exc


def _checked_part(arrays: dict[str, NDArray[Any]], part: str, source: Path) -> tuple[Any, Any]:
    x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"{str(source)!r} has a size mismatch: x_{part} must have shape (N, rows, columns) "
            f"and y_{part} shape (N,) with the same N >= 1, got {x.shape} and {y.shape}"
        )
    if x.dtype != np.uint8 or y.dtype.kind not in "iu":
        raise ValueError(
            f"{str(source)!r}: x_{part} must hold uint8 pixels and y_{part} integer labels, "
            f"got {x.dtype} and {y.dtype}"
        )
    if y.min() < 0 or y.max() > 9:
        raise ValueError(
            f"{str(source)!r}: y_{part} must hold digits 0..9, got values in [{y.min()}, {y.max()}]"
        )
    return x.reshape(len(x), -1).astype(np.float64) / 255.0, y.astype(np.int64)


def _to_split(arrays: dict[str, NDArray[Any]], source: Path) -> Split:
    x_train, y_train = _checked_part(arrays, "train", source)
    x_test, y_test = _checked_part(arrays, "test", source)
    return Split(x_train, y_train, x_test, y_test)


def load_mnist(path: str | Path) -> Split:
    """MNIST from the local `path` (an .npz file or a directory of IDX files, see the module
    docstring) as pixels / 255 in [0, 1], flattened to (N, rows * columns), and labels 0..9."""
    source = Path(path)
    if source.is_dir():
        arrays = {key: read_idx(_find_idx(source, name)) for key, name in MNIST_IDX_FILES.items()}
    elif source.is_file():
        arrays = _read_npz(source)
    else:
        raise ValueError(
            f"path must be an .npz file or a directory of MNIST IDX files, got {str(path)!r}, "
            "which does not exist"
        )
    return _to_split(arrays, source)
