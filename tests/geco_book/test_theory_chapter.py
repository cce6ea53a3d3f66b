"""Tests for geco_book.chapters.theory: chapter 01's settings, its Fig. 1 example and tables."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from data_builders.mixtures import gaussian_blobs, tiny_glyphs, two_blobs
from geco_book.chapters import theory as chapter


def test_doctests():
    result = doctest.testmod(chapter, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_profiles():
    for name in ("smoke", "cpu", "gpu"):
        cfg = chapter.theory_profile(name)
        assert cfg["betas"].size == cfg["n_betas"]
        assert np.isclose(cfg["betas"][0], cfg["beta_min"])
    cpu = chapter.theory_profile("cpu")
    assert (cpu["grid_size"], cpu["n_betas"], cpu["max_iter"], cpu["alpha"], cpu["tol"]) == (
        32,
        100,
        400,
        0.9,
        1e-3,
    )  # Appendix A, 100 β values
    assert chapter.theory_profile("smoke", n_betas=None)["n_betas"] == 16
    assert chapter.theory_profile("smoke", n_betas=7)["betas"].size == 7
    with pytest.raises(ValueError, match="'smoke', 'cpu', 'gpu'"):
        chapter.theory_profile("fast")
    with pytest.raises(ValueError, match="n_bets"):
        chapter.theory_profile("cpu", n_bets=3)
    # the table itself is left untouched by overrides
    assert chapter.THEORY_PROFILES["smoke"]["n_betas"] == 16


def test_fig1_example():
    ex = chapter.fig1_tiling_example(tiny_glyphs(), grid_size=32, n_steps=20)
    assert abs(ex.kl_equiprobable - np.log(5)) < 0.01
    assert ex.kl_learned > ex.kl_equiprobable
    assert ex.overlap.any() and ex.hole.any()
    assert np.isnan(ex.decoded[ex.hole]).all()
    i, j = ex.overlap_pair
    pi = ex.supports @ ex.grid.prior
    tile = np.flatnonzero(ex.overlap)[0]
    blend = (ex.images[i] / pi[i] + ex.images[j] / pi[j]) / (1 / pi[i] + 1 / pi[j])
    assert np.allclose(ex.decoded[tile], blend)
    # the tiling reached by Eqs. 3–4: holes are labelled −1 and their mass is reported
    assert np.array_equal(ex.learned_labels == -1, ex.learned_holes)
    assert np.isclose(ex.learned_uncovered, ex.grid.prior[ex.learned_holes].sum())
    assert ex.learned_labels.max() < 5


def test_fig1_holes_table_reports_the_uncovered_prior_mass():
    images = tiny_glyphs()
    table = chapter.fig1_holes_table(images, [0, 2], grid_size=48, n_steps=150)
    assert table.index.tolist() == [0, 2] and table.index.name == "seed"
    grid = theory.latent_grid(48, 3.0, "normal")
    for seed in (0, 2):
        q, _ = theory.elbo_fixed_point_iteration(images, grid, n_steps=150, seed=seed)
        mass = theory.uncovered_prior_mass(q, grid.prior)
        assert table.loc[seed, "uncovered prior mass"] == mass
        assert table.loc[seed, "hole tiles"] == int(theory.hole_tiles(q).sum())
        cells = table.loc[seed, "cell masses (covered)"]
        assert np.isclose(sum(cells) + mass, 1.0, atol=0.01)  # covered cells + holes = 1
    assert 0.05 < table.loc[0, "uncovered prior mass"] < 0.12  # ≈ 8% at seed 0 (the chapter)


def test_data_sources_name_every_builder_with_its_parameters():
    cfg = chapter.theory_profile("cpu")
    table = chapter.data_sources(cfg, seed=3)
    assert len(table) == 4
    assert "fig2_blobs(n_per_blob=12, std=0.02, seed=3)" in table.loc[1, "data"]
    assert "n_per_line=60" in table.loc[2, "data"] and "seed=3" in table.loc[3, "data"]
    assert table["shape"].tolist() == ["5×8×8", "60×2", "180×2", "180×2"]


def test_representative_betas_are_the_geometric_midpoints_of_the_phases():
    assert np.allclose(
        chapter.representative_betas(np.array([0.01, 0.1]), 1e-3, 1.0), np.sqrt([1e-5, 1e-3, 0.1])
    )


def test_critical_betas_table_reads_the_counts_on_both_sides():
    b = np.geomspace(1e-3, 1.0, 61)
    u = np.minimum(b, 0.01) + 0.5 * np.maximum(b - 0.1, 0)  # kinks at 0.01 and 0.1
    crit = theory.critical_betas(b, u, k=2)
    counts = 3 - (b > 0.01) - (b > 0.1)  # 3 → 2 → 1 fixed points
    table = chapter.critical_betas_table(b, crit, counts, collapse=0.1)
    assert table.index.tolist() == [1, 2] and table.index.name == "rank"
    assert np.allclose(table["β_c"], crit.beta_c) and np.allclose(table["|u''|"], crit.height)
    assert (table["fixed points below"] - table["fixed points above"]).tolist() == [1, 1]
    assert np.allclose(table["β_c / λ_max(Σ)"], crit.beta_c / 0.1)


def test_beta_grid_and_its_table():
    assert np.allclose(chapter.beta_grid("log", 4, 1e-3, 1.0), [1e-3, 1e-2, 1e-1, 1.0])
    assert np.allclose(chapter.beta_grid("linear", 3, 0.1, 0.3), [0.1, 0.2, 0.3])
    x, _ = two_blobs(n_per_blob=5, seed=0)
    grid = theory.latent_grid(8)
    cfg = chapter.theory_profile("smoke", max_iter=40)
    studies = [("log", 12), ("linear", 12)]
    table = chapter.beta_grid_table(x, grid, studies, cfg)
    assert table[["β grid", "size"]].values.tolist() == [["log", 12], ["linear", 12]]
    b = chapter.beta_grid("log", 12, cfg["beta_min"], cfg["beta_max"])
    run = theory.fixed_point_sweep(x, b, grid, max_iter=40, progress=False)
    top = theory.critical_betas(b, run.u(), k=3).beta_c
    ranked = table.loc[0, ["β_c^1", "β_c^2", "β_c^3"]].astype(float).to_numpy()
    assert np.allclose(ranked[: top.size], top) and np.isnan(ranked[top.size :]).all()
    assert table.loc[0, "β_c sorted"] == np.round(np.sort(top), 4).tolist()
    assert np.isclose(table.loc[0, "Δβ at β = 0.06"], _gap(b, 0.06))
    # a sweep passed as known is reused, not recomputed
    fake = theory.fixed_point_sweep(x, b, grid, max_iter=1, progress=False)
    reused = chapter.beta_grid_table(x, grid, studies[:1], cfg, known={("log", 12): fake})
    expect = theory.critical_betas(b, fake.u(), k=3).beta_c
    ranked = reused.loc[0, ["β_c^1", "β_c^2", "β_c^3"]].astype(float).to_numpy()
    assert np.allclose(ranked[: expect.size], expect)


def _gap(betas, beta):
    k = int(np.searchsorted(betas, beta))
    return betas[k] - betas[k - 1]


def test_critical_betas_match_the_covariance_eigenvalues_of_the_merging_clusters():
    """Three blobs (a tight pair, a far one): the detected β_c are Rose et al.'s λ_max."""
    x, labels = gaussian_blobs([[-0.3, 0.1], [-0.3, -0.1], [0.3, 0.0]], n_per_blob=10, seed=0)
    grid = theory.latent_grid(16)
    betas = np.geomspace(2e-3, 0.3, 50)
    run = theory.fixed_point_sweep(x, betas, grid, max_iter=400, progress=False)
    crit = theory.critical_betas(betas, run.u(), k=3)
    table = chapter.critical_betas_vs_eigenvalues(x, run, crit, labels=labels)
    assert table.index.tolist() == [1, 2, 3] and (table["merges"] == 1).all()
    lam = {
        (0, 1): theory.critical_beta_from_covariance(x[labels < 2]),
        (0, 1, 2): theory.collapse_beta(x),
    }
    for components, value in lam.items():
        rows = table[table["merging components"].map(tuple) == components]
        assert np.allclose(rows["λ_max of the merging cluster"], value)
        # the best-matching spike of each merge is within 10% of λ_max
        assert np.min(np.abs(rows["β_c detected / λ_max"] - 1)) < 0.1
    assert np.allclose(
        table["β_c detected / λ_max"], table["β_c detected"] / table["λ_max of the merging cluster"]
    )


