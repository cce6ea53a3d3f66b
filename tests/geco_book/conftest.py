"""Fixtures of the book-side tests: tiny training configs and a throwaway run store."""

from __future__ import annotations

import pytest

from geco_book.store import RunStore
from geco_core.train import TrainConfig

TINY_MODEL = {"latent_dim": 2, "channels": [4, 8], "hidden": 16}


def _tiny_config(**kw) -> TrainConfig:
    """A conv VAE on Micro-MNIST that trains in well under a second."""
    base = dict(model="conv_vae", dataset="micro-mnist", steps=3, batch_size=7, lr=1e-3,
                alpha=0.9, progress=False, log_every=1, download=False,
                dataset_kwargs={"n": 7}, model_kwargs=dict(TINY_MODEL))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "records", tmp_path / "checkpoints")


@pytest.fixture
def tiny_config():
    """Factory of tiny training configs (keyword arguments override the defaults)."""
    return _tiny_config
