"""Fixtures of the objectives' tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


def _batch(seed: int = 0, shape=(4, 1, 5, 5), requires_grad: bool = True):
    """A float64 batch ``x`` and a model output (``x_mean``, ``kl``) drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x_mean = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)
    kl = (torch.rand(shape[0], generator=g, dtype=torch.float64) * 5).requires_grad_(requires_grad)
    return x, SimpleNamespace(x_mean=x_mean, kl=kl)


@pytest.fixture
def batch():
    """:func:`_batch`: ``batch(seed, shape, requires_grad)`` → ``(x, out)``."""
    return _batch
