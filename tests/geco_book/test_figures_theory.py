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
    runs = theory.lipschitz_fixed_points(
        x, 3e-3, [0.0, 1e-3], 0.2, grid, max_iter=5, record=True, progress=False
    )
    fig = figures.plot_lipschitz_panels(
        x, {"a": runs, "b": runs[:1]}, {"a": ["0", "1e-3"], "b": ["0"]}
    )
    assert len(fig.axes) == 3
    plt.close("all")