def test_prop5_study_finds_a_different_fixed_point_than_equipartition():
    """Two blobs of 2 and 6 points: Prop. 5 gives γ = (0.25, 0.75); the basins of the uniform
    initial grid give the tiles about half each, and both are fixed points of Eq. 20."""
    x, _ = gaussian_blobs([[-0.2, 0.0], [0.2, 0.0]], n_per_blob=4, std=0.01, seed=0)
    x = x[2:]  # 2 points in the left blob, 4 in the right one
    cfg = chapter.theory_profile("smoke", grid_size=12, p5_grid_sizes=(12, 16), max_iter=400)
    table = chapter.prop5_study(x, 3e-3, cfg)
    assert len(table) == 7 and table["converged"].all()
    base = table.iloc[0]
    assert np.allclose(sorted(base["γ (Prop. 5)"]), [1 / 3, 2 / 3], atol=0.01)
    assert abs(sorted(base["tile masses (Eq. 20)"])[0] - 0.5) < 0.1  # basin areas, not γ
    assert base["max |residual| at tile masses"] > 0.5
    assert (table["J(γ)"] >= table["J(tile masses)"] - 1e-9).all()  # γ maximises J
    restart = table.loc["restart: reached state + noise"]
    assert restart["tile masses (Eq. 20)"] == base["tile masses (Eq. 20)"]  # stable
    start = table.loc["start at Prop. 5's γ"]
    assert start["max |residual| at tile masses"] < 0.5  # also a fixed point: it stays
    assert np.allclose(sorted(start["tile masses (Eq. 20)"]), [1 / 3, 2 / 3], atol=0.05)


