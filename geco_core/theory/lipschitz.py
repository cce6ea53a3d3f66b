"""Appendix B and Prop. 6: Lipschitz constraints between tiles, applied as a projection.

Tiles have no notion of neighbourhood, so the paper adds a Lipschitz penalty between tiles
closer than r (Eqs. 7–8) and shows that, at the fixed point, it acts as a linear projection
applied after every step of Eq. 20 (Eqs. 21–25).

- :func:`tile_distance_moments` — K_ab of Appendix B (below Eq. 8), in closed form;
- :func:`lipschitz_weights` — W = Ω̃ ∘ C, the penalty of Eq. 8 in the tile basis;
- :func:`lipschitz_projection` — Eq. 25, ψ = P x̄ by a Cholesky solve;
- :func:`neighbour_spread` — the distance between nearby reconstructions that the penalty shrinks.

The constrained iteration itself is :func:`geco_core.theory.fixed_points.fixed_point_sweep`
with ``lipschitz=W``, and :func:`geco_core.theory.fixed_points.lipschitz_fixed_points` for
several strengths. Holding the multipliers Ω̃ at a fixed "strength" makes Eq. 8 a quadratic
penalty of constant weight (the −1 drops out), not a Lipschitz bound; the bound itself, with
the KKT multipliers of the active pairs, is :mod:`geco_core.theory.lipschitz_bounds`.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Eqs. 7–8 and Appendix B (the
    Lipschitz penalty), Prop. 6 and Eqs. 21–25 (the projection), Fig. 7.

Example:
    >>> from geco_core.theory import latent_grid
    >>> grid = latent_grid(4)
    >>> W = lipschitz_weights(grid, radius=0.3, strength=1e-3)
    >>> psi = lipschitz_projection(grid.centres, grid.prior, W, beta=1e-3)
    >>> bool(neighbour_spread(psi, grid, 0.3) < neighbour_spread(grid.centres, grid, 0.3))
    True
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from geco_base.checks import check_nonnegative, check_positive
from geco_core.theory._arrays import as_points
from geco_core.theory.grid import LatentGrid

__all__ = [
    "lipschitz_projection",
    "lipschitz_weights",
    "neighbour_spread",
    "tile_distance_moments",
]


def tile_distance_moments(grid: LatentGrid) -> np.ndarray:
    """K_ab = ∫∫ φ_a(z) φ_b(z') ‖z − z'‖² dz dz' of Appendix B (below Eq. 8), in closed form.

    For square tiles of side h and dimension 2, z and z' are independent and uniform on their
    tiles, so E‖z − z'‖² = ‖c_a − c_b‖² + 2·(2·h²/12) and K_ab = h⁴ (‖c_a − c_b‖² + h²/3)
    (the diagonal K_aa = h⁶/3 is the spread within one tile).

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(2, half_width=1.0)           # h = 1
        >>> np.round(tile_distance_moments(g)[0], 4).tolist()
        [0.3333, 1.3333, 1.3333, 2.3333]
    """
    diff = grid.centres[:, None, :] - grid.centres[None, :, :]
    h = grid.side
    return h**4 * ((diff**2).sum(-1) + h**2 / 3)


def lipschitz_weights(
    grid: LatentGrid, radius: float, strength: float, lipschitz_constant: float = 1.0
) -> np.ndarray:
    """W_ab = Ω̃_ab C_ab, the quadratic Lipschitz penalty of Eq. 8 in the tile basis.

    Eq. 8 writes the constraint of Eq. 7 as ½ Σ_ab Ω̃_ab [C_ab ‖ψ_a − ψ_b‖² − 1] with
    C_ab = π_a π_b / (L² K_ab) (:func:`tile_distance_moments`). We hold the multipliers fixed,
    Ω̃_ab = ``strength`` for tiles whose centres are closer than ``radius`` (and 0 otherwise):
    the support of Ω(z, z') sets local (r = 0.2) versus global (r = 1.0, nearly every pair of
    the unit square) constraints, and ``strength`` is the "strength" of Fig. 7.

    Args:
        grid: latent grid.
        radius: neighbourhood radius r > 0 in latent units.
        strength: Ω̃ inside the radius, ≥ 0.
        lipschitz_constant: L > 0; only the ratio ``strength / L²`` matters.

    Returns:
        ``[B, B]`` symmetric non-negative matrix with zero diagonal.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> W = lipschitz_weights(latent_grid(4), radius=0.3, strength=1.0)
        >>> W.shape, bool(np.allclose(W, W.T)), int((W[0] > 0).sum())   # 2 side neighbours
        ((16, 16), True, 2)
    """
    radius = check_positive(radius, "radius")
    strength = check_nonnegative(strength, "strength")
    lipschitz_constant = check_positive(lipschitz_constant, "lipschitz_constant")
    diff = grid.centres[:, None, :] - grid.centres[None, :, :]
    near = (diff**2).sum(-1) < radius**2
    np.fill_diagonal(near, False)
    c = np.outer(grid.prior, grid.prior) / (lipschitz_constant**2 * tile_distance_moments(grid))
    return np.where(near, strength * c, 0.0)


def lipschitz_projection(
    xbar: np.ndarray, marginal: np.ndarray, weights: np.ndarray, beta: float
) -> np.ndarray:
    """Eq. 25 (Prop. 6): the Lipschitz-constrained reconstructions ψ = P x̄, by a linear solve.

    Setting the gradient of Eq. 23 with respect to ψ_a to zero (Eq. 24) gives, with
    x̄_a = Σ_i x_i m_ia / Σ_i m_ia the unconstrained update of Eq. 20, q_a = π_a Σ_i m_ia / n the
    marginal posterior mass of tile a, σ² = β and Λ = diag(W1) − W the graph Laplacian of
    W = Ω̃ ∘ C,

        (I + D Λ) ψ = x̄,    D = diag(n σ² / (1ᵀm ⊙ π)) = diag(β / q),

    i.e. P = (I + D Λ)^{-1}. We solve the equivalent symmetric positive-definite system
    (diag(q/β) + Λ) ψ = diag(q/β) x̄ by Cholesky (``scipy.linalg.cho_factor``) — no inverse is
    formed. Two deliberate readings of the printed Eq. 24–25: (i) Eq. 25 prints
    I − DΛ; with the penalty ½Σ Ω̃_ab C_ab ‖ψ_a − ψ_b‖² ≥ 0 of Eq. 21 the stationarity
    condition has a plus sign (the minus sign would push neighbouring reconstructions apart);
    (ii) we take the penalty's prefactor so that Eq. 25's D holds exactly (Eq. 23's 1/2n
    would rescale ``strength`` by a constant). The unconstrained limit W = 0 returns x̄; a tile
    with no posterior mass (a "hole", q_a = 0) becomes the W-weighted average of its
    neighbours.

    Args:
        xbar: ``[B, d]`` unconstrained update F(ψ) of Eq. 20.
        marginal: ``[B]`` marginal posterior tile masses q_a ≥ 0 (they sum to 1).
        weights: ``[B, B]`` symmetric non-negative W (:func:`lipschitz_weights`).
        beta: β > 0 (σ² of Eq. 25).

    Returns:
        ``[B, d]`` projected reconstructions.

    Raises:
        ValueError: bad shapes or values.

    Example:
        >>> W = np.array([[0.0, 1.0], [1.0, 0.0]])
        >>> xbar = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> np.round(lipschitz_projection(xbar, np.array([0.5, 0.5]), W, 0.5), 4).tolist()
        [[0.3333, 0.0], [0.6667, 0.0]]
    """
    xbar = as_points(xbar, "xbar")
    marginal = np.asarray(marginal, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_tiles = xbar.shape[0]
    if marginal.shape != (n_tiles,) or np.any(marginal < 0) or not np.all(np.isfinite(marginal)):
        raise ValueError(f"marginal must be {n_tiles} finite masses >= 0, got {marginal.shape}")
    if weights.shape != (n_tiles, n_tiles):
        raise ValueError(f"weights must be [{n_tiles}, {n_tiles}], got {weights.shape}")
    beta = check_positive(beta, "beta")
    if not np.any(weights):
        return xbar.copy()
    data_term = marginal / beta
    system = -weights.copy()
    system[np.diag_indices(n_tiles)] += weights.sum(axis=1) + data_term
    # A tiny ridge keeps the factorisation defined when a connected group of tiles has q = 0.
    system[np.diag_indices(n_tiles)] += 1e-12 * system.diagonal().max()
    factor = scipy.linalg.cho_factor(system, check_finite=False)
    return scipy.linalg.cho_solve(factor, data_term[:, None] * xbar, check_finite=False)


def neighbour_spread(psi: np.ndarray, grid: LatentGrid, radius: float) -> float:
    """Mean ‖ψ_a − ψ_b‖ over tile pairs whose centres are closer than ``radius``.

    The quantity a Lipschitz constraint (Appendix B) should shrink as its strength grows.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(2)
        >>> neighbour_spread(g.centres, g, radius=0.6)   # side neighbours only, 0.5 apart
        0.5
    """
    psi = as_points(psi, "psi")
    radius = check_positive(radius, "radius")
    diff = grid.centres[:, None, :] - grid.centres[None, :, :]
    a, b = np.nonzero(np.triu((diff**2).sum(-1) < radius**2, k=1))
    return float(np.linalg.norm(psi[a] - psi[b], axis=1).mean())
