"""Tests for geco_core.theory (Props. 1–6, Appendices A–C) and geco_core.theory_plots.

Every check compares against a closed form, an independent computation (a plain float64
reference, scipy.optimize, autograd, quadrature) or a brute-force scan.
"""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import geco_core.theory as theory  # noqa: E402
import geco_core.theory_plots as theory_plots  # noqa: E402
from data_builders.mixtures import mixture_of_lines, tiny_glyphs, two_blobs  # noqa: E402

SEPARATED = np.array([[-0.3, -0.3], [0.3, -0.25], [0.0, 0.3], [-0.35, 0.2], [0.35, 0.3]])


def test_doctests():
    for module in (theory, theory_plots):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
    plt.close("all")


# ------------------------------------------------------------------------------------------
# Appendix A set-up and the batched Eq. 20
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# u'' and the critical temperatures
# ------------------------------------------------------------------------------------------


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
    assert np.allclose(
        theory.representative_betas(np.array([0.01, 0.1]), 1e-3, 1.0), np.sqrt([1e-5, 1e-3, 0.1])
    )


# ------------------------------------------------------------------------------------------
# Props. 1–3
# ------------------------------------------------------------------------------------------


def test_prop2_equiprobable_partition_has_average_kl_ln_n():
    uniform = theory.latent_grid(16)
    labels = theory.equiprobable_partition(uniform, 4, by="x")
    q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, 4), uniform.prior)
    assert np.isclose(theory.average_kl(q, uniform.prior), np.log(4), atol=1e-12)
    normal = theory.latent_grid(48, 3.0, "normal")
    for n in (3, 5, 7):
        labels = theory.equiprobable_partition(normal, n, by="angle")
        masses = np.bincount(labels, weights=normal.prior)
        assert np.all(np.abs(masses - 1 / n) <= normal.prior.max())
        q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, n), normal.prior)
        kl = theory.average_kl(q, normal.prior)
        assert np.isclose(kl, theory.partition_kl(masses), atol=1e-12)  # Appendix C.2
        assert abs(kl - np.log(n)) < 1e-3


def test_prop2_non_equiprobable_partitions_pay_more_kl():
    grid = theory.latent_grid(16)
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 4, grid.n_tiles)
        masses = np.bincount(labels, weights=grid.prior, minlength=4)
        q = theory.restricted_prior_posteriors(theory.supports_from_labels(labels, 4), grid.prior)
        kl = theory.average_kl(q, grid.prior)
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
    assert theory.average_kl(q, grid.prior) >= np.log(5) - 1e-9


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


def test_fig1_example():
    ex = theory.fig1_tiling_example(tiny_glyphs(), grid_size=32, n_steps=20)
    assert abs(ex.kl_equiprobable - np.log(5)) < 0.01
    assert ex.kl_learned > ex.kl_equiprobable
    assert ex.overlap.any() and ex.hole.any()
    assert np.isnan(ex.decoded[ex.hole]).all()
    i, j = ex.overlap_pair
    pi = ex.supports @ ex.grid.prior
    tile = np.flatnonzero(ex.overlap)[0]
    blend = (ex.images[i] / pi[i] + ex.images[j] / pi[j]) / (1 / pi[i] + 1 / pi[j])
    assert np.allclose(ex.decoded[tile], blend)


# ------------------------------------------------------------------------------------------
# Prop. 5
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# Appendix B, Prop. 6
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# Profiles, arguments, figures
# ------------------------------------------------------------------------------------------


