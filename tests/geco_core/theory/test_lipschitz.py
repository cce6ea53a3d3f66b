"""Tests for geco_core.theory.lipschitz: Appendix B and Prop. 6 (Eqs. 7–8, 21–25), and the
constrained fixed points (:func:`geco_core.theory.fixed_points.lipschitz_fixed_points`).

K_ab is checked against quadrature, Eq. 25 against the gradient of Eq. 23 (autograd).
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import geco_core.theory as theory
from data_builders.mixtures import mixture_of_lines
from geco_core.theory import lipschitz


def test_doctests():
    result = doctest.testmod(lipschitz, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_tile_distance_moments_against_quadrature():
    grid = theory.latent_grid(5)
    k = theory.tile_distance_moments(grid)
    m = 40  # midpoint rule, m² points per tile
    offsets = (np.stack(np.meshgrid(np.arange(m), np.arange(m)), -1).reshape(-1, 2) + 0.5) / m
    offsets = (offsets - 0.5) * grid.side
    for a, b in [(0, 0), (0, 1), (3, 17), (24, 0)]:
        za = grid.centres[a] + offsets
        zb = grid.centres[b] + offsets
        mean_sq = ((za[:, None] - zb[None]) ** 2).sum(-1).mean()
        quad = mean_sq * grid.side**4
        # the midpoint rule's discrete uniform has variance h²(1 − 1/m²)/12 per coordinate
        correction = grid.side**4 * 4 * grid.side**2 / (12 * m**2)
        assert np.isclose(quad + correction, k[a, b], rtol=1e-10)


def test_lipschitz_weights_structure():
    grid = theory.latent_grid(10)
    w = theory.lipschitz_weights(grid, radius=0.25, strength=2.0, lipschitz_constant=2.0)
    dist = np.linalg.norm(grid.centres[:, None] - grid.centres[None], axis=2)
    assert np.allclose(w, w.T) and np.all(np.diag(w) == 0) and np.all(w >= 0)
    assert np.all(w[dist >= 0.25] == 0) and np.all(w[(dist < 0.25) & (dist > 0)] > 0)
    expected = 2.0 * np.outer(grid.prior, grid.prior) / (4.0 * theory.tile_distance_moments(grid))
    assert np.allclose(w[dist < 0.25], expected[dist < 0.25] * (dist[dist < 0.25] > 0))
    # only strength / L² matters
    assert np.allclose(w, theory.lipschitz_weights(grid, 0.25, 0.5, 1.0))


def test_projection_is_the_stationary_point_of_eq_23():
    rng = np.random.default_rng(0)
    grid = theory.latent_grid(6)
    n, beta = 5, 0.05
    x = rng.uniform(-0.5, 0.5, size=(n, 2))
    p = rng.dirichlet(np.ones(grid.n_tiles), size=n)  # p_ia = π_a m_ia, rows sum to 1
    p[:, :3] = 0.0  # three tiles without posterior mass ("holes")
    p /= p.sum(1, keepdims=True)
    mass = p.sum(0)
    xbar = np.where(mass[:, None] > 0, p.T @ x / np.maximum(mass, 1e-300)[:, None], 0.0)
    w = theory.lipschitz_weights(grid, radius=0.4, strength=1e-4)
    psi = theory.lipschitz_projection(xbar, mass / n, w, beta)

    def objective(v: torch.Tensor) -> torch.Tensor:  # Eq. 23 (our prefactor, see docstring)
        xt, pt, wt = (torch.tensor(a) for a in (x, p, w))
        data = (pt * ((xt[:, None, :] - v[None]) ** 2).sum(-1)).sum() / (2 * n * beta)
        smooth = 0.25 * (wt * ((v[:, None, :] - v[None]) ** 2).sum(-1)).sum()
        return data + smooth

    v = torch.tensor(psi, requires_grad=True)
    objective(v).backward()
    v0 = torch.tensor(np.where(mass[:, None] > 0, xbar, 0.0), requires_grad=True)
    objective(v0).backward()
    assert v.grad.abs().max() < 1e-9 * max(1.0, v0.grad.abs().max().item())
    with torch.no_grad():
        best = objective(torch.tensor(psi)).item()
        for _ in range(10):
            assert objective(torch.tensor(psi + 1e-3 * rng.normal(size=psi.shape))) > best
    # holes take the W-weighted average of their neighbours
    lap_row = w[0] @ psi / w[0].sum()
    assert np.allclose(psi[0], lap_row, atol=1e-8)
    # no constraint: the projection is the identity
    assert np.allclose(theory.lipschitz_projection(xbar, mass / n, 0 * w, beta), xbar)


def test_stronger_constraints_shrink_neighbour_distances():
    grid = theory.latent_grid(12)
    x, _ = mixture_of_lines(n_lines=2, n_per_line=30, seed=0)
    # one projection: Tikhonov smoothing energy decreases strictly with the strength
    xbar = theory.init_reconstructions(grid, seed=0)
    marginal = np.random.default_rng(0).dirichlet(np.ones(grid.n_tiles))
    unit = theory.lipschitz_weights(grid, 0.2, 1.0)
    energies = []
    for s in (1e-5, 1e-4, 1e-3, 1e-2):
        psi = theory.lipschitz_projection(xbar, marginal, s * unit, 3e-3)
        energies.append((unit * ((psi[:, None] - psi[None]) ** 2).sum(-1)).sum())
    assert np.all(np.diff(energies) < 0)
    # at the fixed points of Eq. 20 + Eq. 25, local (r = 0.2) and global (r = 1.0)
    strengths = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    for radius in (0.2, 1.0):
        runs = theory.lipschitz_fixed_points(
            x, 3e-3, strengths, radius, grid, max_iter=200, progress=False
        )
        spread = [theory.neighbour_spread(r.psi[0], grid, 0.2) for r in runs]
        assert np.all(np.diff(spread) < 0), (radius, spread)
        assert spread[-1] < 0.5 * spread[0]


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (
            lambda: theory.lipschitz_weights(theory.latent_grid(4), 0.2, -1.0),
            ValueError,
            "strength",
        ),
        (lambda: theory.lipschitz_weights(theory.latent_grid(4), 0.0, 1.0), ValueError, "radius"),
        (
            lambda: theory.lipschitz_weights(theory.latent_grid(4), 0.2, 1.0, 0.0),
            ValueError,
            "lipschitz_constant",
        ),
        (lambda: theory.lipschitz_weights(theory.latent_grid(4), 0.2, None), TypeError, "strength"),
        (
            lambda: theory.lipschitz_projection(np.zeros((2, 2)), np.ones(2), np.eye(2), 0.0),
            ValueError,
            "beta",
        ),
        (
            lambda: theory.lipschitz_projection(np.zeros((2, 2)), -np.ones(2), np.eye(2), 1.0),
            ValueError,
            "marginal",
        ),
        (
            lambda: theory.lipschitz_projection(np.zeros((2, 2)), np.ones(2), np.eye(3), 1.0),
            ValueError,
            "weights",
        ),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