def test_equipartition_table_matches_the_solvers():
    H = np.array([[0.0, 9.0], [9.0, 0.0], [8.0, 0.0]])
    table = chapter.equipartition_table(H, 1.0, tile_mass=np.array([0.5, 0.5]))
    gamma, _ = theory.equipartition_gamma(H, 1.0)
    assert np.array_equal(table["γ (Prop. 5 solver)"].to_numpy(), gamma)
    assert np.allclose(table["γ (scipy maximisation)"], gamma, atol=1e-5)
    assert np.allclose(table["share of data points nearest"], [1 / 3, 2 / 3])
    assert table.attrs["J(γ)"] >= table.attrs["J(tile mass)"]


def test_fig7_runs_and_lipschitz_table():
    x, _ = two_blobs(n_per_blob=5, seed=0)
    grid = theory.latent_grid(6)
    rows, titles = chapter.fig7_runs(x, 3e-3, [1e-3, 1e-2], grid, max_iter=5, progress=False)
    assert {label: len(runs) for label, runs in rows.items()} == {
        "no Lipschitz": 3,
        "local, r = 0.2": 2,
        "global, r = 1.0": 2,
    }
    assert all(r.trajectory is not None for runs in rows.values() for r in runs)  # recorded
    assert [len(t) for t in titles.values()] == [3, 2, 2]
    table = chapter.lipschitz_table(rows)
    assert len(table) == 7 and table["iterations"].max() <= 5
    spread = table.columns[3]
    first = rows["no Lipschitz"][0]
    assert np.isclose(table[spread].iloc[0], theory.neighbour_spread(first.psi[0], grid, 0.2))
    runs = [r for rs in rows.values() for r in rs]
    assert table["converged"].tolist() == [bool(r.converged[0]) for r in runs]
    tol = theory.location_tolerance(x)
    assert table["distinct locations"].tolist() == [
        int(theory.count_fixed_point_locations(r.psi, tol)[0]) for r in runs
    ]
    assert table["single-linkage clusters ≥ 1%"].tolist() == [
        int(theory.cluster_counts(r.psi)[0]) for r in runs
    ]


def test_fig7_bound_runs():
    x, _ = two_blobs(n_per_blob=5, seed=0)
    grid = theory.latent_grid(6)
    rows, titles = chapter.fig7_bound_runs(x, 3e-3, [1.0, 0.2], grid, max_iter=50)
    assert list(rows) == ["local bound, r = 0.2", "global bound, r = 1.0"]
    assert titles["local bound, r = 0.2"] == ["β = 0.003, L = 1", "β = 0.003, L = 0.2"]
    for label, radius in (("local bound, r = 0.2", 0.2), ("global bound, r = 1.0", 1.0)):
        for res, lc in zip(rows[label], [1.0, 0.2]):
            assert res.trajectory is not None and res.n_iter[0] <= 50
            if res.converged[0]:
                bound = theory.lipschitz_bound(grid, radius, lc)
                assert theory.bound_violation(res.psi[0], bound) < 1e-2
    assert len(chapter.lipschitz_table(rows)) == 4


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: chapter.fig1_tiling_example(tiny_glyphs()[:1]), ValueError, "images"),
        (lambda: chapter.fig1_tiling_example(tiny_glyphs(), overlap_mass=0.3), ValueError, "overl"),
        (lambda: chapter.fig1_tiling_example(tiny_glyphs(), overlap_mass=0), ValueError, "overl"),
        (lambda: chapter.fig1_tiling_example(tiny_glyphs(), hole_radius=-1), ValueError, "hole"),
        (lambda: chapter.representative_betas(np.array([2.0]), 0.1, 1.0), ValueError, "beta_c"),
        (lambda: chapter.representative_betas(np.array([0.5]), 0, 1.0), ValueError, "beta_min"),
        (
            lambda: chapter.critical_betas_table(
                np.arange(1.0, 4),
                theory.critical_betas(np.arange(1.0, 4), np.zeros(3)),
                [1] * 3,
                window=1.0,
            ),
            ValueError,
            "window",
        ),
        (lambda: chapter.fig7_runs(np.zeros((2, 2)), -1.0, [1.0], None), ValueError, "beta"),
        (lambda: chapter.equipartition_table(np.zeros((2, 2)), "1"), TypeError, "beta"),
        (lambda: chapter.beta_grid("cubic", 5, 0.1, 1.0), ValueError, "spacing"),
        (lambda: chapter.beta_grid("log", 2, 0.1, 1.0), ValueError, "size"),
        (
            lambda: chapter.critical_betas_vs_eigenvalues(
                np.zeros((2, 2)),
                None,
                theory.critical_betas(np.arange(1.0, 4), np.zeros(3)),
                window=1.0,
            ),
            ValueError,
            "window",
        ),
        (lambda: chapter.fig7_bound_runs(np.zeros((2, 2)), 0.0, [1.0], None), ValueError, "beta"),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
