"""CelebA (aligned and cropped faces), centre-cropped and resized to 64×64 with Pillow.

Supported on-disk layout: a folder — ``root``, ``$GECO_DATA``, each also with ``celeba/``,
then the user cache ``~/.cache/geco_book/celeba`` — holding

- ``list_eval_partition.txt`` (md5 ``d32c9cbf5e040fd4025c592c306e6668``; lines
  ``000001.jpg 0`` with 0 = train, 1 = valid, 2 = test), and
- ``img_align_celeba.zip`` (md5 ``00d2c5bc6d35e252742224ab0c1e8fcb``; 202,599 JPEGs of
  178×218 under ``img_align_celeba/``), or the extracted folder ``img_align_celeba/``
  (no official checksum: marked unverified in ``meta``).

This is the layout of the official Google Drive release (also what torchvision uses under
``root/celeba``). Downloads come from that Drive, md5-checked and atomic; when Drive refuses
(quota), the checksum fails cleanly and the message names the file.

Each image is centre-cropped to ``crop``×``crop`` (default 148, the face region; ``crop=None``
takes the largest centred square) and resized to ``size``×``size`` with Lanczos filtering.
Full splits built from verified official files are cached as uint8 arrays in
``~/.cache/geco_book/celeba/processed/`` (with a JSON provenance file), so the minutes of JPEG
decoding happen once. CelebA has no class labels: ``labels`` holds each image's id (the
number in its file name).

References:
    Liu et al. (2015), "Deep learning face attributes in the wild" (the paper's ref. [60]);
    Rezende & Viola (2018), §4.1, Figs. 6 and 9.

Usage, with the files in ``GECO_DATA`` or the cache (not run here: CelebA is 1.4 GB)::

    ds = load_celeba("valid", n=16, download=False)
    ds.x.shape  # torch.Size([16, 3, 64, 64])

Example:
    >>> load_celeba("validation")
    Traceback (most recent call last):
    ...
    ValueError: split must be one of ['test', 'train', 'valid'], got 'validation'
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from data_builders.core import (
    ImageDataset,
    cache_root,
    candidate_dirs,
    check_md5,
    download_allowed,
    download_file,
)
from geco_base.io import atomic_write, write_text

__all__ = ["CELEBA_FILES", "CELEBA_SPLITS", "load_celeba"]

#: file name → (Google Drive id, md5) of the official release.
CELEBA_FILES = {
    "img_align_celeba.zip": ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    "list_eval_partition.txt": (
        "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
        "d32c9cbf5e040fd4025c592c306e6668",
    ),
}
CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}
_GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
_ZIP, _PARTITION, _FOLDER = "img_align_celeba.zip", "list_eval_partition.txt", "img_align_celeba"


def _verified(path: Path, label: str, download: bool | None) -> str:
    """md5-check one official file; a corrupt copy in our cache is re-fetched when allowed."""
    drive_id, md5 = CELEBA_FILES[path.name]
    try:
        return check_md5(path, md5)
    except ValueError:
        if label != "cache" or not download_allowed(download)[0]:
            raise
        download_file(_GDRIVE.format(drive_id), path, md5)
        return md5


def _locate(root, download) -> tuple[Path, Path, dict]:
    """(partition file, zip or image folder, provenance) of the first complete layout."""
    dirs = candidate_dirs(("celeba",), root)
    for label, d in dirs:
        part, archive, folder = d / _PARTITION, d / _ZIP, d / _FOLDER
        if not part.is_file() or not (archive.is_file() or folder.is_dir()):
            continue
        files = {_PARTITION: {"path": str(part), "md5": _verified(part, label, download)}}
        if archive.is_file():
            files[_ZIP] = {"path": str(archive), "md5": _verified(archive, label, download)}
            images, verified = archive, True
        else:
            files[_FOLDER] = {"path": str(folder), "md5": None}
            images, verified = folder, False
        return part, images, {"found_in": label, "files": files, "verified": verified}
    allowed, why = download_allowed(download)
    if allowed:
        d = cache_root() / "celeba"
        for name, (drive_id, md5) in CELEBA_FILES.items():
            if not (d / name).is_file():
                download_file(_GDRIVE.format(drive_id), d / name, md5)
        files = {
            name: {"path": str(d / name), "md5": md5} for name, (_, md5) in CELEBA_FILES.items()
        }
        return (
            d / _PARTITION,
            d / _ZIP,
            {"found_in": f"downloaded ({why})", "files": files, "verified": True},
        )
    searched = "\n".join(f"  - {label}: {d}" for label, d in dirs)
    raise FileNotFoundError(
        f"CelebA not found. Searched for {_PARTITION} together with {_ZIP} or {_FOLDER}/ in:\n"
        f"{searched}\nDownloading: not done ({why}).\nTo provide data: get {_ZIP} and "
        f"{_PARTITION} from the CelebA Google Drive (see mmlab.ie.cuhk.edu.hk/projects/CelebA"
        ".html), put them in a folder and pass root=FOLDER or set GECO_DATA=FOLDER, or call "
        "with download=True on a machine with a network."
    )


def _read_partition(path: Path, split: str) -> list[str]:
    wanted, names = CELEBA_SPLITS[split], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<file>.jpg <0|1|2>', got {line!r}")
        if int(parts[1]) == wanted:
            names.append(parts[0])
    return names


def _crop_resize(src, crop: int | None, size: int, where: str) -> np.ndarray:
    """Centre-crop a square of side ``crop`` and resize to ``size``; uint8 ``[size, size, 3]``."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        c = min(w, h) if crop is None else crop
        if c > min(w, h):
            raise ValueError(f"crop={crop} exceeds the {w}x{h} image {where}")
        left, top = (w - c) // 2, (h - c) // 2
        im = im.crop((left, top, left + c, top + c))
        im = im.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def _build(images: Path, names: list[str], crop: int | None, size: int) -> np.ndarray:
    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    bar = tqdm(names, desc=f"CelebA {crop}->{size}px", leave=False)
    if images.is_file():
        with zipfile.ZipFile(images) as zf:
            members = {Path(m).name: m for m in zf.namelist() if m.endswith(".jpg")}
            for i, name in enumerate(bar):
                if name not in members:
                    raise ValueError(f"{images} has no image {name}")
                where = f"{images}:{members[name]}"
                out[i] = _crop_resize(io.BytesIO(zf.read(members[name])), crop, size, where)
    else:
        for i, name in enumerate(bar):
            out[i] = _crop_resize(images / name, crop, size, str(images / name))
    return out


