"""Tests for geco_core.theory.grid: the tiled latent space and Appendix A's initial ψ."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from geco_core.theory import grid as grid_module


def test_doctests():
    result = doctest.testmod(grid_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_grid_and_initialisation_follow_appendix_a():
    grid = theory.latent_grid(32)
    assert grid.n_tiles == 1024 and np.allclose(grid.prior, 1 / 1024)
    ticks = np.unique(grid.centres[:, 0])
    assert np.allclose(ticks, -0.5 + (np.arange(32) + 0.5) / 32)
    psi0 = theory.init_reconstructions(grid, noise=0.1, seed=3)
    offset = psi0 - grid.centres
    assert np.all(np.abs(offset) <= 0.1) and offset.std() > 0.05  # U[-0.1, 0.1]
    normal = theory.latent_grid(40, 3.0, "normal")
    assert np.isclose(normal.prior.sum(), 1.0)
    assert normal.prior.argmax() in np.flatnonzero(np.linalg.norm(normal.centres, axis=1) < 0.2)


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: theory.latent_grid(4, prior="cauchy"), ValueError, "prior"),
        (lambda: theory.latent_grid(0), ValueError, "size"),
        (lambda: theory.latent_grid(4, half_width=0.0), ValueError, "half_width"),
        (
            lambda: theory.init_reconstructions(theory.latent_grid(4), noise=-0.1),
            ValueError,
            "noise",
        ),
        (lambda: theory.init_reconstructions(theory.latent_grid(4), dim=3), ValueError, "dim"),
        # the shared checks (geco_base.checks) refuse non-numbers with a TypeError
        (lambda: theory.latent_grid(4.0), TypeError, "size"),
        (lambda: theory.latent_grid(4, half_width="1"), TypeError, "half_width"),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
