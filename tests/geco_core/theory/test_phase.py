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


def test_location_counter_does_not_chain_a_thread():
    tol = 0.05
    # a thread of 41 points spaced tol/4 over a length of 10 tol: single linkage merges it
    thread = np.stack([np.linspace(0.0, 10 * tol, 41), np.zeros(41)], axis=1)
    assert theory.cluster_counts(thread[None], tol=tol, min_fraction=0).tolist() == [1]
    count = int(theory.count_fixed_point_locations(thread, tol)[0])
    assert 10 <= count <= 21  # complete linkage: between length/tol and 2·length/tol
    _, _, labels = theory.fixed_point_locations(thread, tol)
    for group in np.unique(labels):  # every group is at most about tol wide
        members = thread[labels == group]
        assert np.ptp(members[:, 0]) <= 1.07 * tol
    # tight clusters count once each, however many tiles they hold
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 1e-3, (100, 2)) for c in ([0, 0], [0.3, 0], [0, 0.3])])
    assert theory.count_fixed_point_locations(blobs, tol).tolist() == [3]
    assert theory.cluster_counts(blobs[None], tol=tol).tolist() == [3]
    # a thread plus a cluster: the thread counts as many, the cluster as one
    both = np.concatenate([thread, blobs[:100] + [1.0, 1.0]])
    assert theory.count_fixed_point_locations(both, tol).tolist() == [count + 1]
    # min_fraction drops small groups; the weights move the centres
    centres, mass, _ = theory.fixed_point_locations(blobs, tol, weights=np.ones(300) / 300)
    assert np.isclose(mass.sum(), 1.0) and centres.shape == (3, 2)
    assert theory.count_fixed_point_locations(both, tol, min_fraction=0.2).tolist() == [1]
    # [K, B, d] input: one count per β
    assert theory.count_fixed_point_locations(np.stack([blobs, blobs]), tol).tolist() == [3, 3]


def test_location_tolerance_is_relative_to_the_data_scale():
    x = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert np.isclose(theory.location_tolerance(x), 0.05)
    assert np.isclose(theory.location_tolerance(3 * x + 7, rel=0.1), 0.3)


def test_critical_beta_from_covariance_is_rose_s_lambda_max():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2)) * [0.3, 0.1]
    cov = np.cov(x.T, bias=True)
    assert np.isclose(theory.critical_beta_from_covariance(x), np.linalg.eigvalsh(cov)[-1])
    assert theory.collapse_beta(x) == theory.critical_beta_from_covariance(x)
    w = rng.uniform(size=50)
    mean = w @ x / w.sum()
    wcov = ((x - mean) * w[:, None]).T @ (x - mean) / w.sum()
    assert np.isclose(theory.critical_beta_from_covariance(x, w), np.linalg.eigvalsh(wcov)[-1])
    # T = 2β: two points at ±a merge at β_c = a² (T_c = 2a²)
    assert np.isclose(theory.critical_beta_from_covariance(np.array([[-0.3, 0], [0.3, 0]])), 0.09)


def test_merging_clusters_match_the_detected_transitions():
    """Three blobs, a tight pair and a far one: the pair merges first, at λ_max of its data."""
    from data_builders.mixtures import gaussian_blobs

    x, labels = gaussian_blobs([[-0.3, 0.1], [-0.3, -0.1], [0.3, 0.0]], n_per_blob=10, seed=0)
    grid = theory.latent_grid(16)
    betas = np.geomspace(2e-3, 0.3, 40)
    res = theory.fixed_point_sweep(x, betas, grid, max_iter=400, progress=False)
    tol = theory.location_tolerance(x)
    counts = theory.count_fixed_point_locations(res.psi, tol, min_fraction=0.01)
    pair = theory.critical_beta_from_covariance(x[labels < 2])
    first_two = betas[np.flatnonzero(counts <= 2)[0]]
    assert pair < first_two < 1.3 * pair  # the 3 → 2 merge happens just above λ_max(pair)
    k_below = np.flatnonzero(betas < 0.8 * pair)[-1]
    k_above = np.flatnonzero(counts <= 2)[0]
    below = theory.fixed_point_locations(res.psi[k_below], tol)[0][:3]
    above = theory.fixed_point_locations(res.psi[k_above], tol)[0][:2]
    merges = theory.merging_clusters(x, below, above)
    assert len(merges) == 1 and np.array_equal(merges[0], labels < 2)


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
        (lambda: theory.fixed_point_locations(np.zeros((3, 2)), tol=0.0), ValueError, "tol"),
        (
            lambda: theory.fixed_point_locations(np.zeros((3, 2)), 0.1, weights=np.ones(2)),
            ValueError,
            "weights",
        ),
        (lambda: theory.count_fixed_point_locations(np.zeros(3), 0.1), ValueError, "psi"),
        (lambda: theory.location_tolerance(np.zeros((3, 2)), rel=0), ValueError, "rel"),
        (
            lambda: theory.critical_beta_from_covariance(np.zeros((3, 2)), -np.ones(3)),
            ValueError,
            "weights",
        ),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
