"""Tests for geco_core.theory.tilings: Props. 1–3 (Eqs. 3–4, 13–17, Appendix C.2)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from data_builders.mixtures import tiny_glyphs
from geco_core.theory import tilings


def test_doctests():
    result = doctest.testmod(tilings, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_prop2_equiprobable_partition_has_average_kl_ln_n():
    uniform = theory.latent_grid(16)
    labels = theory.equiprobable_partition(uniform, 4, by="x")
    q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, 4), uniform.prior)
    assert np.isclose(theory.tile_average_kl(q, uniform.prior), np.log(4), atol=1e-12)
    normal = theory.latent_grid(48, 3.0, "normal")
    for n in (3, 5, 7):
        labels = theory.equiprobable_partition(normal, n, by="angle")
        masses = np.bincount(labels, weights=normal.prior)
        assert np.all(np.abs(masses - 1 / n) <= normal.prior.max())
        q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, n), normal.prior)
        kl = theory.tile_average_kl(q, normal.prior)
        assert np.isclose(kl, theory.partition_kl(masses), atol=1e-12)  # Appendix C.2
        assert abs(kl - np.log(n)) < 1e-3


def test_prop2_non_equiprobable_partitions_pay_more_kl():
    grid = theory.latent_grid(16)
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 4, grid.n_tiles)
        masses = np.bincount(labels, weights=grid.prior, minlength=4)
        q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, 4), grid.prior)
        kl = theory.tile_average_kl(q, grid.prior)
        assert np.isclose(kl, -np.log(masses).mean())
        assert kl > np.log(4)


def test_prop2_partition_is_a_fixed_point_of_eqs_3_and_4():
    grid = theory.latent_grid(12, 3.0, "normal")
    x = tiny_glyphs().reshape(5, -1)
    labels = theory.equiprobable_partition(grid, 5)
    q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, 5), grid.prior)
    q_next, g = theory.elbo_fixed_point_step(q, x, grid.prior, sigma=0.1)
    assert np.allclose(q_next, q, atol=1e-12)
    assert np.allclose(g, x[labels])  # Eq. 14
    assert theory.expected_reconstruction_error(q, x, g) == 0.0  # Eq. 15: σ → 0


def test_elbo_iteration_hardens_into_a_partition():
    grid = theory.latent_grid(24, 3.0, "normal")
    images = tiny_glyphs()
    q, sigmas = theory.elbo_fixed_point_iteration(images, grid, n_steps=40, seed=1)
    assert sigmas[-1] <= 1e-5 < sigmas[0]
    assert np.all((q > 1e-12).sum(axis=0) <= 1)  # each tile serves one data point
    assert np.allclose(q.sum(1), 1)
    assert theory.tile_average_kl(q, grid.prior) >= np.log(5) - 1e-9


def test_holes_and_their_prior_mass():
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    q = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert theory.hole_tiles(q).tolist() == [False, False, True, True]
    assert np.isclose(theory.uncovered_prior_mass(q, prior), 0.7)
    # a partition (Prop. 2) has no holes; the tolerance counts near-empty tiles too
    part = theory.restricted_prior_posteriors(
        theory.supports_from_labels(np.array([0, 0, 1, 1]), 2), prior
    )
    assert theory.uncovered_prior_mass(part, prior) == 0.0
    q_small = np.array([[1.0 - 1e-20, 1e-20, 0.0, 0.0]])
    assert theory.hole_tiles(q_small).tolist() == [False, False, True, True]
    assert theory.hole_tiles(q_small, tol=1e-15).tolist() == [False, True, True, True]
    # holes are where the optimal decoder (Eq. 4) is undefined
    g = theory.optimal_decoder(q, np.array([[0.0], [1.0]]))
    assert np.array_equal(np.isnan(g[:, 0]), theory.hole_tiles(q))


def test_elbo_iteration_leaves_spontaneous_holes():
    """Fig. 1's tiling at seed 0 (48², 150 steps) leaves ≈ 8% of the prior mass uncovered."""
    grid = theory.latent_grid(48, 3.0, "normal")
    q, _ = theory.elbo_fixed_point_iteration(tiny_glyphs(), grid, n_steps=150, seed=0)
    holes = theory.hole_tiles(q)
    assert np.all(q[:, holes] == 0.0)  # exactly zero: the likelihood underflowed
    assert 0.05 < theory.uncovered_prior_mass(q, grid.prior) < 0.12
    assert np.isnan(theory.optimal_decoder(q, tiny_glyphs())[holes]).all()


def test_prop3_overlap_reconstruction_is_the_inverse_prior_weighted_average():
    rng = np.random.default_rng(4)
    n_tiles, n = 30, 4
    prior = rng.dirichlet(np.ones(n_tiles))
    supports = rng.uniform(size=(n, n_tiles)) < 0.4
    supports[:, 0] = False  # a hole
    supports[:, 1] = True  # everybody overlaps here
    x = rng.normal(size=(n, 3, 3))
    closed = theory.overlap_reconstruction(supports, prior, x)
    general = theory.optimal_decoder(theory.restricted_prior_posteriors(supports, prior), x)
    assert np.isnan(closed[0]).all() and np.isnan(general[0]).all()
    assert np.array_equal(np.isnan(closed), np.isnan(general))
    assert np.allclose(closed, general, equal_nan=True)
    pi = supports @ prior
    expected = (x / pi[:, None, None]).sum(0) / (1 / pi).sum()
    assert np.allclose(closed[1], expected)


def test_hole_arguments():
    with pytest.raises(ValueError, match="q must"):
        theory.hole_tiles(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="tol"):
        theory.hole_tiles(np.ones((1, 2)), tol=-1.0)
    with pytest.raises(ValueError, match="prior"):
        theory.uncovered_prior_mass(np.ones((1, 2)), np.array([0.3, 0.3, 0.4]))


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: theory.equiprobable_partition(theory.latent_grid(4), 3, by="r"), ValueError, "by"),
        (lambda: theory.equiprobable_partition(theory.latent_grid(2), 5), ValueError, "n must"),
        (lambda: theory.supports_from_labels(np.array([0, 2]), 2), ValueError, "labels"),
        (
            lambda: theory.tile_average_kl(np.full((1, 2), 0.5), np.array([0.7, 0.7])),
            ValueError,
            "prior",
        ),
        (
            lambda: theory.elbo_fixed_point_step(
                np.eye(2), np.zeros((2, 1)), np.full(2, 0.5), sigma=0
            ),
            ValueError,
            "sigma",
        ),
        (
            lambda: theory.elbo_fixed_point_iteration(
                np.zeros((2, 1)), theory.latent_grid(4), n_steps=2.5
            ),
            TypeError,
            "n_steps",
        ),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
