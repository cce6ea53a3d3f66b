"""Tests for geco_core.theory.phase: u(β), its curvature, the critical β_c and the clusters."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from data_builders.mixtures import two_blobs
from geco_core.theory import phase


def test_doctests():
    result = doctest.testmod(phase, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_reconstruction_error_definition():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 2))
    psi = rng.normal(size=(9, 2))
    log_prior = np.log(rng.dirichlet(np.ones(9)))
    beta = 0.7
    p = theory.tile_responsibilities(x, psi, beta, log_prior)
    assert np.allclose(p.sum(1), 1)
    # E_{ρ q}‖x − g(z)‖² by explicit double loop
    brute = np.mean(
        [sum(p[i, b] * np.sum((x[i] - psi[b]) ** 2) for b in range(9)) for i in range(7)]
    )
    assert np.isclose(theory.reconstruction_error(x, psi, beta, log_prior), brute)


def test_collapse_threshold_is_the_top_covariance_eigenvalue():
    x, _ = two_blobs(n_per_blob=8, separation=0.4, std=0.03, seed=2)
    lam = theory.collapse_beta(x)
    grid = theory.latent_grid(12)
    res = theory.fixed_point_sweep(
        x,
        [0.9 * lam, 1.1 * lam],
        grid,
        alpha=0.0,
        max_iter=3000,
        tol=1e-9,
        dtype="float64",
        progress=False,
    )
    counts = theory.cluster_counts(res.psi)
    assert counts.tolist() == [2, 1]


def test_second_derivative_on_non_uniform_grids():
    rng = np.random.default_rng(0)
    b = np.sort(rng.uniform(0.01, 2.0, 25))
    assert np.allclose(theory.second_derivative(b, 1.5 * b**2 - b + 3), 3.0)
    b = np.geomspace(1e-3, 1.0, 30)
    assert np.allclose(theory.second_derivative(b, np.log(b) ** 2, wrt="log_beta"), 2.0)
    # smooth non-polynomial: second-order accurate in the interior
    b = np.geomspace(0.1, 1.0, 400)
    d2 = theory.second_derivative(b, np.sin(3 * b))
    assert np.allclose(d2[1:-1], -9 * np.sin(3 * b[1:-1]), atol=1e-3)


def test_critical_betas_are_the_highest_interior_maxima():
    b = np.geomspace(1e-3, 1.0, 80)
    u = np.minimum(b, 0.01) + 0.5 * np.maximum(b - 0.1, 0)  # kinks at 0.01 and 0.1
    crit = theory.critical_betas(b, u, k=2)
    assert np.allclose(np.sort(crit.beta_c), [0.01, 0.1], rtol=0.1)
    assert np.all(np.diff(crit.height) <= 0)
    assert crit.index.min() > 0 and crit.index.max() < b.size - 1


def test_detector_finds_the_merge_of_two_blobs_within_ten_percent_of_a_brute_force_scan():
    x, _ = two_blobs(n_per_blob=10, separation=0.5, std=0.02, seed=0)
    grid = theory.latent_grid(16)
    # detector: Appendix A's iteration on a coarse log grid, top maximum of |u''|
    betas = np.geomspace(5e-3, 0.5, 60)
    sweep = theory.fixed_point_sweep(x, betas, grid, progress=False)
    detected = theory.critical_betas(betas, sweep.u(), k=1).beta_c[0]
    # brute force: fine linear scan, iterate to convergence, count distinct fixed points;
    # the merge is the first β where the count drops from 2 to 1
    fine = np.linspace(0.04, 0.09, 101)
    scan = theory.fixed_point_sweep(
        x, fine, grid, alpha=0.0, max_iter=3000, tol=1e-8, dtype="float64", progress=False
    )
    counts = theory.cluster_counts(scan.psi)
    first_one = np.flatnonzero(counts == 1)[0]
    assert counts[first_one - 1] == 2 and np.all(counts[first_one:] == 1)
    merge = fine[first_one]
    assert abs(detected - merge) < 0.1 * merge
    # and both agree with the linear-stability threshold λ_max(Σ)
    assert abs(merge - theory.collapse_beta(x)) < 0.02 * merge


def test_cluster_helpers():
    psi = np.array([[0.0, 0.0], [0.004, 0.0], [0.008, 0.0], [0.5, 0.5]])
    centres, mass, labels = theory.cluster_fixed_points(psi, tol=0.005)
    assert mass.tolist() == [3.0, 1.0] and labels.tolist() == [0, 0, 0, 1]
    assert np.allclose(centres[0], [0.004, 0.0])
    # stragglers below min_fraction are not counted
    many = np.zeros((1, 200, 2))
    many[0, 0] = [0.3, 0.3]
    assert theory.cluster_counts(many).tolist() == [1]
    assert theory.cluster_counts(many, min_fraction=0).tolist() == [2]


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (
            lambda: theory.second_derivative(np.array([1.0, 2.0]), np.zeros(2)),
            ValueError,
            "3 betas",
        ),
        (
            lambda: theory.second_derivative(np.arange(1.0, 5), np.zeros(4), wrt="z"),
            ValueError,
            "wrt",
        ),
        (lambda: theory.critical_betas(np.arange(1.0, 5), np.zeros(4), k=0), ValueError, "k"),
        (lambda: theory.critical_betas(np.arange(1.0, 5), np.zeros(4), k=1.0), TypeError, "k"),
        (lambda: theory.cluster_counts(np.zeros((1, 3, 2)), min_fraction=1.0), ValueError, "min_"),
        (lambda: theory.cluster_fixed_points(np.zeros((3, 2)), tol=0.0), ValueError, "tol"),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
