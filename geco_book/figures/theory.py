"""Matplotlib figures of the theory chapter (Figs. 1, 2 and 7 of "Taming VAEs", recomputed).

Every function takes results computed by :mod:`geco_core.theory` (Fig. 1's ingredients by
:func:`geco_book.chapters.theory.fig1_tiling_example`) and returns a
``matplotlib.figure.Figure`` (nothing is shown or saved here), so the notebook, the tests and
scripts can all call them. Colours follow the paper: data in blue, trajectories of ψ in grey,
fixed points in red.

References:
    Rezende & Viola (2018), "Taming VAEs": Fig. 1 (tilings, blur and holes), Fig. 2
    (fixed points and phase transitions, Appendix A), Fig. 7 (Lipschitz constraints,
    Appendix B).

Example:
    >>> import numpy as np
    >>> from geco_core import theory
    >>> b = np.geomspace(1e-3, 1.0, 12)
    >>> u = np.minimum(b, 0.1)
    >>> fig = plot_phase_transitions(b, u, theory.critical_betas(b, u))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure

from geco_book.chapters.theory import TilingExample
from geco_book.figures.layout import MAX_WIDTH_IN, SMALL_PT
from geco_core import theory

__all__ = [
    "convergence_note",
    "plot_equipartition",
    "plot_fig2",
    "plot_fixed_points",
    "plot_lipschitz_panels",
    "plot_phase_transitions",
    "plot_tiling",
]

DATA_COLOUR = "tab:blue"
FIXED_POINT_COLOUR = "tab:red"
TRAJECTORY_COLOUR = "0.55"
NOT_CONVERGED_COLOUR = "tab:orange"


def convergence_note(res: theory.FixedPointSweep, k: int = 0) -> str:
    """``""`` when entry ``k`` of a sweep stopped by its tolerance, else a title suffix
    ``"not converged at N it."`` (it ran into the iteration cap of Appendix A).

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> res = theory.fixed_point_sweep(x, [1e-3], theory.latent_grid(4), max_iter=2,
        ...                                progress=False)
        >>> convergence_note(res)
        'not converged at 2 it.'
    """
    if bool(res.converged[k]):
        return ""
    return f"not converged at {int(res.n_iter[k])} it."


def _mark_not_converged(ax: plt.Axes, note: str) -> None:
    """Frame a panel whose run hit the iteration cap (dashed orange border)."""
    if note:
        for spine in ax.spines.values():
            spine.set_edgecolor(NOT_CONVERGED_COLOUR)
            spine.set_linestyle("--")
            spine.set_linewidth(1.6)


def _palette(n: int) -> list[tuple[float, float, float]]:
    base = plt.get_cmap("tab10").colors if n <= 10 else plt.get_cmap("tab20").colors
    return [to_rgb(c) for c in base[:n]]


def _tile_image(grid: theory.LatentGrid, values: np.ndarray) -> np.ndarray:
    """Reshape per-tile values (row-major, x fastest) to an image with y as rows (masks kept)."""
    values = values if np.ma.isMaskedArray(values) else np.asarray(values)
    return values.reshape((grid.size, grid.size) + np.shape(values)[1:])


def _hatch(ax: plt.Axes, grid: theory.LatentGrid, mask: np.ndarray, extent, colour) -> None:
    """Hatch the tiles of ``mask`` (one square per tile, so small regions are not lost)."""
    h = grid.side
    for cx, cy in grid.centres[np.asarray(mask, dtype=bool)]:
        ax.add_patch(
            plt.Rectangle(
                (cx - h / 2, cy - h / 2), h, h, fill=False, hatch="////", lw=0, color=colour
            )
        )


def plot_tiling(example: TilingExample) -> Figure:
    """Fig. 1-style picture, drawn from computed tilings (Props. 2–3, Eq. 17).

    Top left: the tiling that the ELBO fixed-point equations (Eqs. 3–4, σ from Eq. 15) reach
    from a random smooth decoder; its holes — tiles no posterior covers — are white and
    hatched, and the title's cell masses count covered tiles only. Top right: the equiprobable
    partition (Prop. 2), with an overlap between the supports of x₀ and x₁ (hatched blend) and
    a hole (black). Bottom: the data images, then the optimal reconstruction inside Ω₀ alone,
    inside the overlap (the blur of Eq. 17) and in the hole (undefined).

    Returns:
        A figure with ``2 + n + 3`` axes (two latent panels, n data, three reconstructions).
    """
    grid, n = example.grid, example.images.shape[0]
    colours = _palette(n)
    cmap = ListedColormap(colours)
    extent = (-grid.half_width, grid.half_width, -grid.half_width, grid.half_width)

    fig = plt.figure(figsize=(MAX_WIDTH_IN, 6.6), layout="constrained")
    outer = fig.add_gridspec(2, 2, height_ratios=[1, 0.42])
    ax_learned = fig.add_subplot(outer[0, 0])
    ax_equi = fig.add_subplot(outer[0, 1])
    images = outer[1, :].subgridspec(1, n + 4)  # n data, a gap, three reconstructions

    holes = example.learned_holes
    learned = np.ma.masked_array(example.learned_labels, mask=holes)
    ax_learned.set_facecolor("white")
    ax_learned.imshow(
        _tile_image(grid, learned),
        origin="lower",
        extent=extent,
        cmap=cmap,
        vmin=-0.5,
        vmax=n - 0.5,
        interpolation="nearest",
    )
    _hatch(ax_learned, grid, holes, extent, "k")
    covered = ~holes
    masses = np.bincount(example.learned_labels[covered], weights=grid.prior[covered], minlength=n)
    ax_learned.set_title(
        f"Eqs. 3–4 fixed point: cell masses {np.round(masses, 2).tolist()}\n"
        f"holes (white, hatched): {example.learned_uncovered:.1%} of the prior mass\n"
        f"avg KL = {example.kl_learned:.3f} > ln n = {np.log(n):.3f}",
        fontsize=9,
    )

    rgb = np.array(colours)[example.labels]
    i, j = example.overlap_pair
    rgb[example.overlap] = 0.5 * (np.array(colours[i]) + np.array(colours[j]))
    rgb[example.hole] = 0.0
    ax_equi.imshow(_tile_image(grid, rgb), origin="lower", extent=extent, interpolation="nearest")
    _hatch(ax_equi, grid, example.overlap, extent, "k")
    ax_equi.set_title(
        f"equiprobable partition (Prop. 2): avg KL = {example.kl_equiprobable:.3f} ≈ ln n\n"
        f"hatched: Ω{i} ∩ Ω{j} (blur, Prop. 3); black: a hole",
        fontsize=9,
    )
    for ax in (ax_learned, ax_equi):
        for radius in (1.0, 2.0):
            ax.add_patch(plt.Circle((0, 0), radius, fill=False, ls="--", lw=0.8, color="w"))
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")

    for k in range(n):
        ax = fig.add_subplot(images[0, k])
        ax.imshow(example.images[k], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"$x_{k}$", color=colours[k], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(colours[k])
            spine.set_linewidth(2)

    only_i = example.supports[i] & ~example.overlap
    pick = {
        f"z ∈ Ω{i}\nonly": np.flatnonzero(only_i)[0],
        f"z ∈ Ω{i} ∩ Ω{j}\n(blur)": np.flatnonzero(example.overlap)[0],
        "z in the hole": np.flatnonzero(example.hole)[0] if example.hole.any() else None,
    }
    for k, (title, tile) in enumerate(pick.items()):
        ax = fig.add_subplot(images[0, n + 1 + k])
        if tile is None or np.isnan(example.decoded[tile]).any():
            ax.imshow(np.zeros_like(example.images[0]), cmap="gray", vmin=0, vmax=1)
            ax.text(
                0.5,
                0.5,
                "?",
                color="w",
                fontsize=22,
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            title += "\n(undefined)"
        else:
            ax.imshow(example.decoded[tile], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=SMALL_PT)
        ax.set_xticks([])
        ax.set_yticks([])
        if k == 0:
            ax.set_ylabel("optimal g(z)\n(Eq. 17)", fontsize=SMALL_PT)
    return fig


def plot_fixed_points(
    ax: plt.Axes,
    x: np.ndarray,
    psi: np.ndarray,
    trajectory: np.ndarray | None = None,
    title: str | None = None,
    max_lines: int = 1024,
) -> plt.Axes:
    """Draw one Fig. 2 / Fig. 7 panel: grey trajectories of ψ, red fixed points, blue data.

    Args:
        ax: target axes.
        x: ``[n, 2]`` data.
        psi: ``[B, 2]`` final reconstruction vectors.
        trajectory: optional ``[T + 1, B, 2]`` iterates of ψ.
        title: panel title.
        max_lines: draw at most this many trajectories (evenly sub-sampled).
    """
    if trajectory is not None:
        step = max(1, trajectory.shape[1] // max_lines)
        lines = np.transpose(trajectory[:, ::step], (1, 0, 2))
        ax.add_collection(
            LineCollection(lines, colors=TRAJECTORY_COLOUR, linewidths=0.4, alpha=0.5, zorder=1)
        )
    ax.scatter(x[:, 0], x[:, 1], s=6, c=DATA_COLOUR, zorder=2, label="data")
    ax.scatter(psi[:, 0], psi[:, 1], s=8, c=FIXED_POINT_COLOUR, zorder=3, label="ψ (fixed points)")
    ax.set_xlim(-0.55, 0.55)
    ax.set_ylim(-0.55, 0.55)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_phase_transitions(
    betas: np.ndarray,
    u: np.ndarray,
    crit: theory.CriticalBetas,
    axes: Sequence[plt.Axes] | None = None,
    predicted: Sequence[float] | None = None,
) -> Figure:
    """Fig. 2 bottom row: u(β) with grey lines at β_c (left) and |∂²u/∂β²| with the top-k
    maxima marked (right). Both axes of both panels are logarithmic, so that the small-β
    transitions (u ≈ 10⁻³) are as visible as the final collapse. Each maximum carries its rank
    next to the marker; the values are in the legend (labels cannot collide). ``predicted``
    (e.g. λ_max of the merging clusters, deterministic annealing's β_c) is drawn dotted.

    Returns:
        The figure holding the two axes (a new one unless ``axes`` is given).
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 3.4), layout="constrained")
    else:
        fig = axes[0].figure
    ax_u, ax_c = axes
    ax_u.plot(betas, u, "-o", ms=2.5, color="k", lw=1)
    ax_u.set_xscale("log")
    ax_u.set_yscale("log")
    ax_u.set_xlabel("β")
    ax_u.set_ylabel("u(β) = E‖x − g(z)‖²")
    ax_u.set_title("expected reconstruction error (log–log)", fontsize=9)
    ax_c.plot(betas, crit.curvature, "-", color="k", lw=1)
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("β")
    ax_c.set_ylabel("|∂²u/∂β²|")
    ax_c.set_title("curvature; top local maxima = critical β_c", fontsize=9)
    for rank, (beta_c, height) in enumerate(zip(crit.beta_c, crit.height), start=1):
        for ax in (ax_u, ax_c):
            ax.axvline(beta_c, color="0.6", lw=1.2, zorder=0)
        ax_c.plot(
            [beta_c], [height], "o", color=FIXED_POINT_COLOUR, ms=6,
            label=f"$β_c^{{{rank}}}$ = {beta_c:.3g}",
        )  # fmt: skip
        ax_c.annotate(
            str(rank), (beta_c, height), fontsize=SMALL_PT, xytext=(3, 3),
            textcoords="offset points",
        )
    for value in predicted or ():
        for ax in (ax_u, ax_c):
            ax.axvline(value, color=FIXED_POINT_COLOUR, lw=0.9, ls=":", zorder=0)
    if predicted:
        ax_c.plot([], [], ls=":", color=FIXED_POINT_COLOUR, label="λ_max (Rose et al.)")
    if crit.beta_c.size or predicted:
        ax_c.legend(fontsize=SMALL_PT, loc="lower left")
    return fig


