"""Shared pieces of the data builders: the dataset container, where data is searched, checksums
and atomic, verified downloads.

Where data lives
----------------
Every loader searches, in this order: an explicit ``root`` argument; the ``GECO_DATA``
environment variable; the user cache ``$XDG_CACHE_HOME/geco_book`` (``~/.cache/geco_book``
when ``XDG_CACHE_HOME`` is unset). Each of ``root`` and ``GECO_DATA`` is searched as given and
in a per-dataset sub-folder (``mnist/``, ``cifar10/``, ``celeba/``), so one ``GECO_DATA``
folder can hold every dataset. Downloads go to the user cache. A ``root`` or ``GECO_DATA``
that names no folder (a typo, a file, an unmounted disk) is an error
(:func:`check_data_dirs`), never a silent fall-back to other data.

When may a loader download?
---------------------------
``download=True`` always tries (and raises if it fails), ``download=False`` never does, and
``download=None`` (the default) follows ``$GECO_DOWNLOAD`` (``1``/``0``) when it is set and
otherwise downloads only when a network is there (a TCP probe of the mirror host — for MNIST
also of the package registry, :func:`registry_host` — capped at a few seconds and done at most
once per host and process). Set ``GECO_DOWNLOAD=0`` on offline CI.

References:
    Rezende & Viola (2018), "Taming VAEs", §4.1 and Appendix E.1 (the datasets).

Example:
    >>> import torch
    >>> ds = ImageDataset(x=torch.zeros(4, 1, 28, 28), labels=torch.arange(4), name="demo")
    >>> len(ds), ds.source
    (4, 'synthetic')
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.request import Request, urlopen

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geco_base.io import atomic_write

__all__ = [
    "DataFallbackWarning",
    "ImageDataset",
    "cache_root",
    "candidate_dirs",
    "check_data_dirs",
    "check_md5",
    "download_file",
    "download_allowed",
    "md5_file",
    "network_available",
    "registry_host",
    "sha256_file",
]

_CHUNK = 1 << 20


class DataFallbackWarning(UserWarning):
    """Issued (once per process) when a loader serves a smaller stand-in for the data asked for."""


@dataclass
class ImageDataset:
    """An in-memory image dataset with its labels and provenance.

    Attributes:
        x: target images, float ``[N, C, H, W]`` in ``[0, 1]`` (what a model reconstructs).
        labels: long tensor, ``[N]`` for single images, ``[N, k]`` for items made of several
            digits (column meaning in ``meta["label_columns"]``).
        context: conditioning images ``[N, C_ctx, H, W]`` for the conditional variants, else
            ``None``.
        source: what the pixels really come from, e.g. ``"mnist-60k"`` (the full official
            MNIST), ``"mnist-test-10k"`` (only the official 10k test split was available),
            ``"cifar10"``, ``"celeba"``, ``"synthetic"``.
        name: dataset name as given to :func:`data_builders.load_dataset`.
        split: ``"train"``, ``"test"`` (or ``"valid"`` for CelebA).
        meta: provenance: seed, sizes, files and checksums, how the items were built.
    """

    x: Tensor
    labels: Tensor
    context: Tensor | None = None
    source: str = "synthetic"
    name: str = ""
    split: str = "train"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or not self.x.is_floating_point():
            raise ValueError(f"x must be a float tensor [N, C, H, W], got {self._desc(self.x)}")
        n = self.x.shape[0]
        if self.labels.shape[:1] != (n,):
            raise ValueError(f"labels must have {n} rows, got shape {tuple(self.labels.shape)}")
        if self.context is not None:
            c = self.context
            if c.ndim != 4 or c.shape[0] != n or c.shape[2:] != self.x.shape[2:]:
                raise ValueError(
                    f"context must be [N={n}, C, {self.x.shape[2]}, {self.x.shape[3]}], "
                    f"got {self._desc(c)}"
                )

    @staticmethod
    def _desc(t: Tensor) -> str:
        return f"{t.dtype} {list(t.shape)}"

    def __len__(self) -> int:
        return self.x.shape[0]

    def fingerprint(self) -> dict:
        """What the data *are*, for a training run to record and a resume to compare: name,
        split, size, ``source`` and the sha256 of the tensors (``x``, ``context`` when
        present, ``labels``: dtype, shape and bytes), e.g. 0.1 s for the 60k MNIST images.

        Example:
            >>> ds = ImageDataset(x=torch.zeros(2, 1, 2, 2), labels=torch.zeros(2), name="d")
            >>> fp = ds.fingerprint(); fp["n"], fp["source"], len(fp["sha256"])
            (2, 'synthetic', 64)
        """
        h = hashlib.sha256()
        for key, t in (("x", self.x), ("context", self.context), ("labels", self.labels)):
            if t is None:
                continue
            arr = t.detach().cpu().contiguous().numpy()
            h.update(f"{key} {arr.dtype.str} {list(arr.shape)};".encode())
            h.update(memoryview(arr.reshape(-1)).cast("B"))
        return {
            "dataset": self.name,
            "split": self.split,
            "n": len(self),
            "source": self.source,
            "sha256": h.hexdigest(),
        }

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy whose tensors live on ``device`` (``meta`` is shared, not copied)."""
        ctx = None if self.context is None else self.context.to(device)
        return replace(self, x=self.x.to(device), labels=self.labels.to(device), context=ctx)

    def __repr__(self) -> str:
        ctx = "None" if self.context is None else list(self.context.shape)
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, source={self.source!r}, "
            f"x={list(self.x.shape)}, context={ctx}, labels={list(self.labels.shape)})"
        )


