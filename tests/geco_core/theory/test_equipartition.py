"""Tests for geco_core.theory.equipartition: Prop. 5 (Appendix C.6).

The solver is checked against its residual, an independent scipy maximisation, a root finder
on the unnormalised condition, and symmetric cases with known solutions.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.optimize

import geco_core.theory as theory
from geco_core.theory import equipartition


def test_doctests():
    result = doctest.testmod(equipartition, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _energies(seed: int, n_per: int = 4, m: int = 4) -> np.ndarray:
    """H_ia = ‖x_i − c_a‖²/2 for points scattered around m centres (an interior solution)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.5, 0.5, size=(m, 2))
    x = np.repeat(centres, n_per, axis=0) + 0.15 * rng.normal(size=(m * n_per, 2))
    return 0.5 * ((x[:, None] - centres[None]) ** 2).sum(-1)


def test_prop5_solver_residual_normalisation_and_direct_maximisation():
    rng = np.random.default_rng(2)
    H = _energies(2)
    beta = 0.02
    gamma, iterations = theory.equipartition_gamma(H, beta, tol=1e-12)
    assert iterations < 100_000
    assert np.all(gamma > 0) and np.isclose(gamma.sum(), 1.0)
    assert np.abs(theory.equipartition_residual(H, beta, gamma)).max() < 1e-9
    direct = theory.equipartition_gamma_direct(H, beta)
    assert np.allclose(gamma, direct, atol=1e-5)
    j_star = theory.equipartition_objective(H, beta, gamma)
    for _ in range(20):
        assert theory.equipartition_objective(H, beta, rng.dirichlet(np.ones(4))) <= j_star


def test_prop5_normalisation_is_implied():
    H = _energies(3, n_per=3, m=3)
    beta = 0.02
    log_k = -H / beta

    def condition(log_gamma):  # Σ_i K_ia / Σ_b K_ib γ_b − n, γ unconstrained
        z = np.exp(log_k) @ np.exp(log_gamma)
        return (np.exp(log_k) / z[:, None]).sum(0) - H.shape[0]

    root = scipy.optimize.root(condition, np.log(np.full(3, 1.0)), tol=1e-13)  # start: Σγ = 3
    assert root.success
    assert np.isclose(np.exp(root.x).sum(), 1.0, atol=1e-9)
    gamma, _ = theory.equipartition_gamma(H, beta, tol=1e-12)
    assert np.allclose(np.exp(root.x), gamma, atol=1e-6)


def test_prop5_symmetric_cases():
    # identical entries in every row (all elements look the same to each point): uniform γ
    rows = np.repeat(np.array([[0.1], [0.7], [0.3]]), 4, axis=1)
    gamma, _ = theory.equipartition_gamma(rows, 0.2)
    assert np.allclose(gamma, 0.25)
    assert np.abs(theory.equipartition_residual(rows, 0.2, gamma)).max() < 1e-9
    # permutation-symmetric energies: uniform γ
    circulant = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    gamma, _ = theory.equipartition_gamma(circulant, 0.7)
    assert np.allclose(gamma, 1 / 3)
    # clusters of sizes n_a, each point cheap only on its own element: γ_a = n_a / n
    sizes = [1, 2, 5]
    H = np.concatenate(
        [np.where(np.arange(3) == a, 0.0, 5.0)[None].repeat(s, 0) for a, s in enumerate(sizes)]
    )
    gamma, _ = theory.equipartition_gamma(H, 0.05, tol=1e-12)
    assert np.allclose(gamma, np.array(sizes) / 8, atol=1e-12)


def test_prop5_dominated_element_drops_out():
    # element 2 is never the cheapest: the maximiser puts γ_2 = 0 and the KKT form holds
    H = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 1.0], [0.2, 2.5, 1.0]])
    gamma, iterations = theory.equipartition_gamma(H, 0.2)
    assert iterations < 100_000 and gamma[2] < 1e-12
    residual = theory.equipartition_residual(H, 0.2, np.maximum(gamma, 1e-300))
    assert np.abs(residual[:2]).max() < 1e-8 and residual[2] < 0
    assert np.allclose(gamma, theory.equipartition_gamma_direct(H, 0.2), atol=1e-5)


def test_fixed_point_energies_weigh_clusters_by_prior_mass():
    x = np.array([[-0.2, 0.0], [0.2, 0.0]])
    grid = theory.latent_grid(4)
    psi = np.where(np.arange(grid.n_tiles)[:, None] < 12, x[0], x[1])  # 12 tiles : 4 tiles
    psi[0] += 1e-4  # within the clustering tolerance
    energies, centres, mass = theory.fixed_point_energies(x, psi, grid)
    assert np.allclose(mass, [0.75, 0.25]) and np.isclose(mass.sum(), 1.0)
    assert np.allclose(energies, 0.5 * ((x[:, None] - centres[None]) ** 2).sum(-1))


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: theory.equipartition_gamma(np.zeros((2, 2)), -1.0), ValueError, "beta"),
        (lambda: theory.equipartition_gamma(np.zeros(3), 1.0), ValueError, "hamiltonian"),
        (lambda: theory.equipartition_gamma(np.zeros((2, 2)), 1.0, max_iter=0), ValueError, "max"),
        (lambda: theory.equipartition_gamma(np.zeros((2, 2)), "1"), TypeError, "beta"),
        (
            lambda: theory.equipartition_residual(np.zeros((2, 2)), 1.0, np.array([1.0, 0.0])),
            ValueError,
            "gamma",
        ),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