def plot_fig2(
    sweep: theory.FixedPointSweep,
    u: np.ndarray,
    crit: theory.CriticalBetas,
    panels: theory.FixedPointSweep,
    predicted: Sequence[float] | None = None,
) -> Figure:
    """Fig. 2: top row, trajectories and fixed points for the β values of ``panels`` (a sweep
    run with ``record=True``); bottom row, u(β) and |u''| of ``sweep`` with β_c marked (and
    ``predicted`` β_c dotted, see :func:`plot_phase_transitions`). Panel titles count the
    occupied locations holding ≥ 1% of the tiles
    (:func:`geco_core.theory.count_fixed_point_locations` at 5% of the data scale); a panel
    whose run hit the iteration cap says "not converged at N it." and has a dashed orange
    frame.

    Returns:
        A figure with ``len(panels.betas) + 2`` axes.
    """
    n_panels = panels.betas.size
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 6.4), layout="constrained")
    spec = fig.add_gridspec(2, 2 * n_panels, height_ratios=[1, 0.9])
    tol = theory.location_tolerance(panels.x)
    for k in range(n_panels):
        ax = fig.add_subplot(spec[0, 2 * k : 2 * k + 2])
        n_fixed = theory.count_fixed_point_locations(panels.psi[k], tol, min_fraction=0.01)[0]
        note = convergence_note(panels, k)
        plot_fixed_points(
            ax,
            panels.x,
            panels.psi[k],
            None if panels.trajectory is None else panels.trajectory[:, k],
            title=f"β = {panels.betas[k]:.3g}: {n_fixed} fixed point(s)"
            + (f"\n{note}" if note else ""),
        )
        _mark_not_converged(ax, note)
    ax_u = fig.add_subplot(spec[1, :n_panels])
    ax_c = fig.add_subplot(spec[1, n_panels:])
    plot_phase_transitions(sweep.betas, u, crit, axes=(ax_u, ax_c), predicted=predicted)
    return fig


def plot_equipartition(
    gamma_fixed_point: np.ndarray,
    gamma_direct: np.ndarray,
    gamma_empirical: np.ndarray | None = None,
    residual: np.ndarray | None = None,
    residual_empirical: np.ndarray | None = None,
) -> Figure:
    """Prop. 5 check: γ from the fixed-point solver, from direct maximisation (scipy) and,
    optionally, the prior mass of the tiles that Eq. 20 sent to each fixed point. The title
    gives the largest residual of Prop. 5's condition at the solver's γ (``residual``) and at
    the tile masses (``residual_empirical``): the first validates the solver only, the second
    says whether the dynamics reached the equipartition.

    Returns:
        A figure with one axes.
    """
    m = len(gamma_fixed_point)
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    width = 0.27
    pos = np.arange(m)
    ax.bar(pos - width, gamma_fixed_point, width, label="Prop. 5, fixed-point solver")
    ax.bar(pos, gamma_direct, width, label="direct maximisation (scipy)")
    if gamma_empirical is not None:
        ax.bar(pos + width, gamma_empirical, width, label="tile mass per fixed point (Eq. 20)")
    ax.set_xticks(pos, [f"ψ cluster {a}" for a in range(m)], fontsize=SMALL_PT)
    ax.set_ylabel("γ_a")
    title = "equipartition of energy (Prop. 5)"
    parts = []
    if residual is not None:
        parts.append(f"solver's γ {np.max(np.abs(residual)):.1e}")
    if residual_empirical is not None:
        parts.append(f"Eq. 20's tile masses {np.max(np.abs(residual_empirical)):.3g}")
    if parts:
        title += "\nmax |Σ_i e^(-H_ia/β)/Z_i − n| at the " + ", at the ".join(parts)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=SMALL_PT)
    return fig


def plot_lipschitz_panels(
    x: np.ndarray | None,
    rows: dict[str, Sequence[theory.FixedPointSweep]],
    column_titles: dict[str, Sequence[str]],
) -> Figure:
    """Fig. 7 for one data set: one row per setting (β sweep, local, global constraints), one
    column per strength; grey trajectories (when recorded), red fixed points, blue data. A
    panel whose run hit the iteration cap gets the title suffix "not converged at N it." and a
    dashed orange frame.

    Args:
        x: ``[n, 2]`` data, or ``None`` to draw each run's own data (``res.x``).
        rows: row label → single-β sweeps, left to right.
        column_titles: row label → one title per panel.

    Returns:
        A figure with ``sum(len(r) for r in rows.values())`` axes.
    """
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows.values())
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(min(MAX_WIDTH_IN, 2.6 * n_cols), 2.7 * n_rows),
        layout="constrained", squeeze=False,
    )
    for r, (label, sweeps) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(sweeps):
                ax.remove()
                continue
            res = sweeps[c]
            note = convergence_note(res)
            plot_fixed_points(
                ax,
                res.x if x is None else x,
                res.psi[0],
                None if res.trajectory is None else res.trajectory[:, 0],
                title=column_titles[label][c] + (f"\n{note}" if note else ""),
            )
            _mark_not_converged(ax, note)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    return fig
