"""Tests for geco_book.chapters.theory: chapter 01's settings, its Fig. 1 example and tables."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import geco_core.theory as theory
from data_builders.mixtures import tiny_glyphs, two_blobs
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
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