def _save_atomic(path: Path, arr: np.ndarray, info: dict) -> None:
    with atomic_write(path) as f:
        np.save(f, arr)
    write_text(path.with_suffix(".json"), json.dumps(info, indent=1))


def load_celeba(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
    size: int = 64,
    crop: int | None = 148,
    cache: bool = True,
) -> ImageDataset:
    """CelebA faces ``[N, 3, size, size]`` in ``[0, 1]``; ``labels`` ``[N]`` are image ids.

    Args:
        split: ``"train"`` (162,770), ``"valid"`` (19,867) or ``"test"`` (19,962).
        seed: seeds the subset when ``n`` is given.
        root, download: see :mod:`data_builders.core`.
        n: a seeded random subset of ``n`` images of the split (not cached).
        size: output side in pixels (64 in the paper's figures).
        crop: side of the centred square cut before resizing; ``None`` = largest square.
        cache: read/write the processed full split in the user cache (verified sources only).

    Raises:
        ValueError: unknown split, bad sizes, bad checksum, malformed files.
        FileNotFoundError: nothing found and no download; the message lists what was searched.
    """
    if split not in CELEBA_SPLITS:
        raise ValueError(f"split must be one of {sorted(CELEBA_SPLITS)}, got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
        raise ValueError(f"crop must be a positive int or None, got {crop!r}")
    processed = cache_root() / "celeba" / "processed" / f"{split}-crop{crop}-{size}px.npy"
    meta: dict = {"dataset": "celeba", "seed": seed, "crop": crop, "size": size}
    if cache and n is None and processed.is_file() and processed.with_suffix(".json").is_file():
        arr = np.load(processed)
        meta.update(
            json.loads(processed.with_suffix(".json").read_text()), processed=str(processed)
        )
    else:
        part, images, record = _locate(root, download)
        names = _read_partition(part, split)
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(names):
                raise ValueError(f"n must be an int in [1, {len(names)}], got {n!r}")
            idx = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))[:n]
            names = [names[i] for i in idx.tolist()]
        arr = _build(images, names, crop, size)
        info = {**record, "names": names}
        if cache and n is None and record["verified"]:
            _save_atomic(processed, arr, info)
        meta.update(info)
    labels = torch.tensor([int(Path(s).stem) for s in meta["names"]], dtype=torch.long)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    meta["n"] = len(labels)
    return ImageDataset(x=x, labels=labels, source="celeba", name="celeba", split=split, meta=meta)
