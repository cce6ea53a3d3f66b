"""Tests for geco_book.figures.theory: every figure function returns a figure with its axes."""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import geco_core.theory as theory  # noqa: E402
from data_builders.mixtures import tiny_glyphs, two_blobs  # noqa: E402
from geco_book.chapters import theory as chapter  # noqa: E402
from geco_book.figures import theory as figures  # noqa: E402


def test_doctests():
    result = doctest.testmod(figures, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    plt.close("all")


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
    fig = figures.plot_fig2(sweep, u, crit, panels)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 + 2
    fig = figures.plot_phase_transitions(betas, u, crit)
    assert len(fig.axes) == 2
    ex = chapter.fig1_tiling_example(tiny_glyphs(), grid_size=16, n_steps=5)
    assert len(figures.plot_tiling(ex).axes) == 2 + 5 + 3
    fig = figures.plot_equipartition(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), np.array([0.4, 0.6]), np.zeros(2)
    )
    assert len(fig.axes) == 1
    fig = figures.plot_equipartition(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), np.array([0.4, 0.6]), np.zeros(2),
        np.array([3.0, -27.0]),
    )  # fmt: skip
    assert "tile masses 27" in fig.axes[0].get_title()
    runs = theory.lipschitz_fixed_points(
        x, 3e-3, [0.0, 1e-3], 0.2, grid, max_iter=5, record=True, progress=False
    )
    fig = figures.plot_lipschitz_panels(
        x, {"a": runs, "b": runs[:1]}, {"a": ["0", "1e-3"], "b": ["0"]}
    )
    assert len(fig.axes) == 3
    plt.close("all")


def test_non_converged_panels_are_marked():
    x, _ = two_blobs(n_per_blob=5, seed=0)
    grid = theory.latent_grid(6)
    capped = theory.fixed_point_sweep(x, [3e-3], grid, max_iter=2, record=True, progress=False)
    done = theory.fixed_point_sweep(x, [1.0], grid, max_iter=400, record=True, progress=False)
    assert not capped.converged[0] and done.converged[0]
    assert figures.convergence_note(capped) == "not converged at 2 it."
    assert figures.convergence_note(done) == ""
    fig = figures.plot_lipschitz_panels(x, {"row": [capped, done]}, {"row": ["a", "b"]})
    first, second = fig.axes
    assert first.get_title() == "a\nnot converged at 2 it." and second.get_title() == "b"
    assert all(sp.get_linestyle() == "--" for sp in first.spines.values())
    assert all(sp.get_linestyle() == "solid" for sp in second.spines.values())
    # x=None draws each run's own data
    fig = figures.plot_lipschitz_panels(None, {"row": [done]}, {"row": ["b"]})
    assert np.allclose(fig.axes[0].collections[-2].get_offsets(), x)
    # Fig. 2's top row is marked the same way
    sweep = theory.fixed_point_sweep(x, np.geomspace(1e-3, 1, 8), grid, max_iter=30, progress=False)
    u = sweep.u()
    fig = figures.plot_fig2(sweep, u, theory.critical_betas(sweep.betas, u), capped)
    assert fig.axes[0].get_title().endswith("not converged at 2 it.")
    plt.close("all")


def test_tiling_figure_shows_the_holes():
    ex = chapter.fig1_tiling_example(tiny_glyphs(), grid_size=48, n_steps=150, seed=0)
    assert ex.learned_holes.any()
    fig = figures.plot_tiling(ex)
    left = fig.axes[0]
    hatched = [p for p in left.patches if p.get_hatch() == "////"]
    assert len(hatched) == int(ex.learned_holes.sum())  # one hatched square per hole tile
    image = left.images[0].get_array()
    assert np.ma.is_masked(image) and image.mask.sum() == ex.learned_holes.sum()
    assert f"{ex.learned_uncovered:.1%}" in left.get_title()
    plt.close("all")


def test_phase_transition_labels_do_not_overlap_and_u_is_log():
    b = np.geomspace(1e-3, 1.0, 60)
    u = np.minimum(b, 0.002) + np.minimum(b, 0.0025) + np.minimum(b, 0.08)  # kinks close by
    crit = theory.critical_betas(b, u, k=3)
    fig = figures.plot_phase_transitions(b, u, crit, predicted=[0.002, 0.08])
    ax_u, ax_c = fig.axes
    assert ax_u.get_yscale() == "log" and ax_u.get_xscale() == "log"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax_c.texts]
    assert len(boxes) == crit.beta_c.size
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j])
    labels = [t.get_text() for t in ax_c.get_legend().get_texts()]
    assert any(f"{crit.beta_c[0]:.3g}" in t for t in labels) and "λ_max (Rose et al.)" in labels
    dotted = [ln for ln in ax_u.lines if ln.get_linestyle() == ":"]
    assert len(dotted) == 2
    plt.close("all")