def cache_root() -> Path:
    """The user cache folder of the project: ``$XDG_CACHE_HOME/geco_book`` or
    ``~/.cache/geco_book`` (read at call time, so tests can redirect it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geco_book"


def check_data_dirs(
    root: str | os.PathLike | None, root_name: str = "root"
) -> tuple[Path | None, Path | None]:
    """``(root, $GECO_DATA)`` as paths (None when not given), each an existing folder.

    Raises:
        FileNotFoundError: ``root`` or ``$GECO_DATA`` names nothing on disk.
        ValueError: it names a file, not a folder.
        Both messages start with the argument (``root_name``, or ``GECO_DATA``) and say what to
        do; a path the user gave is never skipped in favour of other data.
    """
    out: list[Path | None] = []
    env = os.environ.get("GECO_DATA") or None
    for name, base, fix in (
        (root_name, root, f"pass the folder that holds the data files, or leave {root_name} unset"),
        ("GECO_DATA", env, "point $GECO_DATA at the folder that holds the data files, or unset it"),
    ):
        if base is None:
            out.append(None)
            continue
        path = Path(base).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{name}: the folder {str(path)!r} does not exist; {fix}")
        if not path.is_dir():
            raise ValueError(f"{name}: {str(path)!r} is a file, not a folder; {fix}")
        out.append(path)
    return out[0], out[1]


def candidate_dirs(
    subdirs: Sequence[str], root: str | os.PathLike | None
) -> list[tuple[str, Path]]:
    """Folders to search for one dataset, in order, each with a label for error messages.

    ``root`` and ``$GECO_DATA`` are searched as given and in each of ``subdirs``; the user cache
    only in ``subdirs[0]``. Both must be existing folders when given (:func:`check_data_dirs`).
    """
    out: list[tuple[str, Path]] = []
    for label, base in zip(("root", "$GECO_DATA"), check_data_dirs(root)):
        if base is None:
            continue
        out.append((label, base))
        out.extend((label, base / s) for s in subdirs)
    out.append(("cache", cache_root() / subdirs[0]))
    return out


def md5_file(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    return _digest(path, hashlib.md5())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    return _digest(path, hashlib.sha256())


def _digest(path: str | os.PathLike, h) -> str:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_md5(path: str | os.PathLike, expected: str) -> str:
    """Return the md5 of ``path``; raise ``ValueError`` naming the file (and both md5s) when it
    is not ``expected``."""
    actual = md5_file(path)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected md5 {expected}, got {actual}. The file is "
            "corrupt or not the official one: delete it (a loader with download=True fetches a "
            "fresh copy into the cache)."
        )
    return actual


@functools.cache
def network_available(host: str = "ossci-datasets.s3.amazonaws.com", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` seconds (DNS included;
    the probe runs in a daemon thread so a hanging resolver cannot block longer). Cached."""
    import socket

    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def registry_host() -> str:
    """The host of the Python package index pip uses: that of ``$PIP_INDEX_URL`` when set,
    else ``pypi.org`` (what :func:`download_allowed` probes for registry downloads)."""
    from urllib.parse import urlsplit

    url = os.environ.get("PIP_INDEX_URL", "").strip()
    return (urlsplit(url).hostname if url else None) or "pypi.org"


def download_allowed(
    download: bool | None, hosts: Sequence[str] | None = None
) -> tuple[bool, str]:
    """Resolve the ``download`` argument of the loaders to (allowed, reason) — see module doc.

    ``hosts``: what the automatic mode (``download=None`` and no ``$GECO_DOWNLOAD``) probes;
    downloading is allowed when any of them answers (default: the MNIST mirror host).
    """
    if download is not None:
        if not isinstance(download, bool):
            raise TypeError(f"download must be True, False or None, got {download!r}")
        return download, f"download={download}"
    env = os.environ.get("GECO_DOWNLOAD", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True, "$GECO_DOWNLOAD=1"
    if env in ("0", "false", "no", "off"):
        return False, "$GECO_DOWNLOAD=0"
    if env not in ("", "auto"):
        raise ValueError(
            f"GECO_DOWNLOAD: {env!r} is not 1/0 (true/false, yes/no, on/off) or auto"
        )
    for host in hosts or ("ossci-datasets.s3.amazonaws.com",):
        if network_available(host):
            return True, f"download=None and {host} is reachable"
    return False, "download=None and no network is reachable"


def _download_one(url: str, dest: Path, md5: str, timeout: float) -> None:
    with atomic_write(dest) as f:  # dest appears only if the whole body succeeds
        h = hashlib.md5()
        req = Request(url, headers={"User-Agent": "geco-book-data-builders"})
        with urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length") if resp.headers else None
            with tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        actual = h.hexdigest()
        if actual != md5:
            raise ValueError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected md5 {md5}, "
                f"got {actual}; nothing was written to {dest}"
            )


def download_file(
    urls: str | Sequence[str], dest: str | os.PathLike, md5: str, timeout: float = 60.0
) -> Path:
    """Download ``dest`` from the first of ``urls`` that serves it with the right md5.

    The bytes go to a temporary file beside ``dest`` (:func:`geco_base.io.atomic_write`) and
    are moved into place only after the checksum matched, so an interrupted or corrupt
    download never leaves a half-written ``dest``.

    Raises:
        ValueError: every mirror served bytes with the wrong md5 (message names the file and
            the expected and actual md5).
        OSError: no mirror could be reached (message lists each URL and its error).
    """
    dest = Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    errors: list[BaseException] = []
    for url in urls:
        try:
            _download_one(url, dest, md5, timeout)
            return dest
        except (OSError, ValueError) as e:
            errors.append(e)
    lines = "\n".join(f"  {u}: {e}" for u, e in zip(urls, errors))
    if errors and all(isinstance(e, ValueError) for e in errors):
        raise ValueError(f"could not download {dest.name} with md5 {md5}:\n{lines}")
    raise OSError(f"could not download {dest.name}:\n{lines}")
