"""Tests for geco_core.theory.fixed_points: Prop. 4's Eqs. 19–20 and Appendix A's iteration.

Every check compares against a closed form, the plain float64 reference of Eq. 20 or a
brute-force computation.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from data_builders.mixtures import two_blobs
from geco_core.theory import fixed_points

SEPARATED = np.array([[-0.3, -0.3], [0.3, -0.25], [0.0, 0.3], [-0.35, 0.2], [0.35, 0.3]])


def test_doctests():
    result = doctest.testmod(fixed_points, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("beta", [1e-5, 3e-4, 1e-2, 0.3])
def test_batched_map_matches_the_float64_reference(beta):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, size=(13, 2))
    grid = theory.latent_grid(8)
    psi0 = theory.init_reconstructions(grid, seed=1)
    # a non-uniform prior exercises the log π_b terms
    prior = rng.uniform(0.5, 1.5, grid.n_tiles)
    grid = theory.LatentGrid(
        grid.size, grid.half_width, grid.centres, prior / prior.sum(), grid.side
    )
    reference = theory.fixed_point_map(x, psi0, beta, grid.log_prior)
    for dtype, atol in (("float64", 1e-10), ("float32", 2e-5)):
        res = theory.fixed_point_sweep(
            x, [beta], grid, alpha=0.0, max_iter=1, psi0=psi0, dtype=dtype, progress=False
        )
        assert np.allclose(res.psi[0], reference, atol=atol), dtype


def test_underflow_fallbacks_match_the_reference():
    # β tiny and ψ far from one data point: whole rows and many columns underflow in float32
    x = np.array([[-0.45, -0.45], [0.4, 0.4], [0.41, 0.4]])
    grid = theory.latent_grid(6)
    psi0 = np.tile([[0.4, 0.38]], (grid.n_tiles, 1)) + 0.01 * grid.centres
    beta = 1e-4
    reference = theory.fixed_point_map(x, psi0, beta, grid.log_prior)
    for dtype in ("float32", "float64"):
        res = theory.fixed_point_sweep(
            x, [beta], grid, alpha=0.0, max_iter=1, psi0=psi0, dtype=dtype, progress=False
        )
        assert np.all(np.isfinite(res.psi))
        assert np.allclose(res.psi[0], reference, atol=1e-4), dtype


def test_smoothing_weights_the_old_iterate_and_the_stopping_rule():
    x = SEPARATED
    grid = theory.latent_grid(8)
    psi0 = theory.init_reconstructions(grid, seed=0)
    one = theory.fixed_point_sweep(
        x, [0.01], grid, alpha=0.9, max_iter=1, seed=0, dtype="float64", progress=False
    )
    expected = 0.9 * psi0 + 0.1 * theory.fixed_point_map(x, psi0, 0.01, grid.log_prior)
    assert np.allclose(one.psi[0], expected, atol=1e-12)
    assert np.isclose(one.last_step[0], np.linalg.norm(expected - psi0))
    res = theory.fixed_point_sweep(
        x, [1e-3, 0.02, 1.0], grid, max_iter=400, tol=1e-3, progress=False
    )
    assert np.all(res.n_iter <= 400)
    assert np.array_equal(res.converged, res.last_step < 1e-3)
    capped = theory.fixed_point_sweep(x, [0.02], grid, max_iter=3, progress=False)
    assert capped.n_iter[0] == 3 and not capped.converged[0]


def test_deterministic_given_the_seed():
    x, _ = two_blobs(n_per_blob=6, seed=0)
    grid = theory.latent_grid(10)
    betas = np.geomspace(1e-3, 0.3, 7)
    a = theory.fixed_point_sweep(x, betas, grid, seed=5, progress=False)
    b = theory.fixed_point_sweep(x, betas, grid, seed=5, progress=False)
    c = theory.fixed_point_sweep(x, betas, grid, seed=6, progress=False)
    assert np.array_equal(a.psi, b.psi) and np.array_equal(a.n_iter, b.n_iter)
    assert not np.array_equal(a.psi, c.psi)
    # batching (chunk size) does not change the numbers
    d = theory.fixed_point_sweep(x, betas, grid, seed=5, chunk=2, progress=False)
    assert np.array_equal(a.psi, d.psi)


def test_small_beta_leaves_fixed_points_on_data_points():
    grid = theory.latent_grid(16)
    res = theory.fixed_point_sweep(SEPARATED, [1e-5, 1e-4], grid, progress=False)
    assert res.converged.all()
    for psi in res.psi:  # Appendix A's stopping rule leaves ψ within ~tol/(1 − α) of the limit
        nearest = np.linalg.norm(psi[:, None] - SEPARATED[None], axis=2).min(axis=1)
        assert nearest.max() < 1e-2
    res = theory.fixed_point_sweep(
        SEPARATED, [1e-5, 1e-4], grid, max_iter=3000, tol=1e-10, dtype="float64", progress=False
    )
    assert res.converged.all()
    for psi in res.psi:  # iterated to convergence: exactly on the data points
        nearest = np.linalg.norm(psi[:, None] - SEPARATED[None], axis=2).min(axis=1)
        assert nearest.max() < 1e-8
        # every data point keeps some tiles (c_i of Eq. 19 rewards lonely points)
        owner = np.linalg.norm(psi[:, None] - SEPARATED[None], axis=2).argmin(axis=1)
        assert set(owner) == set(range(len(SEPARATED)))


def test_large_beta_collapses_to_the_data_mean():
    grid = theory.latent_grid(16)
    lam = theory.collapse_beta(SEPARATED)
    assert np.isclose(lam, np.linalg.eigvalsh(np.cov(SEPARATED.T, bias=True))[-1])
    res = theory.fixed_point_sweep(SEPARATED, [10 * lam, 100 * lam], grid, progress=False)
    assert res.converged.all()
    assert np.abs(res.psi - SEPARATED.mean(0)).max() < 2e-3
    # u(β) then equals the total data variance
    assert np.allclose(res.u(), ((SEPARATED - SEPARATED.mean(0)) ** 2).sum(1).mean(), rtol=1e-4)


def test_select_keeps_one_beta_with_its_trajectory():
    res = theory.fixed_point_sweep(
        SEPARATED, [1e-3, 0.1], theory.latent_grid(4), max_iter=3, record=True, progress=False
    )
    one = res.select(1)
    assert one.betas.tolist() == [0.1] and np.array_equal(one.psi[0], res.psi[1])
    assert np.array_equal(one.trajectory[:, 0], res.trajectory[:, 1])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], alpha=1.0), "alpha"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.0]), "betas"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], tol=0), "tol"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], dtype="half"), "dtype"),
        (lambda: theory.fixed_point_sweep(SEPARATED[:, :1], [0.1]), "dim"),
        (lambda: theory.fixed_point_sweep(np.array([[np.nan, 0.0]]), [0.1]), "x"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], chunk=0), "chunk"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], psi0=np.zeros((3, 2))), "psi0"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], lipschitz=np.eye(3)), "lipschitz"),
    ],
)
def test_bad_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"max_iter": 10.0}, "max_iter"), ({"alpha": "0.9"}, "alpha"), ({"tol": None}, "tol")],
)
def test_scalar_arguments_of_the_wrong_type_raise_type_error(kwargs, name):
    # the shared checks of geco_base.checks: a non-number is a TypeError, not a ValueError
    with pytest.raises(TypeError, match=name):
        theory.fixed_point_sweep(SEPARATED, [0.1], theory.latent_grid(4), **kwargs)