def test_profiles():
    for name in ("smoke", "cpu", "gpu"):
        cfg = theory.theory_profile(name)
        assert cfg["betas"].size == cfg["n_betas"]
        assert np.isclose(cfg["betas"][0], cfg["beta_min"])
    cpu = theory.theory_profile("cpu")
    assert (cpu["grid_size"], cpu["n_betas"], cpu["max_iter"], cpu["alpha"], cpu["tol"]) == (
        32,
        100,
        400,
        0.9,
        1e-3,
    )  # Appendix A, 100 β values
    assert theory.theory_profile("smoke", n_betas=None)["n_betas"] == 16
    assert theory.theory_profile("smoke", n_betas=7)["betas"].size == 7
    with pytest.raises(ValueError, match="'smoke', 'cpu', 'gpu'"):
        theory.theory_profile("fast")
    with pytest.raises(ValueError, match="n_bets"):
        theory.theory_profile("cpu", n_bets=3)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], alpha=1.0), "alpha"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.0]), "betas"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], tol=0), "tol"),
        (lambda: theory.fixed_point_sweep(SEPARATED, [0.1], dtype="half"), "dtype"),
        (lambda: theory.fixed_point_sweep(SEPARATED[:, :1], [0.1]), "dim"),
        (lambda: theory.fixed_point_sweep(np.array([[np.nan, 0.0]]), [0.1]), "x"),
        (lambda: theory.latent_grid(4, prior="cauchy"), "prior"),
        (lambda: theory.second_derivative(np.array([1.0, 2.0]), np.zeros(2)), "3 betas"),
        (lambda: theory.second_derivative(np.arange(1.0, 5), np.zeros(4), wrt="z"), "wrt"),
        (lambda: theory.equiprobable_partition(theory.latent_grid(4), 3, by="r"), "by"),
        (lambda: theory.lipschitz_weights(theory.latent_grid(4), 0.2, -1.0), "strength"),
        (lambda: theory.equipartition_gamma(np.zeros((2, 2)), -1.0), "beta"),
    ],
)
def test_bad_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_figure_functions_return_figures():
    x, _ = two_blobs(n_per_blob=5, seed=0)
    grid = theory.latent_grid(8)
    betas = np.geomspace(1e-3, 1.0, 12)
    sweep = theory.fixed_point_sweep(x, betas, grid, max_iter=40, progress=False)
    u = sweep.u()
    crit = theory.critical_betas(betas, u)
    panels = theory.fixed_point_sweep(
        x, [1e-3, 0.2, 0.5], grid, max_iter=20, record=True, progress=False
    )
    assert panels.trajectory.shape == (21, 3, grid.n_tiles, 2)
    fig = theory_plots.plot_fig2(sweep, u, crit, panels)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 + 2
    fig = theory_plots.plot_phase_transitions(betas, u, crit)
    assert len(fig.axes) == 2
    ex = theory.fig1_tiling_example(tiny_glyphs(), grid_size=16, n_steps=5)
    assert len(theory_plots.plot_tiling(ex).axes) == 2 + 5 + 3
    fig = theory_plots.plot_equipartition(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), np.array([0.4, 0.6]), np.zeros(2)
    )
    assert len(fig.axes) == 1
    runs = theory.lipschitz_fixed_points(
        x, 3e-3, [0.0, 1e-3], 0.2, grid, max_iter=5, record=True, progress=False
    )
    fig = theory_plots.plot_lipschitz_panels(
        x, {"a": runs, "b": runs[:1]}, {"a": ["0", "1e-3"], "b": ["0"]}
    )
    assert len(fig.axes) == 3
    plt.close("all")


def test_prop5_dominated_element_drops_out():
    # element 2 is never the cheapest: the maximiser puts γ_2 = 0 and the KKT form holds
    H = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 1.0], [0.2, 2.5, 1.0]])
    gamma, iterations = theory.equipartition_gamma(H, 0.2)
    assert iterations < 100_000 and gamma[2] < 1e-12
    residual = theory.equipartition_residual(H, 0.2, np.maximum(gamma, 1e-300))
    assert np.abs(residual[:2]).max() < 1e-8 and residual[2] < 0
    assert np.allclose(gamma, theory.equipartition_gamma_direct(H, 0.2), atol=1e-5)
