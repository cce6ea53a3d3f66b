"""CIFAR-10 and CelebA loaders on small synthetic archives in the official on-disk formats.

The archives are built here (pickled batches in ``cifar-10-python.tar.gz``; JPEG/PNG images in
``img_align_celeba.zip`` plus ``list_eval_partition.txt``); their md5s replace the official
ones so the checksum path is exercised too. No network.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_builders import cifar as cifar_mod
from data_builders import core as core_mod
from data_builders import load_dataset
from data_builders.celeba import CELEBA_FILES
from data_builders.cifar import CIFAR10_MD5


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ CIFAR-10


def make_cifar(folder: Path, per_batch: int = 4, extracted: bool = False) -> dict:
    """A CIFAR-10 python archive with ``per_batch`` images per batch; returns the raw arrays."""
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
    folder.mkdir(parents=True, exist_ok=True)
    if extracted:
        (folder / "cifar-10-batches-py").mkdir()
        for name, d in batches.items():
            (folder / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(d, protocol=2))
    else:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, d in {**batches, "batches.meta": {b"label_names": []}}.items():
                blob = pickle.dumps(d, protocol=2)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return batches


def test_cifar_archive_pixels_labels_and_layout(monkeypatch, tmp_path):
    batches = make_cifar(tmp_path / "data" / "cifar10")
    archive = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    monkeypatch.setattr(cifar_mod, "CIFAR10_MD5", md5(archive))
    monkeypatch.setenv("GECO_DATA", str(tmp_path / "data"))
    train = load_dataset("cifar10", split="train", download=False)
    test = load_dataset("cifar10", split="test", download=False)
    assert train.x.shape == (20, 3, 32, 32) and test.x.shape == (4, 3, 32, 32)
    assert train.source == "cifar10" and train.meta["files"]["verified"]
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert (
        train.labels.tolist() == labels and test.labels.tolist() == batches["test_batch"][b"labels"]
    )
    pix = (train.x * 255).round().byte().numpy()
    # row layout: 1024 red values, then green, then blue, each 32x32 row-major
    for i, c, r, col in [(0, 0, 0, 0), (3, 1, 5, 7), (19, 2, 31, 30), (7, 0, 12, 3)]:
        assert pix[i, c, r, col] == data[i, c * 1024 + r * 32 + col]
    sub = load_dataset("cifar10", split="train", download=False, n=5, seed=1)
    assert torch.equal(sub.x, train.x[sub.meta["indices"]])


def test_cifar_extracted_folder_is_unverified(tmp_path, monkeypatch):
    from data_builders import cifar

    batches = make_cifar(tmp_path, extracted=True)
    with pytest.raises(ValueError, match="test_batch holds 4 images, an official CIFAR-10 batch "
                                         "10,000: not the CIFAR-10 data set"):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)
    monkeypatch.setattr(cifar, "BATCH_SIZE", 4)  # these fakes' batch size
    ds = load_dataset("cifar10", split="test", root=tmp_path, download=False)
    assert not ds.meta["files"]["verified"]
    assert ds.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar_bad_checksum_and_missing_data(tmp_path):
    make_cifar(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert str(archive) in str(e.value) and CIFAR10_MD5 in str(e.value)
    assert md5(archive) in str(e.value)
    (tmp_path / "nothing").mkdir()  # an existing folder without the data
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", root=tmp_path / "nothing", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nothing" / "cifar10") in msg and "GECO_DATA=FOLDER" in msg
    assert "download=False" in msg and "download=True" in msg


def test_cifar_pickle_with_code_is_refused(tmp_path):
    make_cifar(tmp_path, extracted=True)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": Evil()}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(evil))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)


# -------------------------------------------------------------------------------- CelebA

W, H = 20, 24  # small stand-ins for the 178x218 aligned faces


def make_celeba(folder: Path, zipped: bool = True, fmt: str = "PNG") -> dict[str, np.ndarray]:
    """Nine images 000001.jpg … 000009.jpg (split 0,0,0,0,1,1,2,2,2) in the official layout.

    ``fmt="PNG"`` stores lossless pixels under the .jpg names (Pillow reads by content), so the
    crop can be checked exactly."""
    rng = np.random.default_rng(1)
    images = {f"{i:06d}.jpg": rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for i in range(1, 10)}
    folder.mkdir(parents=True, exist_ok=True)
    splits = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{name} {s}\n" for name, s in zip(images, splits))
    )

    def encode(arr):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        return buf.getvalue()

    if zipped:
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
            for name, arr in images.items():
                zf.writestr(f"img_align_celeba/{name}", encode(arr))
    else:
        (folder / "img_align_celeba").mkdir()
        for name, arr in images.items():
            (folder / "img_align_celeba" / name).write_bytes(encode(arr))
    return images


def accept_celeba(monkeypatch, folder: Path) -> None:
    for name, (drive_id, _) in list(CELEBA_FILES.items()):
        if (folder / name).is_file():
            monkeypatch.setitem(CELEBA_FILES, name, (drive_id, md5(folder / name)))


def test_celeba_zip_split_crop_and_processed_cache(monkeypatch, tmp_path):
    images = make_celeba(tmp_path / "celeba")
    accept_celeba(monkeypatch, tmp_path / "celeba")
    kw = {"root": tmp_path, "download": False, "crop": 10, "size": 10}
    train = load_dataset("celeba", split="train", **kw)
    assert train.x.shape == (4, 3, 10, 10) and train.labels.tolist() == [1, 2, 3, 4]
    assert train.source == "celeba" and train.meta["verified"]
    top, left = (H - 10) // 2, (W - 10) // 2
    for k, name in enumerate(["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]):
        crop = images[name][top : top + 10, left : left + 10]  # exact: no resampling at 10->10
        got = (train.x[k] * 255).round().byte().permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got, crop)
    assert load_dataset("celeba", split="valid", **kw).labels.tolist() == [5, 6]
    assert load_dataset("celeba", split="test", **kw).labels.tolist() == [7, 8, 9]

    # the processed full split was cached; a second load reads it without the raw files
    processed = tmp_path / "xdg-cache" / "geco_book" / "celeba" / "processed"
    assert (processed / "train-crop10-10px.npy").is_file()
    (tmp_path / "celeba" / "img_align_celeba.zip").unlink()
    again = load_dataset("celeba", split="train", **kw)
    assert torch.equal(again.x, train.x) and torch.equal(again.labels, train.labels)
    assert again.meta["processed"] == str(processed / "train-crop10-10px.npy")
    assert not [p for p in processed.iterdir() if p.name.startswith(".")]  # no temporary file


def test_celeba_resize_jpeg_folder_and_subset(monkeypatch, tmp_path):
    make_celeba(tmp_path, zipped=False, fmt="JPEG")
    accept_celeba(monkeypatch, tmp_path)  # the partition file; the folder has no md5
    ds = load_dataset("celeba", split="train", root=tmp_path, download=False, size=8, crop=None)
    assert ds.x.shape == (4, 3, 8, 8) and not ds.meta["verified"]
    assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
    # unverified sources are not cached
    assert not (tmp_path / "xdg-cache" / "geco_book" / "celeba" / "processed").exists()
    sub = load_dataset(
        "celeba", split="train", root=tmp_path, download=False, size=8, crop=None, n=2, seed=3
    )
    assert len(sub) == 2 and set(sub.labels.tolist()) <= {1, 2, 3, 4}
    for k, image_id in enumerate(sub.labels.tolist()):  # same pixels as in the full split
        assert torch.equal(sub.x[k], ds.x[ds.labels.tolist().index(image_id)])
    with pytest.raises(ValueError, match="crop=30"):
        load_dataset("celeba", split="test", root=tmp_path, download=False, crop=30)
    with pytest.raises(ValueError, match="split"):
        load_dataset("celeba", split="validation", root=tmp_path, download=False)


def test_celeba_bad_checksum_and_missing_data(tmp_path):
    make_celeba(tmp_path)
    with pytest.raises(ValueError) as e:
        load_dataset("celeba", root=tmp_path, download=False)
    msg = str(e.value)
    assert "list_eval_partition.txt" in msg and CELEBA_FILES["list_eval_partition.txt"][1] in msg
    (tmp_path / "nothing").mkdir()  # an existing folder without the data
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("celeba", root=tmp_path / "nothing", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nothing" / "celeba") in msg and "img_align_celeba.zip" in msg
    assert "download=False" in msg and "GECO_DATA=FOLDER" in msg


# ----------------------------------------------------------------------------- downloads


def serve(monkeypatch, table: dict[str, bytes]) -> list[str]:
    """A fake ``urlopen`` serving ``table`` (URL substring → bytes); returns the request log."""
    log = []

    class Response(io.BytesIO):
        headers: dict = {}

    def fake_urlopen(req, timeout=None):
        log.append(req.full_url)
        for key, data in table.items():
            if key in req.full_url:
                return Response(data)
        raise OSError(f"unreachable: {req.full_url}")

    monkeypatch.setattr(core_mod, "urlopen", fake_urlopen)
    return log


def test_cifar_and_celeba_download_into_the_cache(monkeypatch, tmp_path):
    make_cifar(tmp_path / "server")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    monkeypatch.setattr(cifar_mod, "CIFAR10_MD5", md5(archive))
    make_celeba(tmp_path / "server")
    accept_celeba(monkeypatch, tmp_path / "server")
    table = {"cifar-10-python.tar.gz": archive.read_bytes()}
    for name, (drive_id, _) in CELEBA_FILES.items():
        table[f"id={drive_id}"] = (tmp_path / "server" / name).read_bytes()
    log = serve(monkeypatch, table)

    cifar = load_dataset("cifar10", split="test", download=True)
    cache = tmp_path / "xdg-cache" / "geco_book"
    assert (cache / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == table[
        "cifar-10-python.tar.gz"
    ]
    assert cifar.meta["files"]["verified"] and len(cifar) == 4
    assert log == [cifar_mod.CIFAR10_URL]

    faces = load_dataset("celeba", split="test", download=True, crop=None, size=6, cache=False)
    assert faces.labels.tolist() == [7, 8, 9] and faces.meta["verified"]
    assert sorted(p.name for p in (cache / "celeba").iterdir()) == sorted(CELEBA_FILES)
    assert all(url.startswith("https://drive.usercontent.google.com/") for url in log[1:])
