"""Prop. 4: the β-VAE fixed-point equations on the tiled latent space (Eqs. 19–20, Appendix A).

- :func:`tile_responsibilities` — Eq. 19, the encoder's tile masses p_ib = π_b m_ib;
- :func:`fixed_point_map` — Eq. 20 for one β, the plain float64 reference;
- :func:`fixed_point_sweep` — Eq. 20 batched over β with Appendix A's smoothing (α = 0.9) and
  stopping rule (a step < 1e-3 or 400 steps), optionally followed by the Lipschitz projection
  of Eq. 25 (:func:`geco_core.theory.lipschitz.lipschitz_projection`);
- :func:`lipschitz_fixed_points` — Prop. 6: the same iteration at one β for several Lipschitz
  strengths (Fig. 7's constrained rows).

Conventions: data ``x`` is ``[n, d]``, the grid has ``B`` tiles, β plays the role of the decoder
variance σ² (Eq. 19 writes e^{-‖x-ψ‖²/2β}), and arrays over a β sweep carry β first (``K``).

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Prop. 4, Eqs. 19–20, Appendix A;
    Prop. 6 and Eq. 25 for the constrained iteration.

Example:
    >>> x = np.array([[-0.25, 0.0], [0.25, 0.0]])
    >>> res = fixed_point_sweep(x, [1e-3, 1.0], grid=latent_grid(8), seed=0, progress=False)
    >>> res.psi.shape, res.converged.tolist()
    ((2, 64, 2), [True, True])
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.special
from tqdm import tqdm

from geco_base.checks import check_choice, check_fraction, check_int, check_positive
from geco_core.theory._arrays import as_betas, as_points, sq_dists
from geco_core.theory.grid import LatentGrid, init_reconstructions, latent_grid
from geco_core.theory.lipschitz import lipschitz_projection, lipschitz_weights
from geco_core.theory.phase import reconstruction_error

try:  # optional: keeps the many small Cholesky solves of Eq. 25 on one BLAS thread
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - without it BLAS keeps its default thread count
    threadpool_limits = None

__all__ = [
    "FixedPointSweep",
    "fixed_point_map",
    "fixed_point_sweep",
    "lipschitz_fixed_points",
    "tile_responsibilities",
]


def tile_responsibilities(
    x: np.ndarray, psi: np.ndarray, beta: float, log_prior: np.ndarray
) -> np.ndarray:
    """Eq. 19: the encoder's tile masses p_ib = π_b m_ib = π_b e^{-‖x_i−ψ_b‖²/2β} / c_i.

    Row i is the posterior q(z|x_i) summed over tile b, so every row sums to 1
    (Prop. 4's constraint Σ_a m_ia π_a = 1). Computed in log-space (``logsumexp``).

    Args:
        x: ``[n, d]`` data.
        psi: ``[B, d]`` reconstruction vectors.
        beta: β > 0.
        log_prior: ``[B]`` log π_b.

    Returns:
        ``[n, B]`` array of p_ib.

    Example:
        >>> x = np.array([[0.0, 0.0]]); psi = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> p = tile_responsibilities(x, psi, 0.5, np.log([0.5, 0.5]))
        >>> np.round(p, 4).tolist()   # e^0 : e^-1
        [[0.7311, 0.2689]]
    """
    x, psi = as_points(x), as_points(psi, "psi")
    beta = float(as_betas(beta)[0])
    logits = -sq_dists(x, psi) / (2 * beta) + np.asarray(log_prior)[None, :]
    return np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True))


def fixed_point_map(
    x: np.ndarray, psi: np.ndarray, beta: float, log_prior: np.ndarray
) -> np.ndarray:
    """Eq. 20, one β, plain float64: ψ_b ← Σ_i x_i m_ib / Σ_i m_ib with m from Eq. 19.

    This is the readable reference for the batched :func:`fixed_point_sweep`. Since
    m_ib = p_ib / π_b, the weights over i for a fixed tile b are a softmax over i of
    ``log p_ib`` (the π_b cancels).

    Example:
        >>> x = np.array([[-1.0, 0.0], [1.0, 0.0]])
        >>> psi = np.array([[-0.5, 0.0], [0.5, 0.0]])
        >>> np.round(fixed_point_map(x, psi, 1e-2, np.log([0.5, 0.5])), 6).tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
    """
    x, psi = as_points(x), as_points(psi, "psi")
    beta = float(as_betas(beta)[0])
    logits = -sq_dists(x, psi) / (2 * beta) + np.asarray(log_prior)[None, :]
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    weights = np.exp(log_p - scipy.special.logsumexp(log_p, axis=0, keepdims=True))  # over i
    return weights.T @ x


@dataclass
class FixedPointSweep:
    """Result of :func:`fixed_point_sweep`.

    Attributes:
        betas: ``[K]`` the β values.
        psi: ``[K, B, d]`` reconstruction vectors when the iteration stopped (float64).
        n_iter: ``[K]`` iterations run per β.
        converged: ``[K]`` whether the last step moved less than ``tol``.
        last_step: ``[K]`` Euclidean (Frobenius) norm of the last step ψ^{t+1} − ψ^t.
        grid: the latent grid.
        x: ``[n, d]`` the data.
        trajectory: ``[T + 1, K, B, d]`` float32 iterates ψ⁰..ψ^T when ``record=True``
            (β values that stopped early repeat their last iterate), else ``None``.
    """

    betas: np.ndarray
    psi: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    last_step: np.ndarray
    grid: LatentGrid
    x: np.ndarray
    trajectory: np.ndarray | None = field(default=None, repr=False)

    def u(self) -> np.ndarray:
        """u(β) at the stopping point of every β (see :func:`reconstruction_error`)."""
        return reconstruction_error(self.x, self.psi, self.betas, self.grid.log_prior)

    def select(self, k: int) -> FixedPointSweep:
        """The single-β sweep of entry ``k`` (trajectory included)."""
        sl = slice(k, k + 1)
        return FixedPointSweep(
            betas=self.betas[sl],
            psi=self.psi[sl],
            n_iter=self.n_iter[sl],
            converged=self.converged[sl],
            last_step=self.last_step[sl],
            grid=self.grid,
            x=self.x,
            trajectory=None if self.trajectory is None else self.trajectory[:, sl],
        )


def _eq20_batch(
    psi: np.ndarray,
    xa: np.ndarray,
    inv_beta: np.ndarray,
    log_prior: np.ndarray,
    work: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 20 for a batch of β: returns (F(ψ) ``[k, B, d]`` float64, Σ_i p_ib ``[k, B]``).

    ``xa`` is ``[n, d + 2]``, the rows ``[x_i, 1, ‖x_i‖²]``, so that ONE batched matrix product
    gives every exponent of Eq. 19 and one more gives numerator and denominator of Eq. 20:

    - a_ib = −‖x_i − ψ_b‖²/2β + log π_b − max_b log π_b
      = [x_i, 1, ‖x_i‖²] · [ψ_b/β, log π_b − max log π − ‖ψ_b‖²/2β, −1/2β] ≤ 0, so exp never
      overflows (a batch in which some row's exponentials all underflow is redone with exact
      row maxima);
    - p_ib = e^{a_ib} / Σ_b e^{a_ib} are the tile masses π_b m_ib of Eq. 19;
    - F(ψ)_b = Σ_i p_ib x_i / Σ_i p_ib (the π_b of m_ib = p_ib/π_b cancels), Eq. 20.

    Columns whose mass Σ_i p_ib underflows (tiles far from every data point at small β) are
    recomputed in log-space, so no 0/0 ever reaches ψ. ``work`` is an optional scratch buffer
    of at least ``k·n·B`` entries of ``psi.dtype`` (it avoids a large allocation per call).
    """
    k, n_tiles, d = psi.shape
    n = xa.shape[0]
    dtype = psi.dtype
    tiny = np.finfo(dtype).tiny * 1e8
    proj = np.empty((k, d + 2, n_tiles), dtype=dtype)
    np.multiply(psi.transpose(0, 2, 1), inv_beta[:, None, None], out=proj[:, :d])
    proj[:, d] = log_prior - 0.5 * inv_beta[:, None] * np.einsum("kbd,kbd->kb", psi, psi)
    proj[:, d + 1] = -0.5 * inv_beta[:, None]
    if work is None:
        work = np.empty(k * n * n_tiles, dtype=dtype)
    exps = work[: k * n * n_tiles].reshape(k, n, n_tiles)
    np.matmul(xa, proj, out=exps)  # a_ib <= 0 up to round-off
    shift = np.zeros((k, n, 1), dtype=dtype)
    np.exp(exps, out=exps)
    row_sum = exps.sum(axis=2, keepdims=True)
    if row_sum.min() < tiny:  # a data point far from every ψ_b: use the exact row maximum
        np.matmul(xa, proj, out=exps)
        shift = exps.max(axis=2, keepdims=True)
        exps -= shift
        np.exp(exps, out=exps)
        row_sum = exps.sum(axis=2, keepdims=True)
    moments = (exps.transpose(0, 2, 1) @ (xa[:, : d + 1] / row_sum)).astype(np.float64)
    mass = moments[..., d]  # Σ_i p_ib, i.e. n × the marginal posterior mass of tile b
    bad = mass < tiny
    if bad.any():
        mass[bad] = 1.0
    xbar = moments[..., :d] / mass[..., None]
    if bad.any():
        kk, bb = np.nonzero(bad)
        logits = np.einsum("jc,ic->ji", proj[kk, :, bb].astype(np.float64), xa.astype(np.float64))
        log_p = logits - shift[kk, :, 0] - np.log(row_sum[kk, :, 0])
        top = log_p.max(axis=1, keepdims=True)
        w = np.exp(log_p - top)
        total = w.sum(axis=1, keepdims=True)
        xbar[kk, bb] = (w / total) @ xa[:, :d].astype(np.float64)
        mass[kk, bb] = np.exp(top[:, 0]) * total[:, 0]
    return xbar, mass


def fixed_point_sweep(
    x: np.ndarray,
    betas: float | Sequence[float] | np.ndarray,
    grid: LatentGrid | None = None,
    *,
    alpha: float = 0.9,
    max_iter: int = 400,
    tol: float = 1e-3,
    init_noise: float = 0.1,
    seed: int = 0,
    psi0: np.ndarray | None = None,
    lipschitz: np.ndarray | None = None,
    record: bool = False,
    dtype: str = "float32",
    chunk: int = 8,
    progress: bool = True,
) -> FixedPointSweep:
    """Iterate Eq. 20 with Appendix A's smoothing and stopping rule, for many β at once.

    Appendix A: ψ starts at the tile centres plus U[-0.1, 0.1] noise (:func:`init_reconstructions`;
    the same draw for every β), and every step is exponentially smoothed with α = 0.9,

        ψ^{t+1} = α ψ^t + (1 − α) F_β(ψ^t),

    where F_β is Eq. 20 (Eq. 19's m and c inside); α weights the old iterate, as in the
    moving average of Algorithm 1 (C_ma ← α C_ma + (1 − α) Ĉ). Each β stops on its own once
    ‖ψ^{t+1} − ψ^t‖ (the Euclidean norm of the whole matrix) drops below ``tol`` = 1e-3, or
    after ``max_iter`` = 400 steps; stopped β values leave the batch.

    With ``lipschitz`` (a ``[B, B]`` matrix W = Ω̃ ∘ C from :func:`lipschitz_weights`) every
    F_β(ψ) is followed by the projection of Eq. 25 (Prop. 6):
    ψ^{t+1} = α ψ^t + (1 − α) P(F_β(ψ^t)).

    Speed: β is a leading batch dimension, processed ``chunk`` values at a time so the
    ``[chunk, n, B]`` work arrays stay in cache; exponents come from one matrix product per
    chunk (see ``_eq20_batch``). ``dtype="float32"`` is the default for speed: the stopping
    tolerance 1e-3 on a 2,048-entry matrix is far above float32 round-off; results are
    returned in float64.

    Args:
        x: ``[n, 2]`` data (in [-1/2, 1/2]² for Appendix A's initialisation to make sense).
        betas: ``[K]`` values of β > 0.
        grid: latent grid; default ``latent_grid(32)`` (Appendix A).
        alpha: smoothing α ∈ [0, 1) (Appendix A: 0.9; 0 is the plain iteration).
        max_iter: maximum number of steps (Appendix A: 400).
        tol: stop when a step moves ψ less than this (Appendix A: 1e-3).
        init_noise: half-width of the initial uniform noise (Appendix A: 0.1).
        seed: seed of the initial noise.
        psi0: optional ``[B, d]`` or ``[K, B, d]`` initial ψ replacing Appendix A's.
        lipschitz: optional ``[B, B]`` Lipschitz weights (Appendix B).
        record: keep every iterate (memory: ``(T + 1)·K·B·d`` float32 values).
        dtype: ``"float32"`` or ``"float64"`` arithmetic for the Eq. 20 map.
        chunk: β values per batch.
        progress: show a tqdm bar over iterations.

    Returns:
        A :class:`FixedPointSweep`.

    Raises:
        ValueError: bad shapes or values (α ∉ [0, 1), β ≤ 0, tol ≤ 0, ...), or ``record`` with
            more than 5·10⁸ values to store.
        TypeError: a scalar argument of the wrong type (e.g. a float ``max_iter``).

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> res = fixed_point_sweep(x, [1e-4, 1.0], latent_grid(8), progress=False)
        >>> res.converged.tolist(), np.round(res.psi[1].mean(0), 3).tolist()
        ([True, True], [0.0, 0.0])
    """
    x = as_points(x)
    betas = as_betas(betas)
    grid = latent_grid(32) if grid is None else grid
    alpha = check_fraction(alpha, "alpha")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_positive(tol, "tol")
    chunk = check_int(chunk, "chunk")
    dtype = check_choice(dtype, "dtype", ("float32", "float64"))
    n_betas, n_tiles, d = betas.size, grid.n_tiles, x.shape[1]
    if psi0 is None:
        psi_start = init_reconstructions(grid, init_noise, seed, dim=d)
    else:
        psi_start = np.asarray(psi0, dtype=np.float64)
        if psi_start.shape not in ((n_tiles, d), (n_betas, n_tiles, d)):
            raise ValueError(
                f"psi0 must have shape {(n_tiles, d)} or {(n_betas, n_tiles, d)}, "
                f"got {psi_start.shape}"
            )
    psi = np.array(np.broadcast_to(psi_start, (n_betas, n_tiles, d)), dtype=np.float64)
    if lipschitz is not None:
        lipschitz = np.asarray(lipschitz, dtype=np.float64)
        if lipschitz.shape != (n_tiles, n_tiles):
            raise ValueError(f"lipschitz must be [{n_tiles}, {n_tiles}], got {lipschitz.shape}")
    if record and (max_iter + 1) * psi.size > 5e8:
        raise ValueError("record=True would store more than 5e8 values; record fewer betas")

    n_data = x.shape[0]
    xa = np.concatenate([x, np.ones((n_data, 1)), (x * x).sum(1, keepdims=True)], axis=1)
    xa = xa.astype(dtype)
    inv_beta = (1.0 / betas).astype(dtype)
    log_prior = (grid.log_prior - grid.log_prior.max()).astype(dtype)
    n_iter = np.zeros(n_betas, dtype=np.int64)
    last_step = np.full(n_betas, np.inf)
    active = np.ones(n_betas, dtype=bool)
    frames = [psi.astype(np.float32)] if record else None

    work = np.empty(min(chunk, n_betas) * x.shape[0] * n_tiles, dtype=dtype)
    # Eq. 25 needs one dense Cholesky per step; multi-threaded BLAS on a busy 2-core machine
    # made each of them 20-50x slower in our measurements, so the solves run on one thread.
    if lipschitz is not None and threadpool_limits is not None:
        limiter = threadpool_limits(limits=1, user_api="blas")
    else:
        limiter = contextlib.nullcontext()
    bar = tqdm(range(max_iter), desc="Eq. 20 fixed points", disable=not progress, leave=False)
    with limiter:
        for _ in bar:
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            for start in range(0, idx.size, chunk):
                sel = idx[start : start + chunk]
                old = psi[sel]
                new, mass = _eq20_batch(old.astype(dtype), xa, inv_beta[sel], log_prior, work)
                if lipschitz is not None:
                    new = np.stack(
                        [
                            lipschitz_projection(new[j], mass[j] / n_data, lipschitz, betas[s])
                            for j, s in enumerate(sel)
                        ]
                    )
                delta = new - old
                delta *= 1.0 - alpha  # ψ^{t+1} − ψ^t = (1 − α)(F(ψ^t) − ψ^t)
                step = np.sqrt(np.einsum("kbd,kbd->k", delta, delta))
                if not np.all(np.isfinite(step)):
                    raise FloatingPointError("Eq. 20 produced a non-finite ψ; check x and betas")
                psi[sel] = old + delta
                n_iter[sel] += 1
                last_step[sel] = step
                active[sel] = step >= tol
            if frames is not None:
                frames.append(psi.astype(np.float32))
            bar.set_postfix(active=int(active.sum()))
    bar.close()
    return FixedPointSweep(
        betas=betas,
        psi=psi,
        n_iter=n_iter,
        converged=last_step < tol,
        last_step=last_step,
        grid=grid,
        x=x,
        trajectory=None if frames is None else np.stack(frames),
    )


def lipschitz_fixed_points(
    x: np.ndarray,
    beta: float,
    strengths: Sequence[float],
    radius: float,
    grid: LatentGrid | None = None,
    **sweep_kwargs,
) -> list[FixedPointSweep]:
    """Fig. 7's middle (r = 0.2) and bottom (r = 1.0) rows: Eq. 20 + the projection of Eq. 25
    (Prop. 6) at one β for several constraint strengths (0 means unconstrained).

    Args:
        x: ``[n, 2]`` data.
        beta: β > 0.
        strengths: Ω̃ values (:func:`lipschitz_weights`).
        radius: neighbourhood radius r.
        grid: latent grid (default ``latent_grid(32)``).
        **sweep_kwargs: passed to :func:`fixed_point_sweep` (``alpha``, ``max_iter``, ``seed``,
            ``record``, ``progress``, ...).

    Returns:
        One single-β :class:`FixedPointSweep` per strength.

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> res = lipschitz_fixed_points(x, 1e-3, [0.0, 1.0], 0.2, latent_grid(6),
        ...                              progress=False)
        >>> len(res), res[0].psi.shape
        (2, (1, 36, 2))
    """
    grid = latent_grid(32) if grid is None else grid
    out = []
    for strength in strengths:
        weights = None if strength == 0 else lipschitz_weights(grid, radius, strength)
        out.append(fixed_point_sweep(x, [beta], grid, lipschitz=weights, **sweep_kwargs))
    return out
