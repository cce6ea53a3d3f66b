"""CIFAR-10 from the official "python version" archive (or its extracted folder).

Supported on-disk layouts, searched in the folders of :func:`data_builders.core.candidate_dirs`
(``root``, ``$GECO_DATA``, each also with ``cifar10/`` and ``cifar-10/``, then the user cache
``~/.cache/geco_book/cifar10``):

- ``cifar-10-python.tar.gz`` (md5 ``c58f30108f718f92721af3b95e74349a``), read in place;
- ``cifar-10-batches-py/`` (the extracted archive: ``data_batch_1`` … ``data_batch_5``,
  ``test_batch``); no official checksum exists for the extracted files, so ``meta`` marks them
  unverified.

Each batch is a pickled dict with ``b"data"`` (uint8 ``[10000, 3072]``, R then G then B planes
of 32×32, row-major) and ``b"labels"``. The pickles are read with an unpickler that only admits
numpy arrays, so a tampered file cannot run code.

References:
    Krizhevsky (2009), "Learning multiple layers of features from tiny images" (the paper's
    ref. [61]); Rezende & Viola (2018), §4.1, Fig. 5, Table 2.

Example (with the real archive, ``load_cifar10("test").x.shape`` is ``[10000, 3, 32, 32]``;
here a two-image stand-in in the extracted layout, accepted only once :data:`BATCH_SIZE` says
two images make a batch — an unchecksummed folder must hold the official batch size):
    >>> import pickle, tempfile
    >>> import numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "cifar-10-batches-py").mkdir()
    >>> for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    ...     batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}
    ...     _ = (root / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(batch, protocol=2))
    >>> load_cifar10("test", root=root, download=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../test_batch holds 2 images, an official CIFAR-10 batch 10,000: ...
    >>> import data_builders.cifar as cifar
    >>> official, cifar.BATCH_SIZE = cifar.BATCH_SIZE, 2
    >>> ds = load_cifar10("test", root=root, download=False)
    >>> cifar.BATCH_SIZE = official
    >>> ds.x.shape, ds.labels.tolist(), ds.meta["files"]["verified"]
    (torch.Size([2, 3, 32, 32]), [3, 5], False)
"""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from data_builders.core import (
    ImageDataset,
    cache_root,
    candidate_dirs,
    check_md5,
    download_allowed,
    download_file,
)

__all__ = ["CIFAR10_ARCHIVE", "CIFAR10_MD5", "CIFAR10_URL", "load_cifar10"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_FOLDER = "cifar-10-batches-py"
_SUBDIRS = ("cifar10", "cifar-10")
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: plain containers, bytes and numpy arrays only."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _parse_batch(fileobj, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _ArrayUnpickler(fileobj, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError, ValueError) as e:
        raise ValueError(f"{where} is not a CIFAR-10 python batch: {e}") from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(f"{where}: unexpected shapes data {data.shape}, labels {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{where}: labels out of range 0..9")
    return data, labels


def _read_archive(path: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    wanted = {f"{_FOLDER}/{b}": i for i, b in enumerate(_BATCHES[split])}
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:  # one sequential pass over the gzip stream
            if member.name in wanted and member.isfile():
                f = tar.extractfile(member)
                found[wanted[member.name]] = _parse_batch(f, f"{path}:{member.name}")
    missing = [m for m, i in wanted.items() if i not in found]
    if missing:
        raise ValueError(f"{path} lacks {missing}: not the CIFAR-10 python archive")
    return [found[i] for i in range(len(wanted))]


#: Images per official CIFAR-10 batch file. An extracted folder has no checksum, so each of its
#: batches must at least hold this many images to be served as ``source="cifar10"``.
BATCH_SIZE = 10_000


def _read_folder(folder: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for b in _BATCHES[split]:
        with open(folder / b, "rb") as f:
            data, labels = _parse_batch(f, str(folder / b))
        if len(labels) != BATCH_SIZE:
            raise ValueError(
                f"{folder / b} holds {len(labels):,} images, an official CIFAR-10 batch "
                f"{BATCH_SIZE:,}: not the CIFAR-10 data set (an extracted folder is not "
                f"checksummed); use the official archive {CIFAR10_ARCHIVE} (md5 {CIFAR10_MD5})"
            )
        out.append((data, labels))
    return out


def _locate(root, download) -> tuple[Path, dict]:
    dirs = candidate_dirs(_SUBDIRS, root)
    for label, d in dirs:
        archive, folder = d / CIFAR10_ARCHIVE, d / _FOLDER
        if archive.is_file():
            try:
                md5 = check_md5(archive, CIFAR10_MD5)
            except ValueError:
                if label != "cache" or not download_allowed(download)[0]:
                    raise
                download_file(CIFAR10_URL, archive, CIFAR10_MD5)
                md5 = CIFAR10_MD5
            return archive, {"path": str(archive), "md5": md5, "verified": True, "found_in": label}
        if folder.is_dir() and all((folder / b).is_file() for v in _BATCHES.values() for b in v):
            return folder, {"path": str(folder), "verified": False, "found_in": label}
    allowed, why = download_allowed(download)
    if allowed:
        archive = cache_root() / _SUBDIRS[0] / CIFAR10_ARCHIVE
        download_file(CIFAR10_URL, archive, CIFAR10_MD5)
        info = {"path": str(archive), "md5": CIFAR10_MD5, "verified": True}
        return archive, {**info, "found_in": f"downloaded ({why})"}
    searched = "\n".join(f"  - {label}: {d}" for label, d in dirs)
    raise FileNotFoundError(
        f"CIFAR-10 not found. Searched for {CIFAR10_ARCHIVE} or {_FOLDER}/ in:\n{searched}\n"
        f"Downloading: not done ({why}).\nTo provide data: download {CIFAR10_URL} (md5 "
        f"{CIFAR10_MD5}) into a folder and pass root=FOLDER or set GECO_DATA=FOLDER, or call "
        "with download=True on a machine with a network."
    )


def load_cifar10(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """CIFAR-10 images ``[N, 3, 32, 32]`` in ``[0, 1]``, class labels ``[N]``.

    Args:
        split: ``"train"`` (50,000) or ``"test"`` (10,000).
        seed: seeds the subset when ``n`` is given.
        root, download: see :mod:`data_builders.core`.
        n: keep a seeded random subset of ``n`` images (``meta["indices"]`` into the split).

    Raises:
        ValueError: unknown split, bad ``n``, bad checksum, or a malformed archive.
        FileNotFoundError: nothing found and no download; the message lists what was searched.
    """
    if split not in _BATCHES:
        raise ValueError(f"split must be one of {sorted(_BATCHES)}, got {split!r}")
    path, record = _locate(root, download)
    batches = _read_archive(path, split) if path.is_file() else _read_folder(path, split)
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    meta = {"dataset": "cifar10", "seed": seed, "files": record, "batches": _BATCHES[split]}
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(labels):
            raise ValueError(f"n must be an int in [1, {len(labels)}], got {n!r}")
        idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
        data, labels = data[idx.numpy()], labels[idx.numpy()]
        meta["indices"] = idx
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float().div_(255.0)
    meta["n"] = len(labels)
    return ImageDataset(
        x=x,
        labels=torch.from_numpy(labels),
        source="cifar10",
        name="cifar10",
        split=split,
        meta=meta,
    )
