"""Appendix B with the Lipschitz constraint as a *bound*: KKT multipliers instead of a penalty.

Eq. 7 is an inequality constraint with a multiplier Ω(z, z') ≥ 0; in the tile basis (Eq. 8) it
reads, for every pair of tiles closer than r,

    C_ab ‖ψ_a − ψ_b‖² ≤ 1,    C_ab = π_a π_b / (L² K_ab),

i.e. ‖ψ_a − ψ_b‖ ≤ L (‖c_a − c_b‖² + h²/3)^{1/2} for square tiles of side h: an L-Lipschitz
decoder between tiles. :mod:`geco_core.theory.lipschitz` holds the multipliers Ω̃_ab FIXED at a
"strength", which turns Eq. 8 into a quadratic penalty of constant weight; here they are the
multipliers of the bound, non-zero only on pairs where it is active (complementary
slackness). Each step of Eq. 20 is followed by the projection of its output x̄ = F(ψ) onto the
reconstructions that satisfy every bound, in the metric of Eq. 23's data term:

    P(x̄) = argmin_ψ Σ_a q_a ‖ψ_a − x̄_a‖²   subject to   C_ab ‖ψ_a − ψ_b‖² ≤ 1,

with q_a the marginal posterior mass of tile a. Its stationarity condition is Eq. 24 with Ω̃
equal to the KKT multipliers, so P is Prop. 6's projection, Eq. 25, with a P^t that depends on
the step (:func:`bound_multipliers` recovers that W = Ω̃ ∘ C, and
:func:`geco_core.theory.lipschitz.lipschitz_projection` with it reproduces P). The bound does not
depend on β: only the relative weights q_a matter.

- :class:`LipschitzBound`, :func:`lipschitz_bound` — the pairs and their bounds;
- :func:`bound_violation` — max_ab C_ab ‖ψ_a − ψ_b‖² − 1 (≤ 0 when every bound holds);
- :func:`bound_projection` — P by ADMM on the pair differences (warm-startable);
- :func:`bound_multipliers` — the multipliers as Eq. 25's weights W;
- :func:`lipschitz_bound_fixed_points` — Eq. 20 + P at one β for several L (Fig. 7 as a bound).

ADMM (Boyd et al. 2011, §5): variables ψ and z_e = ψ_a − ψ_b per pair e = (a, b); the ψ-step
solves (diag(w) + ρ Dᵀ D) ψ = w ⊙ x̄ + ρ Dᵀ(z − u) by Cholesky (D the pair incidence matrix,
w = q / mean(q)), the z-step clips each difference to its bound, u accumulates the residual.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Eqs. 7–8 and Appendix B, Prop. 6
    and Eqs. 21–25, Fig. 7. S. Boyd et al. (2011), "Distributed optimization and statistical
    learning via the alternating direction method of multipliers", Found. Trends Mach. Learn.

Example:
    >>> from geco_core.theory import latent_grid
    >>> grid = latent_grid(6)
    >>> bound = lipschitz_bound(grid, radius=0.3, lipschitz_constant=0.2)
    >>> psi, _ = bound_projection(grid.centres, grid.prior, bound, n_iter=300)
    >>> bound_violation(grid.centres, bound) > 0, bool(bound_violation(psi, bound) < 1e-3)
    (True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

from geco_base.checks import check_fraction, check_int, check_positive
from geco_core.theory._arrays import as_betas, as_points
from geco_core.theory.fixed_points import FixedPointSweep, _eq20_batch, threadpool_limits
from geco_core.theory.grid import LatentGrid, init_reconstructions, latent_grid
from geco_core.theory.lipschitz import lipschitz_weights

__all__ = [
    "LipschitzBound",
    "bound_multipliers",
    "bound_projection",
    "bound_violation",
    "lipschitz_bound",
    "lipschitz_bound_fixed_points",
]


@dataclass(frozen=True)
class LipschitzBound:
    """The pairs of tiles that Eq. 8 constrains and their bounds.

    Attributes:
        radius: r; pairs of tiles whose centres are closer than r are constrained.
        lipschitz_constant: L.
        pairs: ``[E, 2]`` tile indices (a < b).
        bound: ``[E]`` the largest allowed ‖ψ_a − ψ_b‖, 1/sqrt(C_ab).
        incidence: ``[E, B]`` sparse D, (Dψ)_e = ψ_a − ψ_b.
        incidence_t: ``[B, E]`` sparse Dᵀ.
        laplacian: ``[B, B]`` dense DᵀD.
    """

    radius: float
    lipschitz_constant: float
    pairs: np.ndarray
    bound: np.ndarray
    incidence: scipy.sparse.csr_matrix
    incidence_t: scipy.sparse.csr_matrix
    laplacian: np.ndarray

    @property
    def n_tiles(self) -> int:
        return self.laplacian.shape[0]


def lipschitz_bound(
    grid: LatentGrid, radius: float, lipschitz_constant: float = 1.0
) -> LipschitzBound:
    """Eq. 8's constraints C_ab ‖ψ_a − ψ_b‖² ≤ 1 for tiles closer than ``radius`` (Appendix B).

    C_ab is :func:`geco_core.theory.lipschitz.lipschitz_weights` at strength 1; the bound on
    ‖ψ_a − ψ_b‖ is 1/sqrt(C_ab) = L sqrt(K_ab / (π_a π_b)). On Appendix A's unit square with
    the uniform prior (density 1, π_a = h²) this is L (‖c_a − c_b‖² + h²/3)^{1/2}: the
    Lipschitz bound between tile centres, plus the spread inside the tiles. (Eq. 8's K_ab omits
    the prior density of Eq. 7, which is exact for density 1 only.)

    Example:
        >>> from geco_core.theory import latent_grid
        >>> b = lipschitz_bound(latent_grid(2), radius=0.6)    # h = 1/2, side neighbours only
        >>> b.pairs.tolist(), b.bound.round(4).tolist()      # sqrt(1/4 + 1/12)
        ([[0, 1], [0, 2], [1, 3], [2, 3]], [0.5774, 0.5774, 0.5774, 0.5774])
    """
    c = lipschitz_weights(grid, radius, 1.0, lipschitz_constant)
    ia, ib = np.nonzero(np.triu(c > 0, k=1))
    n_pairs, n_tiles = ia.size, grid.n_tiles
    rows = np.concatenate([np.arange(n_pairs), np.arange(n_pairs)])
    vals = np.concatenate([np.ones(n_pairs), -np.ones(n_pairs)])
    incidence = scipy.sparse.csr_matrix(
        (vals, (rows, np.concatenate([ia, ib]))), shape=(n_pairs, n_tiles)
    )
    return LipschitzBound(
        radius=float(radius),
        lipschitz_constant=float(lipschitz_constant),
        pairs=np.stack([ia, ib], axis=1),
        bound=1.0 / np.sqrt(c[ia, ib]),
        incidence=incidence,
        incidence_t=incidence.T.tocsr(),
        laplacian=(incidence.T @ incidence).toarray(),
    )


def bound_violation(psi: np.ndarray, bound: LipschitzBound) -> float:
    """max_ab C_ab ‖ψ_a − ψ_b‖² − 1 over the constrained pairs: ≤ 0 iff every bound holds.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(2)
        >>> round(bound_violation(g.centres, lipschitz_bound(g, 0.6)), 4)   # 0.25 / (1/3) − 1
        -0.25
    """
    psi = as_points(psi, "psi")
    if psi.shape[0] != bound.n_tiles:
        raise ValueError(f"psi must have {bound.n_tiles} rows, got {psi.shape[0]}")
    if bound.pairs.shape[0] == 0:
        return -1.0
    diff = bound.incidence @ psi
    return float(np.max(np.einsum("ed,ed->e", diff, diff) / bound.bound**2) - 1.0)


def _admm_penalty(bound: LipschitzBound, rho: float) -> float:
    return rho / max(float(bound.laplacian.diagonal().mean()), 1.0)


def bound_projection(
    xbar: np.ndarray,
    marginal: np.ndarray,
    bound: LipschitzBound,
    state: tuple[np.ndarray, np.ndarray] | None = None,
    rho: float = 100.0,
    n_iter: int = 10,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """P(x̄): the q-weighted projection of x̄ onto the reconstructions satisfying every bound.

    ``n_iter`` ADMM iterations (see the module docstring) from ``state`` (the pair differences
    z and scaled duals u of a previous call; ``None`` starts from z = D x̄, u = 0). Inside a
    fixed-point iteration a few warm-started iterations per step suffice, because x̄ changes
    little between steps; a cold projection needs a few hundred for a violation of 1e-3.

    Args:
        xbar: ``[B, d]`` unconstrained update F(ψ) of Eq. 20.
        marginal: ``[B]`` marginal posterior masses q_a ≥ 0, not all zero.
        bound: :func:`lipschitz_bound`.
        state: ``(z, u)``, both ``[E, d]``, or ``None``.
        rho: ADMM penalty relative to the mean pair degree (100 works for Fig. 7's grids).
        n_iter: ADMM iterations.

    Returns:
        ``(psi [B, d], state)``.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(2)
        >>> b = lipschitz_bound(g, radius=0.6, lipschitz_constant=0.5)   # bound 0.2887
        >>> xbar = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
        >>> psi, _ = bound_projection(xbar, np.full(4, 0.25), b, n_iter=500)
        >>> np.round(psi[:2, 0], 3).tolist()              # pulled together to ‖Δ‖ = 0.2887
        [0.356, 0.644]
    """
    xbar = as_points(xbar, "xbar")
    marginal = np.asarray(marginal, dtype=np.float64)
    n_tiles = bound.n_tiles
    if xbar.shape[0] != n_tiles or marginal.shape != (n_tiles,):
        raise ValueError(
            f"xbar and marginal must have {n_tiles} rows, got {xbar.shape}, {marginal.shape}"
        )
    if np.any(marginal < 0) or not np.all(np.isfinite(marginal)) or marginal.sum() <= 0:
        raise ValueError("marginal must be finite, >= 0 and not all zero")
    rho = _admm_penalty(bound, check_positive(rho, "rho"))
    n_iter = check_int(n_iter, "n_iter")
    d_mat = bound.incidence
    if state is None:
        z, u = d_mat @ xbar, np.zeros((d_mat.shape[0], xbar.shape[1]))
    else:
        z, u = (np.array(a, dtype=np.float64) for a in state)
    weight = marginal / marginal.mean()
    system = rho * bound.laplacian
    system[np.diag_indices(n_tiles)] += weight + 1e-9
    factor = scipy.linalg.cho_factor(system, check_finite=False)
    d_t = bound.incidence_t
    data = weight[:, None] * xbar
    limit = bound.bound
    for _ in range(n_iter):
        psi = scipy.linalg.cho_solve(factor, data + rho * (d_t @ (z - u)), check_finite=False)
        v = d_mat @ psi
        v += u
        norm = np.sqrt(np.einsum("ed,ed->e", v, v))
        keep = np.minimum(1.0, limit / np.maximum(norm, 1e-300))[:, None]
        z = v * keep
        u = v - z
    return psi, (z, u)


def bound_multipliers(
    bound: LipschitzBound,
    state: tuple[np.ndarray, np.ndarray],
    marginal: np.ndarray,
    beta: float,
    rho: float = 100.0,
) -> np.ndarray:
    """The KKT multipliers of a converged :func:`bound_projection` as Eq. 25's weights W.

    At an ADMM fixed point w ⊙ (ψ − x̄) + ρ Dᵀu = 0 with ρ u_e = W'_e (ψ_a − ψ_b); on an
    active pair ‖ψ_a − ψ_b‖ equals its bound, so W'_e = ρ ‖u_e‖ / bound_e, and W'_e = 0 on a
    pair whose bound is slack. In the units of
    :func:`geco_core.theory.lipschitz.lipschitz_projection` (data weights q/β instead of
    w = q / mean(q)) W = W' mean(q) / β; Ω̃_ab = W_ab / C_ab are Eq. 8's multipliers.

    Returns:
        ``[B, B]`` symmetric non-negative W with zero diagonal.

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(2)
        >>> b = lipschitz_bound(g, radius=0.6, lipschitz_constant=0.5)
        >>> xbar = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
        >>> psi, st = bound_projection(xbar, np.full(4, 0.25), b, n_iter=500)
        >>> W = bound_multipliers(b, st, np.full(4, 0.25), beta=1.0)
        >>> bool(W[0, 1] > 0), bool(W[0, 2] == 0)             # active pair vs slack pair
        (True, True)
    """
    marginal = np.asarray(marginal, dtype=np.float64)
    beta = float(as_betas(beta)[0])
    rho = _admm_penalty(bound, check_positive(rho, "rho"))
    _, u = state
    w_pair = rho * np.linalg.norm(u, axis=1) / bound.bound
    n_tiles = bound.n_tiles
    weights = np.zeros((n_tiles, n_tiles))
    a, b = bound.pairs[:, 0], bound.pairs[:, 1]
    weights[a, b] = weights[b, a] = w_pair * marginal.mean() / beta
    return weights


def lipschitz_bound_fixed_points(
    x: np.ndarray,
    beta: float,
    lipschitz_constants: Sequence[float],
    radius: float,
    grid: LatentGrid | None = None,
    *,
    alpha: float = 0.9,
    max_iter: int = 400,
    tol: float = 1e-3,
    violation_tol: float = 1e-2,
    init_noise: float = 0.1,
    seed: int = 0,
    rho: float = 100.0,
    n_inner: int = 10,
    record: bool = False,
) -> list[FixedPointSweep]:
    """Fig. 7 with Appendix B's constraint as a bound: Eq. 20, then P, smoothed (Appendix A).

    ψ^{t+1} = α ψ^t + (1 − α) P(F_β(ψ^t)), with F_β Eq. 20, P :func:`bound_projection`
    (``n_inner`` ADMM iterations warm-started from the previous step) and Appendix A's
    initialisation. A run counts as converged when a step moves ψ less than ``tol`` (Appendix
    A's rule) AND every bound holds to ``violation_tol`` (:func:`bound_violation`); otherwise
    it stops at ``max_iter``.

    Args:
        x: ``[n, 2]`` data.
        beta: β > 0.
        lipschitz_constants: the L values, one run each (smaller L = stronger constraint).
        radius: r of the constrained pairs (Fig. 7: 0.2 local, 1.0 global).
        grid: latent grid (default ``latent_grid(32)``).
        alpha, max_iter, tol, init_noise, seed: as in
            :func:`geco_core.theory.fixed_points.fixed_point_sweep`.
        violation_tol: largest C_ab ‖ψ_a − ψ_b‖² − 1 accepted at convergence.
        rho, n_inner: ADMM penalty and iterations per step.
        record: keep every iterate in ``trajectory``.

    Returns:
        One single-β :class:`~geco_core.theory.fixed_points.FixedPointSweep` per L.

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> res = lipschitz_bound_fixed_points(x, 1e-3, [0.1], 0.5, latent_grid(6))
        >>> spread = np.ptp(res[0].psi[0][:, 0])
        >>> res[0].converged.tolist(), bool(spread < 0.2)    # an L = 0.1 map cannot span 0.4
        ([True], True)
    """
    x = as_points(x)
    beta = float(as_betas(beta)[0])
    grid = latent_grid(32) if grid is None else grid
    alpha = check_fraction(alpha, "alpha")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_positive(tol, "tol")
    violation_tol = check_positive(violation_tol, "violation_tol")
    n_data = x.shape[0]
    xa = np.concatenate([x, np.ones((n_data, 1)), (x * x).sum(1, keepdims=True)], axis=1)
    inv_beta = np.array([1.0 / beta])
    log_prior = grid.log_prior - grid.log_prior.max()
    limiter = (
        threadpool_limits(limits=1, user_api="blas")
        if threadpool_limits is not None
        else contextlib.nullcontext()
    )
    out = []
    with limiter:
        for constant in lipschitz_constants:
            bound = lipschitz_bound(grid, radius, check_positive(constant, "lipschitz_constant"))
            psi = init_reconstructions(grid, init_noise, seed, dim=x.shape[1])
            frames = [psi.astype(np.float32)] if record else None
            state, step, n_done = None, np.inf, 0
            for _ in range(max_iter):
                n_done += 1
                xbar, mass = _eq20_batch(psi[None], xa, inv_beta, log_prior)
                target, state = bound_projection(
                    xbar[0], mass[0] / n_data, bound, state, rho=rho, n_iter=n_inner
                )
                delta = (1.0 - alpha) * (target - psi)
                psi = psi + delta
                step = float(np.sqrt((delta * delta).sum()))
                if frames is not None:
                    frames.append(psi.astype(np.float32))
                if step < tol and bound_violation(psi, bound) < violation_tol:
                    break
            converged = step < tol and bound_violation(psi, bound) < violation_tol
            out.append(
                FixedPointSweep(
                    betas=np.array([beta]),
                    psi=psi[None],
                    n_iter=np.array([n_done]),
                    converged=np.array([converged]),
                    last_step=np.array([step]),
                    grid=grid,
                    x=x,
                    trajectory=None if frames is None else np.stack(frames)[:, None],
                )
            )
    return out
