"""Chapter 01 (theory): its settings per profile, its figure runs and its tables.

The paper's quantities are computed by :mod:`geco_core.theory`; this module only assembles
what the chapter ``book/chapters/01_theory.md`` shows:

- :data:`THEORY_PROFILES`, :func:`theory_profile` — the chapter's settings per profile;
- :func:`data_sources` — the chapter's data: the synthetic sets of :mod:`data_builders.mixtures`;
- :class:`TilingExample`, :func:`fig1_tiling_example`, :func:`fig1_holes_table` — the computed
  Fig. 1 (an equiprobable partition with one overlap and one hole, and the tiling Eqs. 3–4
  reach, with its spontaneous holes) and the holes' prior mass per seed;
- :func:`representative_betas`, :func:`critical_betas_table`, :func:`beta_grid`,
  :func:`beta_grid_table`, :func:`critical_betas_vs_eigenvalues` — Fig. 2's top-row β values,
  the detected β_c, their dependence on the β grid and their comparison with deterministic
  annealing's β_c = λ_max;
- :func:`equipartition_table`, :func:`prop5_study` — Prop. 5's comparison and which fixed point
  Eq. 20 actually reaches;
- :func:`fig7_runs`, :func:`fig7_bound_runs`, :func:`lipschitz_table` — every run of a Fig. 7
  data set (penalty and bound readings of Eq. 8) and its table.

The studies (:func:`data_sources`, :func:`fig1_holes_table`, :func:`beta_grid`,
:func:`beta_grid_table`, :func:`critical_betas_vs_eigenvalues`, :func:`prop5_study`) live in
:mod:`geco_book.chapters.theory_studies` and are re-exported here. The figures themselves are
in :mod:`geco_book.figures.theory`.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Figs. 1, 2 and 7, Props. 2–6,
    Appendices A–C. Rose et al. (1990), Rose (1998): deterministic annealing.

Example:
    >>> cfg = theory_profile("smoke")
    >>> cfg["grid_size"], cfg["betas"].size
    (16, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from geco_base.checks import (
    check_finite,
    check_nonnegative,
    check_positive,
)
from geco_book.chapters.theory_studies import (
    beta_grid,
    beta_grid_table,
    critical_betas_vs_eigenvalues,
    data_sources,
    fig1_holes_table,
    prop5_study,
)
from geco_book.profiles import resolve_profile
from geco_core.theory import (
    CriticalBetas,
    FixedPointSweep,
    LatentGrid,
    cluster_counts,
    count_fixed_point_locations,
    elbo_fixed_point_iteration,
    equipartition_gamma,
    equipartition_gamma_direct,
    equipartition_objective,
    equipartition_residual,
    equiprobable_partition,
    fixed_point_sweep,
    hole_tiles,
    latent_grid,
    lipschitz_bound_fixed_points,
    lipschitz_fixed_points,
    location_tolerance,
    neighbour_spread,
    overlap_reconstruction,
    restricted_prior_posteriors,
    supports_from_labels,
    tile_average_kl,
    uncovered_prior_mass,
)

__all__ = [
    "THEORY_PROFILES",
    "TilingExample",
    "beta_grid",
    "beta_grid_table",
    "critical_betas_table",
    "critical_betas_vs_eigenvalues",
    "data_sources",
    "equipartition_table",
    "fig1_holes_table",
    "fig1_tiling_example",
    "fig7_bound_runs",
    "fig7_runs",
    "lipschitz_table",
    "prop5_study",
    "representative_betas",
    "theory_profile",
]


# ---------------------------------------------------------------------------------------------
# Settings per profile
# ---------------------------------------------------------------------------------------------


#: Settings of the theory chapter per profile (see :func:`theory_profile`).
THEORY_PROFILES: dict[str, dict] = {
    "smoke": {
        "grid_size": 16,
        "n_betas": 16,
        "beta_min": 1e-3,
        "beta_max": 1.0,
        "max_iter": 60,
        "alpha": 0.9,
        "tol": 1e-3,
        "init_noise": 0.1,
        "n_per_blob": 8,
        "fig1_grid_size": 24,
        "fig1_steps": 30,
        "lipschitz_grid_size": 12,
        "lipschitz_beta": 3e-3,
        "lipschitz_strengths": (1e-3, 1e-2),
        "lipschitz_max_iter": 30,
        "lipschitz_points": 40,
        "fig1_seeds": (0, 1),
        "grid_study": (("log", 16), ("linear", 16)),
        "p5_grid_sizes": (16, 24),
        "p5_long_iter": 200,
        "bound_grid_size": 8,
        "lipschitz_constants": (1.0, 0.25),
        "bound_max_iter": 30,
    },
    "cpu": {
        "grid_size": 32,
        "n_betas": 100,
        "beta_min": 1e-3,
        "beta_max": 1.0,
        "max_iter": 400,
        "alpha": 0.9,
        "tol": 1e-3,
        "init_noise": 0.1,
        "n_per_blob": 12,
        "fig1_grid_size": 48,
        "fig1_steps": 150,
        "lipschitz_grid_size": 24,
        "lipschitz_beta": 3e-3,
        "lipschitz_strengths": (1e-4, 1e-3, 1e-2),
        "lipschitz_max_iter": 400,
        "lipschitz_points": 60,
        "fig1_seeds": (0, 1, 2, 3),
        "grid_study": (("log", 50), ("log", 100), ("log", 200), ("linear", 100), ("linear", 200)),
        "p5_grid_sizes": (32, 48, 64),
        "p5_long_iter": 4000,
        "bound_grid_size": 16,
        "lipschitz_constants": (1.0, 0.5, 0.25),
        "bound_max_iter": 400,
    },
    "gpu": {
        "grid_size": 32,
        "n_betas": 200,
        "beta_min": 1e-3,
        "beta_max": 1.0,
        "max_iter": 400,
        "alpha": 0.9,
        "tol": 1e-3,
        "init_noise": 0.1,
        "n_per_blob": 12,
        "fig1_grid_size": 64,
        "fig1_steps": 200,
        "lipschitz_grid_size": 32,
        "lipschitz_beta": 3e-3,
        "lipschitz_strengths": (1e-4, 1e-3, 1e-2),
        "lipschitz_max_iter": 400,
        "lipschitz_points": 60,
        "fig1_seeds": (0, 1, 2, 3, 4, 5, 6, 7),
        "grid_study": (("log", 100), ("log", 200), ("log", 400), ("linear", 200), ("linear", 400)),
        "p5_grid_sizes": (32, 64, 96),
        "p5_long_iter": 4000,
        "bound_grid_size": 24,
        "lipschitz_constants": (1.0, 0.5, 0.25),
        "bound_max_iter": 1000,
    },
}


def theory_profile(profile: str, **overrides) -> dict:
    """The theory chapter's settings for ``profile`` ∈ {"smoke", "cpu", "gpu"}.

    - ``smoke``: seconds, for CI (16 β values, 60 iterations, small grids).
    - ``cpu``: the default and what the book shows: Appendix A's full Fig. 2 set-up (32×32
      grid, 100 β values, ≤ 400 iterations, α = 0.9, tol 1e-3).
    - ``gpu``: the same with a finer β grid (200 values) and finer grids elsewhere; the
      theory is numpy code, a GPU is not used.

    Besides Appendix A's settings: ``fig1_seeds`` (the holes table), ``grid_study`` (β grids
    ``(spacing, size)`` of the grid-dependence table), ``p5_grid_sizes`` and ``p5_long_iter``
    (Prop. 5's study), ``bound_grid_size``, ``lipschitz_constants`` and ``bound_max_iter``
    (Fig. 7 with Eq. 8 as a bound).

    Overrides whose value is ``None`` are ignored (so a notebook can pass its knobs as they
    are); other keys must exist in the table.

    Raises:
        ValueError: unknown profile (the message lists the valid ones) or unknown override.

    Example:
        >>> theory_profile("cpu")["n_betas"], theory_profile("smoke", n_betas=5)["n_betas"]
        (100, 5)
    """
    settings = resolve_profile(profile, THEORY_PROFILES)
    for key, value in overrides.items():
        if key not in settings:
            valid = ", ".join(sorted(settings))
            raise ValueError(f"unknown theory setting {key!r}; valid settings are {valid}")
        if value is not None:
            settings[key] = value
    settings["betas"] = np.geomspace(
        settings["beta_min"], settings["beta_max"], settings["n_betas"]
    )
    return settings


# ---------------------------------------------------------------------------------------------
# Fig. 1: tilings, an overlap and a hole (Props. 2–3)
# ---------------------------------------------------------------------------------------------


@dataclass
class TilingExample:
    """A computed Fig. 1: tilings of a 2-D latent grid for a tiny image data set.

    Attributes:
        grid: the latent grid (discretised N(0, I) prior).
        images: ``[n, H, W]`` the data.
        labels: ``[B]`` the equiprobable partition (Prop. 2).
        supports: ``[n, B]`` the supports after adding an overlap and a hole.
        decoded: ``[B, H, W]`` optimal decoder (Eq. 4 = Eq. 17), NaN on the hole.
        overlap: ``[B]`` tiles covered by two supports.
        hole: ``[B]`` tiles covered by none.
        overlap_pair: the two data indices whose supports overlap.
        kl_equiprobable: average KL of the equiprobable partition (≈ ln n).
        kl_learned: average KL of the tiling reached by
            :func:`geco_core.theory.elbo_fixed_point_iteration`.
        learned_labels: ``[B]`` owner of every tile in that tiling, −1 on its holes.
        learned_sigmas: σ over its iterations.
        learned_holes: ``[B]`` tiles that no posterior of that tiling covers (exactly 0 mass).
        learned_uncovered: their prior mass (:func:`geco_core.theory.uncovered_prior_mass`).
    """

    grid: LatentGrid
    images: np.ndarray
    labels: np.ndarray
    supports: np.ndarray
    decoded: np.ndarray
    overlap: np.ndarray
    hole: np.ndarray
    overlap_pair: tuple[int, int]
    kl_equiprobable: float
    kl_learned: float
    learned_labels: np.ndarray
    learned_sigmas: np.ndarray
    learned_holes: np.ndarray
    learned_uncovered: float


def fig1_tiling_example(
    images: np.ndarray,
    grid_size: int = 48,
    overlap_mass: float = 0.08,
    hole_centre: tuple[float, float] = (-0.9, -0.6),
    hole_radius: float = 0.7,
    n_steps: int = 100,
    seed: int = 0,
) -> TilingExample:
    """Compute the ingredients of a Fig. 1-style picture (Props. 2 and 3, Eq. 17).

    1. Discretise N(0, I) on a ``grid_size²`` grid over [-3, 3]² and split it into n
       equiprobable pie slices (Prop. 2); its average KL is ln n (Appendix C.2).
    2. Extend the support of image 0 over the first ``overlap_mass`` of prior mass of image 1's
       slice: there both posteriors overlap and the optimal decoder (Eq. 4, equal to Eq. 17)
       returns a blend of the two images weighted by 1/π_0 and 1/π_1 (Prop. 3's blur).
    3. Remove a disc of radius ``hole_radius`` at ``hole_centre`` from every support: a "hole"
       where the decoder is unconstrained (NaN).
    4. Independently, run the ELBO fixed-point iteration (Eqs. 3–4, 15) from a smooth random
       decoder; it converges to a tiling that is *not* equiprobable, with average KL > ln n,
       and that leaves holes: tiles where every posterior mass has underflowed to exactly 0.

    Args:
        images: ``[n, H, W]`` data (e.g. :func:`data_builders.mixtures.tiny_glyphs`).
        grid_size: tiles per side.
        overlap_mass: prior mass of the overlap region (< 1/n).
        hole_centre: latent centre of the hole.
        hole_radius: its radius.
        n_steps: iterations of :func:`geco_core.theory.elbo_fixed_point_iteration`.
        seed: seed of that iteration.

    Returns:
        A :class:`TilingExample`.

    Example:
        >>> from data_builders.mixtures import tiny_glyphs
        >>> ex = fig1_tiling_example(tiny_glyphs(), grid_size=24, n_steps=20)
        >>> bool(abs(ex.kl_equiprobable - np.log(5)) < 0.01), bool(ex.overlap.any())
        (True, True)
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] < 2:
        raise ValueError(f"images must be [n, H, W] with n >= 2, got {images.shape}")
    n = images.shape[0]
    overlap_mass = check_positive(overlap_mass, "overlap_mass")
    if overlap_mass >= 1 / n:
        raise ValueError(
            f"overlap_mass must lie in (0, 1/n) = (0, {1 / n:.3g}), got {overlap_mass}"
        )
    hole_radius = check_nonnegative(hole_radius, "hole_radius")
    grid = latent_grid(grid_size, 3.0, "normal")
    labels = equiprobable_partition(grid, n, by="angle")
    supports = supports_from_labels(labels, n)
    kl_equiprobable = tile_average_kl(restricted_prior_posteriors(supports, grid.prior), grid.prior)

    # Overlap: the first `overlap_mass` of slice 1 (in sweep order) joins the support of 0.
    cx, cy = grid.centres[:, 0], grid.centres[:, 1]
    in_one = np.flatnonzero(labels == 1)
    in_one = in_one[
        np.lexsort((np.hypot(cx[in_one], cy[in_one]), np.arctan2(cy[in_one], cx[in_one])))
    ]
    take = in_one[np.cumsum(grid.prior[in_one]) <= overlap_mass]
    supports = supports.copy()
    supports[0, take] = True
    hole = np.hypot(cx - hole_centre[0], cy - hole_centre[1]) < hole_radius
    supports[:, hole] = False
    decoded = overlap_reconstruction(supports, grid.prior, images)
    cover = supports.sum(axis=0)

    q_learned, sigmas = elbo_fixed_point_iteration(images, grid, n_steps=n_steps, seed=seed)
    learned_holes = hole_tiles(q_learned)
    learned_labels = np.where(learned_holes, -1, q_learned.argmax(axis=0))
    kl_learned = tile_average_kl(q_learned, grid.prior)
    return TilingExample(
        grid=grid,
        images=images,
        labels=labels,
        supports=supports,
        decoded=decoded,
        overlap=cover >= 2,
        hole=cover == 0,
        overlap_pair=(0, 1),
        kl_equiprobable=kl_equiprobable,
        kl_learned=kl_learned,
        learned_labels=learned_labels,
        learned_sigmas=sigmas,
        learned_holes=learned_holes,
        learned_uncovered=uncovered_prior_mass(q_learned, grid.prior),
    )


# ---------------------------------------------------------------------------------------------
# Fig. 2: panel β values and the table of critical temperatures
# ---------------------------------------------------------------------------------------------


def representative_betas(beta_c: np.ndarray, beta_min: float, beta_max: float) -> np.ndarray:
    """One β inside each phase delimited by the critical temperatures (for Fig. 2's top row).

    Returns the geometric midpoints of consecutive sorted boundaries
    ``[beta_min, *sorted(beta_c), beta_max]``: one β per phase, between two transitions.

    Example:
        >>> representative_betas(np.array([0.1]), 0.01, 1.0).round(4).tolist()
        [0.0316, 0.3162]
    """
    beta_min = check_positive(beta_min, "beta_min")
    beta_max = check_positive(beta_max, "beta_max")
    edges = np.concatenate([[beta_min], np.sort(np.asarray(beta_c, dtype=np.float64)), [beta_max]])
    if np.any(np.diff(edges) <= 0):
        raise ValueError("need beta_min < every beta_c < beta_max")
    return np.sqrt(edges[:-1] * edges[1:])


def critical_betas_table(
    betas: np.ndarray,
    crit: CriticalBetas,
    counts: np.ndarray,
    collapse: float | None = None,
    window: float = 1.25,
):
    """A ``pandas.DataFrame`` of the detected β_c: rank, β_c, |u''|, and the number of distinct
    fixed points at the grid points nearest β_c / ``window`` and β_c · ``window`` (a merge
    shows as a drop; the window skips the grid point next to the kink, where the iteration is
    slowest to settle).

    Args:
        betas: ``[K]`` the sweep's β grid.
        crit: :func:`geco_core.theory.critical_betas` output.
        counts: ``[K]`` :func:`geco_core.theory.cluster_counts` of the sweep.
        collapse: optional :func:`geco_core.theory.collapse_beta`, reported as the ratio
            β_c / λ_max(Σ).
        window: factor (> 1) between β_c and the β where the counts are read.

    Example:
        >>> from geco_core.theory import critical_betas
        >>> b = np.linspace(0.1, 2.0, 20); u = np.minimum(b, 1.0)
        >>> t = critical_betas_table(b, critical_betas(b, u, k=1), (b < 1) + 1)
        >>> t.columns.tolist(), t.iloc[0, 2:].tolist()
        (['β_c', "|u''|", 'fixed points below', 'fixed points above'], [2, 1])
    """
    betas = np.asarray(betas, dtype=np.float64)
    counts = np.asarray(counts)
    window = check_finite(window, "window")
    if window <= 1:
        raise ValueError(f"window must be > 1, got {window}")
    rows = []
    for beta_c, height in zip(crit.beta_c, crit.height):
        below = int(np.argmin(np.abs(np.log(betas) - np.log(beta_c / window))))
        above = int(np.argmin(np.abs(np.log(betas) - np.log(beta_c * window))))
        row = {
            "β_c": float(beta_c),
            "|u''|": float(height),
            "fixed points below": int(counts[below]),
            "fixed points above": int(counts[above]),
        }
        if collapse is not None:
            row["β_c / λ_max(Σ)"] = float(beta_c / collapse)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.index = pd.RangeIndex(1, len(rows) + 1, name="rank")
    return table


# ---------------------------------------------------------------------------------------------
# Prop. 5: the comparison table
# ---------------------------------------------------------------------------------------------


def equipartition_table(hamiltonian: np.ndarray, beta: float, tile_mass: np.ndarray | None = None):
    """``pandas.DataFrame`` comparing, per partition element a: γ_a from the fixed-point solver,
    from direct maximisation, the data points that prefer a, and (optionally) the tile mass
    Eq. 20 gave it; plus the residual of Prop. 5's condition and the objective J(γ).

    Example:
        >>> H = np.array([[0.0, 9.0], [9.0, 0.0], [8.0, 0.0]])
        >>> equipartition_table(H, 1.0)["γ (Prop. 5 solver)"].round(3).tolist()
        [0.333, 0.667]
    """
    h = np.asarray(hamiltonian, dtype=np.float64)
    beta = check_positive(beta, "beta")
    gamma, _ = equipartition_gamma(h, beta)
    direct = equipartition_gamma_direct(h, beta)
    residual = equipartition_residual(h, beta, np.maximum(gamma, 1e-300))
    table = pd.DataFrame(
        {
            "γ (Prop. 5 solver)": gamma,
            "γ (scipy maximisation)": direct,
            "share of data points nearest": np.bincount(h.argmin(1), minlength=h.shape[1])
            / h.shape[0],
            "residual Σ_i e^(-H_ia/β)/Z_i − n": residual,
        }
    )
    if tile_mass is not None:
        table["tile mass from Eq. 20"] = np.asarray(tile_mass, dtype=np.float64)
        table.attrs["J(tile mass)"] = equipartition_objective(h, beta, tile_mass)
    table.attrs["J(γ)"] = equipartition_objective(h, beta, gamma)
    table.index.name = "fixed point a"
    return table


# ---------------------------------------------------------------------------------------------
# Fig. 7: the runs of one data set and their table (Appendix B, Prop. 6)
# ---------------------------------------------------------------------------------------------


def fig7_runs(
    x: np.ndarray,
    beta: float,
    strengths: Sequence[float],
    grid: LatentGrid,
    top_betas: Sequence[float] | None = None,
    local_radius: float = 0.2,
    global_radius: float = 1.0,
    **sweep_kwargs,
) -> tuple[dict[str, list[FixedPointSweep]], dict[str, list[str]]]:
    """All runs of one Fig. 7 column pair: rows "no Lipschitz" (increasing β), "local" and
    "global" Lipschitz constraints (increasing strength at fixed β), trajectories recorded.

    Args:
        x: ``[n, 2]`` data.
        beta: β of the constrained rows.
        strengths: increasing Ω̃ values for the constrained rows.
        grid: latent grid.
        top_betas: β values of the unconstrained row (default β·(1, 3, 10)).
        local_radius, global_radius: r of the two constrained rows (paper: 0.2 and 1.0).
        **sweep_kwargs: passed to :func:`geco_core.theory.fixed_point_sweep`.

    Returns:
        ``(rows, titles)`` for :func:`geco_book.figures.theory.plot_lipschitz_panels`.

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> rows, titles = fig7_runs(x, 1e-3, [1e-3, 1e-2], latent_grid(6), max_iter=5,
        ...                          progress=False)
        >>> [(label, len(runs)) for label, runs in rows.items()]
        [('no Lipschitz', 3), ('local, r = 0.2', 2), ('global, r = 1.0', 2)]
        >>> titles["no Lipschitz"]
        ['β = 0.001', 'β = 0.003', 'β = 0.01']
    """
    beta = check_positive(beta, "beta")
    top_betas = [beta, 3 * beta, 10 * beta] if top_betas is None else list(top_betas)
    sweep_kwargs.setdefault("record", True)
    top = fixed_point_sweep(x, top_betas, grid, **sweep_kwargs)
    rows = {"no Lipschitz": [top.select(k) for k in range(len(top_betas))]}
    titles = {"no Lipschitz": [f"β = {b:.3g}" for b in top_betas]}
    for label, radius in (
        (f"local, r = {local_radius:.1f}", local_radius),
        (f"global, r = {global_radius:.1f}", global_radius),
    ):
        rows[label] = lipschitz_fixed_points(x, beta, strengths, radius, grid, **sweep_kwargs)
        titles[label] = [f"β = {beta:.3g}, strength {c:.0e}" for c in strengths]
    return rows, titles


def fig7_bound_runs(
    x: np.ndarray,
    beta: float,
    lipschitz_constants: Sequence[float],
    grid: LatentGrid,
    local_radius: float = 0.2,
    global_radius: float = 1.0,
    **kwargs,
) -> tuple[dict[str, list[FixedPointSweep]], dict[str, list[str]]]:
    """Fig. 7's constrained rows with Eq. 8 as a bound (KKT multipliers, not a fixed strength):
    :func:`geco_core.theory.lipschitz_bound_fixed_points` at radii r = 0.2 and 1.0 for every
    L in ``lipschitz_constants`` (decreasing L = a stronger constraint), trajectories recorded.

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> rows, titles = fig7_bound_runs(x, 1e-3, [1.0], latent_grid(6), max_iter=5)
        >>> list(rows), titles["global bound, r = 1.0"]
        (['local bound, r = 0.2', 'global bound, r = 1.0'], ['β = 0.001, L = 1'])
    """
    beta = check_positive(beta, "beta")
    kwargs.setdefault("record", True)
    rows, titles = {}, {}
    for kind, radius in (("local", local_radius), ("global", global_radius)):
        label = f"{kind} bound, r = {radius:.1f}"
        rows[label] = lipschitz_bound_fixed_points(
            x, beta, lipschitz_constants, radius, grid, **kwargs
        )
        titles[label] = [f"β = {beta:.3g}, L = {c:g}" for c in lipschitz_constants]
    return rows, titles


def lipschitz_table(rows: dict[str, list[FixedPointSweep]], radius: float = 0.2):
    """``pandas.DataFrame``: per Fig. 7 panel, β, iterations, whether Appendix A's stopping
    rule fired (``converged``), the neighbour spread
    (:func:`geco_core.theory.neighbour_spread` with ``radius``), the occupied distinct
    locations a picture shows (:func:`geco_core.theory.count_fixed_point_locations` at 5% of
    the data scale, every location counted) and, for contrast, the single-linkage clusters of
    :func:`geco_core.theory.cluster_counts` (which chain a thread into one).

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> rows, titles = fig7_runs(x, 1e-3, [1e-3], latent_grid(6), max_iter=5,
        ...                          progress=False)
        >>> lipschitz_table(rows).shape
        (5, 7)
    """
    records = []
    for label, runs in rows.items():
        for res in runs:
            tol = location_tolerance(res.x)
            records.append(
                {
                    "row": label,
                    "β": float(res.betas[0]),
                    "iterations": int(res.n_iter[0]),
                    f"mean ‖ψ_a − ψ_b‖, tiles < {radius:g} apart": neighbour_spread(
                        res.psi[0], res.grid, radius
                    ),
                    "converged": bool(res.converged[0]),
                    "distinct locations": int(count_fixed_point_locations(res.psi, tol)[0]),
                    "single-linkage clusters ≥ 1%": int(cluster_counts(res.psi)[0]),
                }
            )
    return pd.DataFrame(records)


if __name__ == "__main__":  # the chapter computes in seconds; it is run as a notebook
    import sys

    print("error: geco_book.chapters.theory has no command line (it trains nothing): run the "
          "chapter, e.g. papermill book/chapters/01_theory.ipynb out.ipynb -p profile cpu",
          file=sys.stderr)
    sys.exit(2)
