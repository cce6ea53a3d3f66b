"""Tests for geco_core.theory.lipschitz_bounds: Eq. 8 as a bound (KKT multipliers), Prop. 6."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from geco_core.theory import lipschitz_bounds


def test_doctests():
    result = doctest.testmod(lipschitz_bounds, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_bound_is_the_lipschitz_bound_on_the_unit_square():
    grid = theory.latent_grid(6)  # Appendix A's square, π = 1: π_a = h²
    b = theory.lipschitz_bound(grid, radius=0.4, lipschitz_constant=0.7)
    a, c = b.pairs[:, 0], b.pairs[:, 1]
    dist2 = ((grid.centres[a] - grid.centres[c]) ** 2).sum(1)
    assert np.all(a < c) and np.all(dist2 < 0.4**2)
    assert np.allclose(b.bound, 0.7 * np.sqrt(dist2 + grid.side**2 / 3))
    w = theory.lipschitz_weights(grid, 0.4, 1.0, 0.7)  # C_ab of Eq. 8
    assert b.pairs.shape[0] == int((np.triu(w, 1) > 0).sum())
    assert np.allclose(b.laplacian, (b.incidence.T @ b.incidence).toarray())


def _case(seed: int = 0, size: int = 6):
    rng = np.random.default_rng(seed)
    grid = theory.latent_grid(size)
    xbar = rng.uniform(-0.5, 0.5, size=(grid.n_tiles, 2))
    q = rng.dirichlet(np.ones(grid.n_tiles))
    return grid, xbar, q


@pytest.mark.parametrize("radius", [0.3, 1.0])
def test_projection_is_prop6_with_the_kkt_multipliers(radius):
    """P(x̄) satisfies every bound, and Eq. 25 with the recovered multipliers reproduces it."""
    grid, xbar, q = _case()
    beta = 0.05
    b = theory.lipschitz_bound(grid, radius, 0.5)
    assert theory.bound_violation(xbar, b) > 1.0  # x̄ violates the bounds a lot
    psi, state = theory.bound_projection(xbar, q, b, n_iter=4000)
    assert theory.bound_violation(psi, b) < 1e-4
    w = theory.bound_multipliers(b, state, q, beta)
    assert np.allclose(w, w.T) and np.all(w >= 0) and np.all(np.diag(w) == 0)
    slack = (np.linalg.norm(b.incidence @ psi, axis=1) / b.bound) < 0.99
    a, c = b.pairs[slack, 0], b.pairs[slack, 1]
    assert np.all(w[a, c] == 0)  # complementary slackness: no force on a slack pair
    assert (w > 0).sum() > 0
    replay = theory.lipschitz_projection(xbar, q, w, beta)
    assert np.abs(replay - psi).max() < 2e-3


def test_projection_minimises_the_weighted_distance_among_feasible_points():
    grid, xbar, q = _case(seed=1, size=5)
    b = theory.lipschitz_bound(grid, 0.5, 0.5)
    psi, _ = theory.bound_projection(xbar, q, b, n_iter=4000)

    def cost(p):
        return float((q[:, None] * (p - xbar) ** 2).sum())

    rng = np.random.default_rng(2)
    for _ in range(20):  # feasible competitors: shrink psi's spread, or blend with the mean
        t = rng.uniform(0.0, 1.0)
        other = t * psi + (1 - t) * psi.mean(0)  # convex combination: feasible (convex set)
        assert theory.bound_violation(other, b) <= theory.bound_violation(psi, b) + 1e-12
        assert cost(other) >= cost(psi) - 1e-6


def test_feasible_input_is_left_alone():
    grid, _, q = _case()
    b = theory.lipschitz_bound(grid, 0.4, 2.0)
    xbar = 0.5 * grid.centres  # a 0.5-Lipschitz map, well inside an L = 2 bound
    assert theory.bound_violation(xbar, b) < 0
    psi, (_, u) = theory.bound_projection(xbar, q, b, n_iter=50)
    assert np.allclose(psi, xbar, atol=1e-8) and np.all(u == 0)


def test_bound_fixed_points_respect_the_bound_and_report_convergence():
    x = np.array([[-0.3, 0.0], [-0.28, 0.02], [0.3, 0.0], [0.28, -0.02]])
    grid = theory.latent_grid(6)
    res = theory.lipschitz_bound_fixed_points(x, 1e-3, [0.2, 2.0], 1.0, grid, record=True)
    tight, loose = res
    assert tight.converged[0] and loose.converged[0]
    b = theory.lipschitz_bound(grid, 1.0, 0.2)
    assert theory.bound_violation(tight.psi[0], b) < 1e-2
    # an L = 0.2 map of the unit square spans at most ≈ 0.2·√2: it cannot reach both blobs
    assert np.ptp(tight.psi[0][:, 0]) < 0.3 < np.ptp(loose.psi[0][:, 0])
    assert tight.trajectory.shape == (tight.n_iter[0] + 1, 1, grid.n_tiles, 2)
    short = theory.lipschitz_bound_fixed_points(x, 1e-3, [0.2], 1.0, grid, max_iter=3)[0]
    assert not short.converged[0] and short.n_iter[0] == 3


def test_local_and_global_bounds_nearly_coincide():
    """A bound between tiles closer than r chains into almost the same global bound: along a
    path of side neighbours each step may use L·h·(1 + 1/3)^½, so distant tiles end within a
    factor ≈ 1.15 (in distance) of the global bound L·(D² + h²/3)^½."""
    x = np.array([[-0.3, -0.2], [0.3, 0.25], [0.0, 0.3], [-0.2, 0.2]])
    grid = theory.latent_grid(8)
    local = theory.lipschitz_bound_fixed_points(x, 2e-3, [0.5], 0.2, grid, max_iter=300)[0]
    glob = theory.lipschitz_bound(grid, 1.5, 0.5)
    assert theory.bound_violation(local.psi[0], glob) < 1.2**2 - 1


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: theory.lipschitz_bound(theory.latent_grid(4), 0.0), ValueError, "radius"),
        (
            lambda: theory.bound_projection(
                np.zeros((3, 2)), np.ones(3), theory.lipschitz_bound(theory.latent_grid(2), 0.6)
            ),
            ValueError,
            "rows",
        ),
        (
            lambda: theory.bound_projection(
                np.zeros((4, 2)), np.zeros(4), theory.lipschitz_bound(theory.latent_grid(2), 0.6)
            ),
            ValueError,
            "marginal",
        ),
        (
            lambda: theory.bound_violation(
                np.zeros((3, 2)), theory.lipschitz_bound(theory.latent_grid(2), 0.6)
            ),
            ValueError,
            "rows",
        ),
        (
            lambda: theory.lipschitz_bound_fixed_points(
                np.zeros((2, 2)), 1e-3, [0.0], 0.5, theory.latent_grid(2)
            ),
            ValueError,
            "lipschitz_constant",
        ),
        (
            lambda: theory.lipschitz_bound_fixed_points(
                np.zeros((2, 2)), 1e-3, [1.0], 0.5, theory.latent_grid(2), max_iter=1.5
            ),
            TypeError,
            "max_iter",
        ),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
