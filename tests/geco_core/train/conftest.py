"""Fixtures shared by the reliability tests of the training engine: a tiny config, an
isolated data environment and a fake "full" MNIST folder."""

from __future__ import annotations

import gzip
import hashlib
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from data_builders import mnist as mnist_mod
from geco_core.train import TrainConfig

TINY_MODEL = {"latent_dim": 2, "channels": [4, 8], "hidden": 16}


@pytest.fixture
def tiny():
    """``tiny(**overrides)``: an 8-step conv-VAE GECO run on 32 MNIST images, on the CPU."""

    def make(**kw) -> TrainConfig:
        base = dict(
            model="conv_vae", dataset="mnist", objective="geco", constraint="re", kappa=0.1,
            steps=8, batch_size=8, lr=1e-3, alpha=0.9, log_every=2, ckpt_every=2,
            device="cpu", progress=False, download=False, dataset_kwargs={"n": 32},
            model_kwargs=dict(TINY_MODEL),
        )  # fmt: skip
        base.update(kw)
        return TrainConfig(**base)

    return make


@pytest.fixture
def quiet():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vendored-MNIST fallback warning
        yield
    torch.set_num_threads(n)


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No $GECO_DATA, an empty user cache, no downloads: MNIST is the vendored 10k split."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("GECO_DATA", raising=False)
    monkeypatch.setenv("GECO_DOWNLOAD", "0")


def _write_idx(path: Path, arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    data = gzip.compress(raw, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture
def fake_full_mnist(monkeypatch, tmp_path):
    """A folder holding a "full" MNIST: a tiny fake train split (64 images; gzip files whose
    md5s are declared official for the test) and the official t10k files (the vendored ones),
    i.e. other training data than the vendored split's."""
    folder = tmp_path / "other-mnist"
    rng = np.random.default_rng(0)
    images = (rng.random((64, 28, 28)) < 0.2).astype(np.uint8) * 255
    for kind, arr in (("images-idx3", images), ("labels-idx1", np.arange(64) % 10)):
        name = f"train-{kind}-ubyte.gz"
        data = _write_idx(folder / name, arr)
        monkeypatch.setitem(mnist_mod.MNIST_MD5, name, hashlib.md5(data).hexdigest())
    for p in mnist_mod.VENDOR_DIR.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder
