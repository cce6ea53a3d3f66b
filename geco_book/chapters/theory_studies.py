"""Chapter 01 (theory): the studies behind the chapter's fidelity checks, as tables.

The companions of :mod:`geco_book.chapters.theory` (which re-exports every name here):

- :func:`data_sources` — the chapter's data: the synthetic sets of :mod:`data_builders.mixtures`
  with every parameter;
- :func:`fig1_holes_table` — the prior mass that the tiling reached by Eqs. 3–4 leaves
  uncovered (holes, §3.1), per seed;
- :func:`beta_grid`, :func:`beta_grid_table` — how Fig. 2's top-3 β_c move with the β grid;
- :func:`critical_betas_vs_eigenvalues` — the detected β_c next to deterministic annealing's
  β_c = λ_max of the merging cluster's covariance (Rose et al. 1990; Rose 1998);
- :func:`prop5_study` — which fixed point Eq. 20 reaches, compared with Prop. 5's γ.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Fig. 1 and §3.1 (holes), Fig. 2
    and Appendix A, Prop. 5 and Appendix C.6. K. Rose, E. Gurewitz, G. C. Fox (1990), Phys.
    Rev. Lett. 65, 945; K. Rose (1998), Proc. IEEE 86, 2210.

Example:
    >>> beta_grid("log", 3, 1e-3, 1e-1).tolist()
    [0.001, 0.01, 0.1]
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_builders import mixtures
from geco_base.checks import check_choice, check_finite, check_int, check_positive
from geco_core.theory import (
    CriticalBetas,
    FixedPointSweep,
    LatentGrid,
    critical_beta_from_covariance,
    critical_betas,
    elbo_fixed_point_iteration,
    equipartition_gamma,
    equipartition_objective,
    equipartition_residual,
    fixed_point_energies,
    fixed_point_locations,
    fixed_point_sweep,
    hole_tiles,
    latent_grid,
    location_tolerance,
    merging_clusters,
    tile_average_kl,
    uncovered_prior_mass,
)

__all__ = [
    "beta_grid",
    "beta_grid_table",
    "critical_betas_vs_eigenvalues",
    "data_sources",
    "fig1_holes_table",
    "prop5_study",
]


def fig1_holes_table(
    images: np.ndarray, seeds: Sequence[int], grid_size: int = 48, n_steps: int = 100
) -> pd.DataFrame:
    """Per seed of :func:`geco_core.theory.elbo_fixed_point_iteration`: the prior mass its
    tiling leaves uncovered (holes), the number of hole tiles, the covered cells' masses, the
    average KL and the final σ (Fig. 1's left panel, §3.1's holes problem).

    Example:
        >>> from data_builders.mixtures import tiny_glyphs
        >>> t = fig1_holes_table(tiny_glyphs(), [0, 1], grid_size=16, n_steps=10)
        >>> t.index.tolist(), t.columns[0]
        ([0, 1], 'uncovered prior mass')
    """
    images = np.asarray(images, dtype=np.float64)
    grid = latent_grid(grid_size, 3.0, "normal")
    rows = []
    for seed in seeds:
        q, sigmas = elbo_fixed_point_iteration(images, grid, n_steps=n_steps, seed=int(seed))
        holes = hole_tiles(q)
        owner = q.argmax(axis=0)[~holes]
        cells = np.bincount(owner, weights=grid.prior[~holes], minlength=q.shape[0])
        rows.append(
            {
                "uncovered prior mass": uncovered_prior_mass(q, grid.prior),
                "hole tiles": int(holes.sum()),
                "cell masses (covered)": np.round(cells, 3).tolist(),
                "avg KL": tile_average_kl(q, grid.prior),
                "final σ": float(sigmas[-1]),
            }
        )
    return pd.DataFrame(rows, index=pd.Index([int(s) for s in seeds], name="seed"))


def _defaults(builder) -> dict:
    sig = inspect.signature(builder)
    return {k: v.default for k, v in sig.parameters.items() if v.default is not v.empty}


def data_sources(cfg: dict, seed: int) -> pd.DataFrame:
    """The chapter's data, all synthetic (:mod:`data_builders.mixtures`), with every parameter.

    Example:
        >>> from geco_book.chapters.theory import theory_profile
        >>> data_sources(theory_profile("smoke"), 0)["used for"].tolist()
        ['Fig. 1', 'Fig. 2, Prop. 5', 'Fig. 7 (left)', 'Fig. 7 (right)']
    """
    calls = [
        ("Fig. 1", mixtures.tiny_glyphs, {}),
        ("Fig. 2, Prop. 5", mixtures.fig2_blobs, {"n_per_blob": cfg["n_per_blob"], "seed": seed}),
        (
            "Fig. 7 (left)",
            mixtures.mixture_of_lines,
            {"n_per_line": cfg["lipschitz_points"], "seed": seed},
        ),
        (
            "Fig. 7 (right)",
            mixtures.mixture_of_circles,
            {"n_per_circle": cfg["lipschitz_points"], "seed": seed},
        ),
    ]
    rows = []
    for used, builder, kwargs in calls:
        params = {**_defaults(builder), **kwargs}
        out = builder(**kwargs)
        shape = (out[0] if isinstance(out, tuple) else out).shape
        extra = ", centres FIG2_CENTRES" if builder is mixtures.fig2_blobs else ""
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        rows.append(
            {
                "used for": used,
                "data": f"data_builders.mixtures.{builder.__name__}({args}){extra}",
                "shape": "×".join(str(n) for n in shape),
            }
        )
    return pd.DataFrame(rows)


def beta_grid(spacing: str, size: int, beta_min: float, beta_max: float) -> np.ndarray:
    """A β grid of ``size`` values from ``beta_min`` to ``beta_max``, ``"log"`` or ``"linear"``.

    Example:
        >>> beta_grid("linear", 3, 0.5, 1.5).tolist(), beta_grid("log", 3, 0.1, 10.0).tolist()
        ([0.5, 1.0, 1.5], [0.1, 1.0, 10.0])
    """
    spacing = check_choice(spacing, "spacing", ("log", "linear"))
    size = check_int(size, "size", minimum=3)
    lo, hi = check_positive(beta_min, "beta_min"), check_positive(beta_max, "beta_max")
    return np.geomspace(lo, hi, size) if spacing == "log" else np.linspace(lo, hi, size)


def beta_grid_table(
    x: np.ndarray,
    grid: LatentGrid,
    studies: Sequence[tuple[str, int]],
    cfg: dict,
    seed: int = 0,
    known: dict | None = None,
) -> pd.DataFrame:
    """How Fig. 2's top-3 β_c move with the β grid: one full sweep per ``(spacing, size)``.

    ``cfg`` supplies ``beta_min``, ``beta_max`` and Appendix A's iteration settings
    (:func:`theory_profile`); ``known`` maps a ``(spacing, size)`` to a sweep already run on
    that grid (it is reused). Columns β_c^1..β_c^3 are ranked by curvature height (the
    paper's order); "β_c sorted" lists them increasing.

    Example:
        >>> from geco_book.chapters.theory import theory_profile
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> cfg = theory_profile("smoke", max_iter=20)
        >>> beta_grid_table(x, latent_grid(6), [("log", 8)], cfg).shape
        (1, 7)
    """
    rows = []
    for spacing, size in studies:
        betas = beta_grid(spacing, size, cfg["beta_min"], cfg["beta_max"])
        run = (known or {}).get((spacing, size)) or fixed_point_sweep(
            x, betas, grid, alpha=cfg["alpha"], max_iter=cfg["max_iter"], tol=cfg["tol"],
            init_noise=cfg["init_noise"], seed=seed, progress=False,
        )  # fmt: skip
        top = critical_betas(betas, run.u(), k=3).beta_c
        row = {"β grid": spacing, "size": int(size), "Δβ at β = 0.06": _spacing_at(betas, 0.06)}
        row.update({f"β_c^{k + 1}": (float(top[k]) if k < top.size else np.nan) for k in range(3)})
        row["β_c sorted"] = np.round(np.sort(top), 4).tolist()
        rows.append(row)
    return pd.DataFrame(rows)


def _spacing_at(betas: np.ndarray, beta: float) -> float:
    k = int(np.clip(np.searchsorted(betas, beta), 1, betas.size - 1))
    return float(betas[k] - betas[k - 1])


def critical_betas_vs_eigenvalues(
    x: np.ndarray,
    sweep: FixedPointSweep,
    crit: CriticalBetas,
    labels: np.ndarray | None = None,
    window: float = 1.25,
    min_fraction: float = 0.01,
) -> pd.DataFrame:
    """The detected β_c next to deterministic annealing's prediction β_c = λ_max(C) (Rose et
    al. 1990; Rose 1998) for the cluster that merges there.

    For each β_c, the fixed points at the grid point nearest β_c / ``window`` and at the first
    grid point from β_c · ``window`` on (up to β_c · ``window``³) with fewer of them are located
    (:func:`geco_core.theory.fixed_point_locations` at 5% of the data scale, locations with
    under ``min_fraction`` of the tiles dropped); the fixed point above that absorbed several
    from below is the merge
    (:func:`geco_core.theory.merging_clusters`), and λ_max of its data's covariance
    (:func:`geco_core.theory.critical_beta_from_covariance`) is the prediction.

    Args:
        x: ``[n, 2]`` data of the sweep.
        sweep: the Fig. 2 sweep.
        crit: its :func:`geco_core.theory.critical_betas`.
        labels: optional ``[n]`` component labels (e.g. the blob of each point), to name the
            merging components.
        window: factor (> 1) between β_c and the β where the fixed points are read.
        min_fraction: smallest share of tiles for a location to count as a fixed point.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> b = np.geomspace(1e-3, 1.0, 30)
        >>> run = fixed_point_sweep(x, b, latent_grid(8), progress=False)
        >>> crit = critical_betas(b, run.u(), k=1)
        >>> t = critical_betas_vs_eigenvalues(x, run, crit, window=2.0)
        >>> t["λ_max of the merging cluster"].round(6).tolist()     # (0.4 / 2)²
        [0.04]
    """
    x = np.asarray(x, dtype=np.float64)
    window = check_finite(window, "window")
    if window <= 1:
        raise ValueError(f"window must be > 1, got {window}")
    log_b = np.log(sweep.betas)
    tol = location_tolerance(x)

    def located(k: int) -> np.ndarray:
        centres, mass, _ = fixed_point_locations(sweep.psi[k], tol)
        return centres[mass >= min_fraction * sweep.psi.shape[1]]

    rows = []
    for rank, beta_c in enumerate(crit.beta_c, start=1):
        below = located(int(np.argmin(np.abs(log_b - np.log(beta_c / window)))))
        above = below
        for k in np.flatnonzero((log_b >= np.log(beta_c * window) - 1e-12)
                                & (log_b <= np.log(beta_c * window**3))):  # fmt: skip
            above = located(int(k))
            if len(above) < len(below):  # the first grid point past the merge
                break
        merges = merging_clusters(x, below, above) if len(above) < len(below) else []
        row = {"rank": rank, "β_c detected": float(beta_c), "merges": len(merges)}
        if merges:
            members = merges[0]
            lam = critical_beta_from_covariance(x[members])
            if labels is not None:
                row["merging components"] = sorted(int(c) for c in np.unique(labels[members]))
            row.update(
                {
                    "points": int(members.sum()),
                    "λ_max of the merging cluster": lam,
                    "β_c detected / λ_max": float(beta_c / lam),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("rank")


def prop5_study(x: np.ndarray, beta: float, cfg: dict, seed: int = 0) -> pd.DataFrame:
    """Which fixed point of Eq. 20 the dynamics reach, compared with Prop. 5's γ (Appendix C.6).

    One row per run at ``beta``: Appendix A's set-up on ``cfg["grid_size"]``; the same run with
    ``cfg["p5_long_iter"]`` iterations, tol 1e-6 and float64; finer grids
    (``cfg["p5_grid_sizes"]``); other seeds of the initial noise; a restart from the reached
    state plus N(0, 0.01²) noise; and a start that hands the tiles to the reached fixed points
    in the proportions γ of Prop. 5. Columns: the tile masses the run ends with, Prop. 5's γ for
    its fixed points, the largest |residual| of Prop. 5's condition at the tile masses, and the
    objective J (:func:`geco_core.theory.equipartition_objective`) at both.

    Example:
        >>> from geco_book.chapters.theory import theory_profile
        >>> x = np.array([[-0.2, 0.0], [-0.19, 0.0], [0.2, 0.0]])
        >>> cfg = theory_profile("smoke", grid_size=8, p5_grid_sizes=(8,), max_iter=100)
        >>> prop5_study(x, 1e-3, cfg).shape[0]
        6
    """
    beta = check_positive(beta, "beta")
    size = cfg["grid_size"]
    kw = {"alpha": cfg["alpha"], "init_noise": cfg["init_noise"], "progress": False}
    base = {"max_iter": cfg["max_iter"], "tol": cfg["tol"], **kw}
    long = {"max_iter": cfg["p5_long_iter"], "tol": 1e-6, "dtype": "float64", **kw}
    plan = [(f"grid {size}, Appendix A stop", size, {"seed": seed, **base})]
    plan.append((f"grid {size}, {cfg['p5_long_iter']} it., tol 1e-6, float64", size, long))
    plan += [(f"grid {g}", g, {"seed": seed, **base}) for g in cfg["p5_grid_sizes"] if g != size]
    plan += [(f"grid {size}, seed {seed + k}", size, {"seed": seed + k, **base}) for k in (1, 2)]
    rows, grid = [], latent_grid(size)
    reached = fixed_point_sweep(x, [beta], grid, seed=seed, **base).psi[0]
    noise = np.random.default_rng(seed).normal(0.0, 0.01, reached.shape)
    plan.append(("restart: reached state + noise", size, {"psi0": reached + noise, **base}))
    energies, centres, _ = fixed_point_energies(x, reached, grid)
    counts = np.floor(equipartition_gamma(energies, beta)[0] * grid.n_tiles).astype(int)
    counts[0] += grid.n_tiles - counts.sum()
    plan.append(("start at Prop. 5's γ", size, {"psi0": np.repeat(centres, counts, 0), **base}))
    for label, g, kwargs in plan:
        grid = latent_grid(g)
        run = fixed_point_sweep(x, [beta], grid, **kwargs)
        energies, _, mass = fixed_point_energies(x, run.psi[0], grid)
        gamma, _ = equipartition_gamma(energies, beta)
        rows.append(
            {
                "run": label,
                "iterations": int(run.n_iter[0]),
                "converged": bool(run.converged[0]),
                "tile masses (Eq. 20)": np.round(mass, 3).tolist(),
                "γ (Prop. 5)": np.round(gamma, 3).tolist(),
                "max |residual| at tile masses": float(
                    np.abs(equipartition_residual(energies, beta, mass)).max()
                ),
                "J(tile masses)": equipartition_objective(energies, beta, mass),
                "J(γ)": equipartition_objective(energies, beta, gamma),
            }
        )
    return pd.DataFrame(rows).set_index("run")
