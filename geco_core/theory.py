"""Fixed points of high-capacity VAEs: Propositions 1–6 and Appendices A–C of "Taming VAEs".

Everything here is numpy/scipy on a *discretised* latent space: the latent square is cut into a
grid of tiles φ_a (Prop. 4's orthogonal basis of indicator functions), the prior becomes the
tile masses π_a, the encoder q(z|x_i) becomes a table of tile masses, and the decoder becomes one
reconstruction vector ψ_a per tile. No trained network is needed.

Map of the module (grep for the equation number to land on its function):

- Props 1–3 (Eqs. 3–4, 13–17): :func:`latent_grid`, :func:`equiprobable_partition`,
  :func:`restricted_prior_posteriors`, :func:`average_kl`, :func:`partition_kl`,
  :func:`optimal_decoder` (Eq. 4), :func:`overlap_reconstruction` (Eq. 17),
  :func:`elbo_fixed_point_step` (Eqs. 3–4), :func:`elbo_fixed_point_iteration` (Eq. 15),
  :func:`fig1_tiling_example`.
- Prop 4 and Fig. 2 (Eqs. 19–20, Appendix A): :func:`init_reconstructions`,
  :func:`tile_responsibilities` (Eq. 19), :func:`fixed_point_map` (Eq. 20, reference version),
  :func:`fixed_point_sweep` (Eq. 20 batched over β, Appendix A's smoothing and stopping),
  :func:`reconstruction_error` (u(β), §3.2), :func:`second_derivative`,
  :func:`critical_betas`, :func:`cluster_fixed_points`, :func:`collapse_beta`.
- Prop 5 (Appendix C.6): :func:`equipartition_gamma`, :func:`equipartition_residual`,
  :func:`equipartition_objective`, :func:`equipartition_gamma_direct`.
- Appendix B and Prop 6 (Eqs. 7–8, 21–25): :func:`tile_distance_moments`,
  :func:`lipschitz_weights` (Eq. 8), :func:`lipschitz_projection` (Eq. 25),
  :func:`neighbour_spread`, :func:`lipschitz_fixed_points`.
- Chapter settings: :func:`theory_profile`.

Conventions: data ``x`` is ``[n, d]`` (Fig. 1's images are flattened by the callers), the latent
grid has ``B = size²`` tiles, ``β`` plays the role of the decoder variance σ² (Eq. 19 writes
e^{-‖x-ψ‖²/2β}), and arrays over a β sweep carry β as their leading dimension ``K``.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Props. 1–6, Eqs. 3–6, 8, 17,
    19–20, 21–25, Appendices A, B, C.

Example:
    >>> import numpy as np
    >>> grid = latent_grid(8)
    >>> x = np.array([[-0.25, 0.0], [0.25, 0.0]])
    >>> res = fixed_point_sweep(x, [1e-3, 1.0], grid=grid, seed=0, progress=False)
    >>> [len(cluster_fixed_points(p)[0]) for p in res.psi]   # β small: 2 points; β large: 1
    [2, 1]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.signal
import scipy.special
import scipy.stats
from scipy.cluster.hierarchy import fcluster, linkage
from tqdm import tqdm

from geco_core.profiles import resolve_profile

try:  # optional: keeps the many small Cholesky solves of Eq. 25 on one BLAS thread
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - without it BLAS keeps its default thread count
    threadpool_limits = None

__all__ = [
    "CriticalBetas",
    "FixedPointSweep",
    "LatentGrid",
    "THEORY_PROFILES",
    "TilingExample",
    "average_kl",
    "cluster_counts",
    "cluster_fixed_points",
    "collapse_beta",
    "critical_betas",
    "critical_betas_table",
    "elbo_fixed_point_iteration",
    "elbo_fixed_point_step",
    "equipartition_gamma",
    "equipartition_gamma_direct",
    "equipartition_objective",
    "equipartition_residual",
    "equipartition_table",
    "equiprobable_partition",
    "expected_reconstruction_error",
    "fig1_tiling_example",
    "fig7_runs",
    "fixed_point_energies",
    "fixed_point_map",
    "fixed_point_sweep",
    "init_reconstructions",
    "latent_grid",
    "lipschitz_fixed_points",
    "lipschitz_projection",
    "lipschitz_table",
    "lipschitz_weights",
    "neighbour_spread",
    "optimal_decoder",
    "overlap_reconstruction",
    "partition_kl",
    "reconstruction_error",
    "representative_betas",
    "restricted_prior_posteriors",
    "second_derivative",
    "supports_from_labels",
    "theory_profile",
    "tile_distance_moments",
    "tile_responsibilities",
]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _as_points(x: np.ndarray | Sequence, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape [n, d] with n, d >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _as_betas(betas: float | Sequence[float] | np.ndarray) -> np.ndarray:
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or betas.size < 1:
        raise ValueError(f"betas must be a number or a 1-D sequence, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        raise ValueError(f"betas must be finite and > 0, got {betas}")
    return betas


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    return alpha


def _check_positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def _check_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_prior(prior: np.ndarray, n_tiles: int | None = None) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.ndim != 1 or (n_tiles is not None and prior.size != n_tiles):
        raise ValueError(f"prior must be a 1-D array of {n_tiles} tile masses, got {prior.shape}")
    if np.any(prior <= 0) or not np.all(np.isfinite(prior)):
        raise ValueError("prior masses must be finite and > 0")
    if abs(prior.sum() - 1.0) > 1e-8:
        raise ValueError(f"prior masses must sum to 1, got {prior.sum()}")
    return prior


# ---------------------------------------------------------------------------------------------
# The discretised latent space (Prop. 4's basis, Appendix A)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentGrid:
    """A ``size × size`` grid of square tiles φ_a over ``[-half_width, half_width]²``.

    Attributes:
        size: tiles per side; ``n_tiles = size²`` (Appendix A: 32, i.e. 1,024 tiles).
        half_width: the grid covers ``[-half_width, half_width]²`` (Appendix A: 1/2).
        centres: ``[n_tiles, 2]`` tile centres, row-major (x varies fastest).
        prior: ``[n_tiles]`` prior masses π_a = E_π[φ_a(z)], summing to 1.
        side: the tile side length h.
    """

    size: int
    half_width: float
    centres: np.ndarray
    prior: np.ndarray
    side: float

    @property
    def n_tiles(self) -> int:
        return self.size * self.size

    @property
    def log_prior(self) -> np.ndarray:
        return np.log(self.prior)


def latent_grid(size: int = 32, half_width: float = 0.5, prior: str = "uniform") -> LatentGrid:
    """The tiled latent space of Prop. 4 and Appendix A.

    Appendix A uses ``size=32`` on ``[-1/2, 1/2]²`` with the uniform prior π(z) = 1, so every
    tile has mass π_a = 1/1024. ``prior="normal"`` discretises the paper's default prior
    N(0, I) (§3) instead: π_a is the Gaussian mass of tile a, renormalised over the grid (use a
    ``half_width`` of about 3 so that little mass is cut off).

    Args:
        size: tiles per side.
        half_width: the grid covers ``[-half_width, half_width]²``.
        prior: ``"uniform"`` or ``"normal"``.

    Returns:
        A :class:`LatentGrid`.

    Raises:
        ValueError: ``size < 1``, ``half_width <= 0`` or an unknown ``prior``.

    Example:
        >>> g = latent_grid(32)
        >>> g.n_tiles, float(g.prior[0]) == 1 / 1024, g.centres[0].tolist()
        (1024, True, [-0.484375, -0.484375])
    """
    size = _check_int(size, "size")
    half_width = _check_positive(half_width, "half_width")
    side = 2 * half_width / size
    ticks = -half_width + side * (np.arange(size) + 0.5)
    gx, gy = np.meshgrid(ticks, ticks, indexing="xy")
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if prior == "uniform":
        masses = np.full(size * size, 1.0 / (size * size))
    elif prior == "normal":
        edges = -half_width + side * np.arange(size + 1)
        per_axis = np.diff(scipy.stats.norm.cdf(edges))
        masses = np.outer(per_axis, per_axis).ravel()  # row = y, column = x: row-major like centres
        masses = masses / masses.sum()
    else:
        raise ValueError(f"unknown prior {prior!r}; valid choices are 'uniform', 'normal'")
    return LatentGrid(size, half_width, centres, masses, side)


def init_reconstructions(
    grid: LatentGrid, noise: float = 0.1, seed: int = 0, dim: int = 2
) -> np.ndarray:
    """Initial reconstruction vectors ψ⁰ of Appendix A: tile centres plus U[-noise, noise].

    Appendix A initialises "the matrix ψ at the center-points of the grid tiles with small
    uniform noise in [-0.1, 0.1]". The tile centres are latent points, and ψ_a lives in data
    space; with 2-D data in the same square [-1/2, 1/2]² (as all of
    :mod:`data_builders.mixtures`) we read this as the identity embedding ψ⁰_a = c_a + ε_a,
    ε_a ~ U[-noise, noise]², i.e. the reconstructions start on the uniform 2-D grid that Fig. 7
    describes ("initial conditions on an uniform 2D grid").

    Args:
        grid: the latent grid.
        noise: half-width of the uniform noise (Appendix A: 0.1).
        seed: seed of ``numpy.random.default_rng``.
        dim: data dimension; must be 2 (the embedding is the identity).

    Returns:
        ``[n_tiles, 2]`` float64 array.

    Example:
        >>> psi = init_reconstructions(latent_grid(4), noise=0.0)
        >>> psi[:2].tolist()
        [[-0.375, -0.375], [-0.125, -0.375]]
    """
    if dim != 2:
        raise ValueError(f"dim must be 2 (tile centres are 2-D latent points), got {dim}")
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    return grid.centres + rng.uniform(-noise, noise, size=grid.centres.shape)


# ---------------------------------------------------------------------------------------------
# Prop. 4: Eqs. 19–20 (reference, float64, one β)
# ---------------------------------------------------------------------------------------------


def _sq_dists(x: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """‖x_i − ψ_b‖², ``[..., n, B]`` for ``x`` ``[n, d]`` and ``psi`` ``[..., B, d]``."""
    diff = x[:, None, :] - psi[..., None, :, :]
    return np.einsum("...ibd,...ibd->...ib", diff, diff)


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
    x, psi = _as_points(x), _as_points(psi, "psi")
    beta = float(_as_betas(beta)[0])
    logits = -_sq_dists(x, psi) / (2 * beta) + np.asarray(log_prior)[None, :]
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
    x, psi = _as_points(x), _as_points(psi, "psi")
    beta = float(_as_betas(beta)[0])
    logits = -_sq_dists(x, psi) / (2 * beta) + np.asarray(log_prior)[None, :]
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    weights = np.exp(log_p - scipy.special.logsumexp(log_p, axis=0, keepdims=True))  # over i
    return weights.T @ x


# ---------------------------------------------------------------------------------------------
# Prop. 4: Eq. 20 batched over β, with Appendix A's smoothing and stopping rule
# ---------------------------------------------------------------------------------------------


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

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> res = fixed_point_sweep(x, [1e-4, 1.0], latent_grid(8), progress=False)
        >>> res.converged.tolist(), np.round(res.psi[1].mean(0), 3).tolist()
        ([True, True], [0.0, 0.0])
    """
    x = _as_points(x)
    betas = _as_betas(betas)
    grid = latent_grid(32) if grid is None else grid
    alpha = _check_alpha(alpha)
    max_iter = _check_int(max_iter, "max_iter", minimum=0)
    tol = _check_positive(tol, "tol")
    chunk = _check_int(chunk, "chunk")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"unknown dtype {dtype!r}; valid choices are 'float32', 'float64'")
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


# ---------------------------------------------------------------------------------------------
# Order parameter u(β), its curvature and the critical temperatures (§3.2, Fig. 2)
# ---------------------------------------------------------------------------------------------


def reconstruction_error(
    x: np.ndarray,
    psi: np.ndarray,
    betas: float | Sequence[float] | np.ndarray,
    log_prior: np.ndarray,
) -> np.ndarray:
    """The order parameter u(β) = E_{ρ(x) q(z|x)} ‖x − g(z)‖² of §3.2 (Fig. 2, bottom left).

    With the tiled encoder of Prop. 4, q(z|x_i) puts mass p_ib (Eq. 19) on tile b, where the
    decoder outputs ψ_b, and ρ is the empirical data distribution, so

        u(β) = (1/n) Σ_i Σ_b p_ib(β) ‖x_i − ψ_b‖²,

    with p computed from the same ψ (at a fixed point encoder and decoder agree). float64,
    log-space.

    Args:
        x: ``[n, d]`` data.
        psi: ``[B, d]`` or ``[K, B, d]`` reconstruction vectors (one set per β).
        betas: β, one per leading entry of ``psi``.
        log_prior: ``[B]`` log tile masses.

    Returns:
        ``[K]`` array of u(β) (a 0-d array for ``psi`` ``[B, d]``).

    Example:
        >>> x = np.array([[-1.0, 0.0], [1.0, 0.0]])
        >>> psi = np.zeros((4, 2))             # everything collapsed to the mean
        >>> float(reconstruction_error(x, psi, 1.0, np.log(np.full(4, 0.25))))
        1.0
    """
    x = _as_points(x)
    psi = np.asarray(psi, dtype=np.float64)
    single = psi.ndim == 2
    psi = psi[None] if single else psi
    betas = _as_betas(betas)
    if betas.size != psi.shape[0]:
        raise ValueError(f"need one beta per psi set: {betas.size} betas, {psi.shape[0]} sets")
    log_prior = np.asarray(log_prior, dtype=np.float64)
    out = np.empty(betas.size)
    for k in range(betas.size):
        dist = _sq_dists(x, psi[k])
        logits = -dist / (2 * betas[k]) + log_prior
        p = np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True))
        out[k] = (p * dist).sum() / x.shape[0]
    return out[0] if single else out


def second_derivative(betas: np.ndarray, u: np.ndarray, wrt: str = "beta") -> np.ndarray:
    """∂²u/∂β² on a possibly non-uniform β grid (three-point finite differences).

    For neighbours s_{k−1} < s_k < s_{k+1} with gaps h₋ = s_k − s_{k−1}, h₊ = s_{k+1} − s_k,

        u''(s_k) ≈ 2 [h₋ u_{k+1} − (h₋ + h₊) u_k + h₊ u_{k−1}] / [h₋ h₊ (h₋ + h₊)],

    which is exact for quadratics (it is the second derivative of the interpolating parabola).
    The end points reuse the parabola through their three nearest points. ``wrt="log_beta"``
    differentiates with respect to s = ln β instead (scale-free curvature for log-spaced
    sweeps); the paper's Fig. 2 uses β.

    Args:
        betas: ``[K]`` strictly increasing abscissae, K ≥ 3.
        u: ``[K]`` values.
        wrt: ``"beta"`` or ``"log_beta"``.

    Returns:
        ``[K]`` array of second derivatives (signed; take ``abs`` for Fig. 2).

    Example:
        >>> b = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
        >>> second_derivative(b, 3 * b**2 + b).round(8).tolist()
        [6.0, 6.0, 6.0, 6.0, 6.0]
    """
    s = _as_betas(betas)
    u = np.asarray(u, dtype=np.float64)
    if u.shape != s.shape:
        raise ValueError(f"u must have the shape of betas {s.shape}, got {u.shape}")
    if s.size < 3:
        raise ValueError(f"need at least 3 betas for a second derivative, got {s.size}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("betas must be strictly increasing")
    if wrt == "log_beta":
        s = np.log(s)
    elif wrt != "beta":
        raise ValueError(f"unknown wrt {wrt!r}; valid choices are 'beta', 'log_beta'")
    centre = np.clip(np.arange(s.size), 1, s.size - 2)
    s0, s1, s2 = s[centre - 1], s[centre], s[centre + 1]
    u0, u1, u2 = u[centre - 1], u[centre], u[centre + 1]
    hm, hp = s1 - s0, s2 - s1
    return 2 * (hm * u2 - (hm + hp) * u1 + hp * u0) / (hm * hp * (hm + hp))


@dataclass
class CriticalBetas:
    """Top local maxima of |∂²u/∂β²| (Fig. 2 caption), highest first.

    Attributes:
        beta_c: ``[k]`` critical β values.
        height: ``[k]`` |u''| at those β.
        index: ``[k]`` their indices into the β grid.
        curvature: ``[K]`` |u''| over the whole grid.
    """

    beta_c: np.ndarray
    height: np.ndarray
    index: np.ndarray
    curvature: np.ndarray


def critical_betas(
    betas: np.ndarray, u: np.ndarray, k: int = 3, wrt: str = "beta"
) -> CriticalBetas:
    """Critical temperatures β_c: the ``k`` highest local maxima of |∂²u/∂β²| (Fig. 2).

    The Fig. 2 caption sorts the local maxima of the curvature of u(β) by height and keeps the
    top 3. Local maxima are interior grid points (``scipy.signal.find_peaks``), so the ends of
    the sweep never count as transitions.

    Args:
        betas: ``[K]`` increasing β grid (any spacing).
        u: ``[K]`` u(β) from :func:`reconstruction_error`.
        k: how many to keep.
        wrt: curvature with respect to ``"beta"`` (the paper) or ``"log_beta"``.

    Returns:
        :class:`CriticalBetas` (fewer than ``k`` entries when there are fewer maxima).

    Example:
        >>> b = np.linspace(0.0, 2.0, 41)[1:]
        >>> u = np.minimum(b, 1.0)                        # a kink at β = 1
        >>> critical_betas(b, u, k=1).beta_c.round(3).tolist()
        [1.0]
    """
    k = _check_int(k, "k")
    curvature = np.abs(second_derivative(betas, u, wrt=wrt))
    peaks, _ = scipy.signal.find_peaks(curvature)
    order = peaks[np.argsort(-curvature[peaks], kind="stable")][:k]
    return CriticalBetas(
        beta_c=np.asarray(betas, dtype=np.float64)[order],
        height=curvature[order],
        index=order,
        curvature=curvature,
    )


def representative_betas(beta_c: np.ndarray, beta_min: float, beta_max: float) -> np.ndarray:
    """One β inside each phase delimited by the critical temperatures (for Fig. 2's top row).

    Returns the geometric midpoints of consecutive sorted boundaries
    ``[beta_min, *sorted(beta_c), beta_max]``: one β per phase, between two transitions.

    Example:
        >>> representative_betas(np.array([0.1]), 0.01, 1.0).round(4).tolist()
        [0.0316, 0.3162]
    """
    beta_min = _check_positive(beta_min, "beta_min")
    beta_max = _check_positive(beta_max, "beta_max")
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
        crit: :func:`critical_betas` output.
        counts: ``[K]`` :func:`cluster_counts` of the sweep.
        collapse: optional :func:`collapse_beta`, reported as ratio β_c / λ_max(Σ).
        window: factor (> 1) between β_c and the β where the counts are read.

    Example:
        >>> b = np.linspace(0.1, 2.0, 20); u = np.minimum(b, 1.0)
        >>> t = critical_betas_table(b, critical_betas(b, u, k=1), (b < 1) + 1)
        >>> t.columns.tolist(), t.iloc[0, 2:].tolist()
        (['β_c', "|u''|", 'fixed points below', 'fixed points above'], [2, 1])
    """
    import pandas as pd

    betas = np.asarray(betas, dtype=np.float64)
    counts = np.asarray(counts)
    window = float(window)
    if not window > 1:
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


def cluster_fixed_points(
    psi: np.ndarray, tol: float = 1e-2, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deduplicate reconstruction vectors: single-linkage clusters closer than ``tol``.

    Args:
        psi: ``[B, d]`` reconstruction vectors (one β).
        tol: two vectors closer than ``tol`` share a cluster (chains allowed).
        weights: optional ``[B]`` tile masses; cluster centres are weighted means.

    Returns:
        ``(centres [m, d], mass [m], labels [B])``: ``mass`` is the summed weight (the count
        when ``weights`` is ``None``), clusters sorted by decreasing mass.

    Example:
        >>> psi = np.array([[0.0, 0.0], [0.001, 0.0], [1.0, 1.0]])
        >>> c, m, lab = cluster_fixed_points(psi)
        >>> c.round(4).tolist(), m.tolist()
        ([[0.0005, 0.0], [1.0, 1.0]], [2.0, 1.0])
    """
    psi = _as_points(psi, "psi")
    tol = _check_positive(tol, "tol")
    w = np.ones(psi.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if psi.shape[0] == 1:
        return psi.copy(), w.copy(), np.zeros(1, dtype=np.int64)
    raw = fcluster(linkage(psi, method="single"), t=tol, criterion="distance") - 1
    n_clusters = raw.max() + 1
    mass = np.bincount(raw, weights=w, minlength=n_clusters)
    sums = np.stack(
        [
            np.bincount(raw, weights=w * psi[:, j], minlength=n_clusters)
            for j in range(psi.shape[1])
        ],
        axis=1,
    )
    order = np.argsort(-mass, kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(n_clusters)
    return (sums / mass[:, None])[order], mass[order], relabel[raw].astype(np.int64)


def cluster_counts(psi: np.ndarray, tol: float = 1e-2, min_fraction: float = 0.01) -> np.ndarray:
    """Number of distinct fixed points per β for ``psi`` ``[K, B, d]``.

    Clusters come from :func:`cluster_fixed_points`; those holding fewer than ``min_fraction``
    of the tiles are not counted: they are stragglers, single ψ_b still travelling between two
    basins when the stopping rule (a step of the WHOLE matrix below 1e-3) fired, not fixed
    points. ``min_fraction=0`` counts everything.

    Example:
        >>> psi = np.zeros((2, 3, 2)); psi[1, 0] = 1.0
        >>> cluster_counts(psi, min_fraction=0).tolist()
        [1, 2]
    """
    psi = np.asarray(psi, dtype=np.float64)
    if psi.ndim != 3:
        raise ValueError(f"psi must be [K, B, d], got {psi.shape}")
    min_fraction = float(min_fraction)
    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must lie in [0, 1), got {min_fraction}")
    counts = []
    for p in psi:
        mass = cluster_fixed_points(p, tol)[1]
        counts.append(int((mass >= min_fraction * p.shape[0]).sum()))
    return np.array(counts, dtype=np.int64)


def collapse_beta(x: np.ndarray) -> float:
    """The largest critical β: above it every ψ collapses onto the data mean (Eq. 20).

    Our derivation (not in the paper): ψ_b = x̄ for all b is a fixed point of Eq. 20 for every
    β (then m_ib = 1). Linearising Eq. 20 around it, a perturbation δ_b of ψ_b maps to
    Σ (δ_b − Σ_a π_a δ_a) / β, where Σ = (1/n) Σ_i (x_i − x̄)(x_i − x̄)ᵀ is the data covariance.
    Perturbations grow iff λ_max(Σ) > β, so the collapsed state is stable exactly for
    β > λ_max(Σ); the exponential smoothing does not move this threshold.

    Example:
        >>> collapse_beta(np.array([[-0.25, 0.0], [0.25, 0.0]]))
        0.0625
    """
    x = _as_points(x)
    centred = x - x.mean(axis=0)
    return float(np.linalg.eigvalsh(centred.T @ centred / x.shape[0])[-1])


# ---------------------------------------------------------------------------------------------
# Appendix B and Prop. 6: Lipschitz constraints as a projection (Eqs. 7–8, 21–25)
# ---------------------------------------------------------------------------------------------


def tile_distance_moments(grid: LatentGrid) -> np.ndarray:
    """K_ab = ∫∫ φ_a(z) φ_b(z') ‖z − z'‖² dz dz' of Appendix B (below Eq. 8), in closed form.

    For square tiles of side h and dimension 2, z and z' are independent and uniform on their
    tiles, so E‖z − z'‖² = ‖c_a − c_b‖² + 2·(2·h²/12) and K_ab = h⁴ (‖c_a − c_b‖² + h²/3)
    (the diagonal K_aa = h⁶/3 is the spread within one tile).

    Example:
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
        >>> W = lipschitz_weights(latent_grid(4), radius=0.3, strength=1.0)
        >>> W.shape, bool(np.allclose(W, W.T)), int((W[0] > 0).sum())   # 2 side neighbours
        ((16, 16), True, 2)
    """
    radius = _check_positive(radius, "radius")
    strength = float(strength)
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be finite and >= 0, got {strength}")
    lipschitz_constant = _check_positive(lipschitz_constant, "lipschitz_constant")
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
    xbar = _as_points(xbar, "xbar")
    marginal = np.asarray(marginal, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_tiles = xbar.shape[0]
    if marginal.shape != (n_tiles,) or np.any(marginal < 0) or not np.all(np.isfinite(marginal)):
        raise ValueError(f"marginal must be {n_tiles} finite masses >= 0, got {marginal.shape}")
    if weights.shape != (n_tiles, n_tiles):
        raise ValueError(f"weights must be [{n_tiles}, {n_tiles}], got {weights.shape}")
    beta = _check_positive(beta, "beta")
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
        >>> g = latent_grid(2)
        >>> neighbour_spread(g.centres, g, radius=0.6)   # side neighbours only, 0.5 apart
        0.5
    """
    psi = _as_points(psi, "psi")
    radius = _check_positive(radius, "radius")
    diff = grid.centres[:, None, :] - grid.centres[None, :, :]
    a, b = np.nonzero(np.triu((diff**2).sum(-1) < radius**2, k=1))
    return float(np.linalg.norm(psi[a] - psi[b], axis=1).mean())


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
        **sweep_kwargs: passed to :func:`fixed_point_sweep`.

    Returns:
        ``(rows, titles)`` for :func:`geco_core.theory_plots.plot_lipschitz_panels`.
    """
    beta = _check_positive(beta, "beta")
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


def lipschitz_table(rows: dict[str, list[FixedPointSweep]], radius: float = 0.2):
    """``pandas.DataFrame``: per Fig. 7 panel, β, strength label, iterations, the neighbour
    spread (:func:`neighbour_spread` with ``radius``) and the number of distinct fixed points.

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> rows, titles = fig7_runs(x, 1e-3, [1e-3], latent_grid(6), max_iter=5,
        ...                          progress=False)
        >>> lipschitz_table(rows).shape
        (5, 5)
    """
    import pandas as pd

    records = []
    for label, runs in rows.items():
        for res in runs:
            records.append(
                {
                    "row": label,
                    "β": float(res.betas[0]),
                    "iterations": int(res.n_iter[0]),
                    f"mean ‖ψ_a − ψ_b‖, tiles < {radius:g} apart": neighbour_spread(
                        res.psi[0], res.grid, radius
                    ),
                    "distinct fixed points": int(cluster_counts(res.psi)[0]),
                }
            )
    return pd.DataFrame(records)


# ---------------------------------------------------------------------------------------------
# Props. 1–3: tilings, the optimal decoder, average KL and blur (Eqs. 3–4, 13–17)
# ---------------------------------------------------------------------------------------------


def equiprobable_partition(grid: LatentGrid, n: int, by: str = "angle") -> np.ndarray:
    """Assign every tile to one of ``n`` data points so that each gets prior mass ≈ 1/n (Prop. 2).

    Tiles are swept in order (``by="angle"``: polar angle around the origin, giving pie slices,
    which for a rotation-invariant prior are exactly equiprobable in the continuum; ``"x"`` or
    ``"y"``: stripes) and cut where the cumulative prior mass crosses k/n, using the mass
    midpoint of each tile. Each cell's mass is then within one tile mass of 1/n.

    Args:
        grid: latent grid.
        n: number of data points (cells), 1 ≤ n ≤ number of tiles.
        by: sweep order, ``"angle"``, ``"x"`` or ``"y"``.

    Returns:
        ``[B]`` int labels in ``0..n-1``.

    Example:
        >>> g = latent_grid(4)
        >>> labels = equiprobable_partition(g, 4, by="x")
        >>> np.bincount(labels, weights=g.prior).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    n = _check_int(n, "n")
    if n > grid.n_tiles:
        raise ValueError(f"n must be at most the number of tiles {grid.n_tiles}, got {n}")
    cx, cy = grid.centres[:, 0], grid.centres[:, 1]
    if by == "angle":
        key = np.lexsort((np.hypot(cx, cy), np.arctan2(cy, cx)))
    elif by == "x":
        key = np.lexsort((cy, cx))
    elif by == "y":
        key = np.lexsort((cx, cy))
    else:
        raise ValueError(f"unknown by {by!r}; valid choices are 'angle', 'x', 'y'")
    mass = grid.prior[key]
    midpoint = np.cumsum(mass) - mass / 2
    labels = np.empty(grid.n_tiles, dtype=np.int64)
    labels[key] = np.minimum((midpoint * n).astype(np.int64), n - 1)
    return labels


def supports_from_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """``[n, B]`` boolean supports Ω_i from tile labels (a partition).

    Example:
        >>> supports_from_labels(np.array([0, 1, 1]), 2).astype(int).tolist()
        [[1, 0, 0], [0, 1, 1]]
    """
    labels = np.asarray(labels)
    n = _check_int(n, "n")
    if labels.ndim != 1 or labels.min() < 0 or labels.max() >= n:
        raise ValueError(f"labels must be a 1-D array of ints in [0, {n}), got {labels}")
    return labels[None, :] == np.arange(n)[:, None]


def restricted_prior_posteriors(supports: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Prop. 2's encoder q(z|x_i) = π(z) 𝟙[z ∈ Ω_i] / π_i, as tile masses ``[n, B]``.

    Each row is the prior restricted to the support Ω_i and renormalised by
    π_i = E_π[𝟙[z ∈ Ω_i]]; supports may overlap (Prop. 3) or leave holes (Fig. 1).

    Example:
        >>> S = np.array([[True, True, False], [False, True, True]])
        >>> restricted_prior_posteriors(S, np.array([0.5, 0.25, 0.25])).round(4).tolist()
        [[0.6667, 0.3333, 0.0], [0.0, 0.5, 0.5]]
    """
    supports = np.asarray(supports, dtype=bool)
    prior = _check_prior(prior, supports.shape[-1] if supports.ndim == 2 else None)
    if supports.ndim != 2:
        raise ValueError(f"supports must be [n, B], got {supports.shape}")
    mass = supports @ prior
    if np.any(mass <= 0):
        raise ValueError(
            f"every support needs prior mass > 0; empty rows {np.flatnonzero(mass <= 0)}"
        )
    return supports * prior[None, :] / mass[:, None]


def average_kl(q: np.ndarray, prior: np.ndarray) -> float:
    """(1/n) Σ_i KL[q(z|x_i) ‖ π(z)] for tile masses ``q`` ``[n, B]`` (Appendix C.2).

    Computed from the definition (``scipy.special.rel_entr``), so it is an independent check
    of the closed form :func:`partition_kl`.

    Example:
        >>> g = latent_grid(4)
        >>> q = restricted_prior_posteriors(supports_from_labels(
        ...     equiprobable_partition(g, 4, by="x"), 4), g.prior)
        >>> bool(abs(average_kl(q, g.prior) - np.log(4)) < 1e-12)
        True
    """
    q = np.asarray(q, dtype=np.float64)
    prior = _check_prior(prior, q.shape[-1] if q.ndim == 2 else None)
    if q.ndim != 2 or np.any(q < 0) or not np.allclose(q.sum(axis=1), 1.0):
        raise ValueError("q must be [n, B] with non-negative rows summing to 1")
    return float(scipy.special.rel_entr(q, prior[None, :]).sum(axis=1).mean())


def partition_kl(cell_masses: np.ndarray) -> float:
    """Appendix C.2: E[KL] = −(1/n) Σ_i ln π_i for the encoder of Prop. 2 on a partition.

    It is minimised, at ln n, by the equiprobable partition π_i = 1/n (Jensen); any other
    partition pays more.

    Example:
        >>> bool(abs(partition_kl(np.full(5, 0.2)) - np.log(5)) < 1e-12)
        True
        >>> bool(partition_kl(np.array([0.5, 0.3, 0.2])) > np.log(3))
        True
    """
    cell_masses = np.asarray(cell_masses, dtype=np.float64)
    if cell_masses.ndim != 1 or np.any(cell_masses <= 0):
        raise ValueError("cell_masses must be a 1-D array of positive masses")
    return float(-np.log(cell_masses).mean())


def optimal_decoder(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq. 4: g(z) = Σ_i w_i(z) x_i with w_i(z) = q(z|x_i) / Σ_j q(z|x_j), tile by tile.

    ``q`` may be tile masses or densities (π_a cancels in w). Where no posterior puts mass
    (Σ_j q_ja = 0: a "hole", Fig. 1) the ELBO leaves the decoder unconstrained; we return NaN
    there on purpose, so that a hole can never pass for a reconstruction.

    Args:
        q: ``[n, B]`` non-negative.
        x: ``[n, ...]`` data (points or images).

    Returns:
        ``[B, ...]`` reconstructions, NaN on holes.

    Example:
        >>> q = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.0]])
        >>> optimal_decoder(q, np.array([[0.0], [1.0]])).ravel().tolist()
        [0.0, 0.5, nan]
    """
    q = np.asarray(q, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if q.ndim != 2 or x.shape[0] != q.shape[0] or np.any(q < 0):
        raise ValueError(f"q must be non-negative [n, B] with n = len(x); got {q.shape}, {x.shape}")
    total = q.sum(axis=0)
    holes = total <= 0
    w = q / np.where(holes, 1.0, total)[None, :]
    g = np.tensordot(w, x, axes=(0, 0))
    g[holes] = np.nan
    return g


def overlap_reconstruction(supports: np.ndarray, prior: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq. 17 (Prop. 3): with overlapping supports the optimal reconstruction is the average of
    the data points whose tiles cover z, weighted by their inverse prior masses 1/π_i.

        g(z) = Σ_{i: z ∈ Ω_i} x_i (1/π_i) / Σ_{j: z ∈ Ω_j} (1/π_j)

    This is the closed form; :func:`optimal_decoder` applied to
    :func:`restricted_prior_posteriors` must agree with it. NaN on holes.

    Example:
        >>> S = np.array([[True, True], [False, True]])
        >>> g = overlap_reconstruction(S, np.array([0.5, 0.5]), np.array([[0.0], [3.0]]))
        >>> g.ravel().tolist()        # second tile: weights 1/1.0 and 1/0.5 → (0 + 2·3)/3
        [0.0, 2.0]
    """
    supports = np.asarray(supports, dtype=bool)
    prior = _check_prior(prior, supports.shape[1])
    x = np.asarray(x, dtype=np.float64)
    inv_mass = 1.0 / (supports @ prior)
    weights = supports * inv_mass[:, None]
    total = weights.sum(axis=0)
    holes = total == 0
    g = np.tensordot(weights / np.where(holes, 1.0, total)[None, :], x, axes=(0, 0))
    g[holes] = np.nan
    return g


def expected_reconstruction_error(q: np.ndarray, x: np.ndarray, g: np.ndarray) -> float:
    """E_{ρ(x) q(z|x)} ‖x − g(z)‖² for tile masses ``q`` ``[n, B]`` and decoder ``g`` ``[B, ...]``.

    This is σ² of Eq. 15 (times d_x for the per-coordinate maximum-likelihood variance) and
    the order parameter u of §3.2. Tiles without mass are skipped, so holes (NaN) are fine.

    Example:
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> expected_reconstruction_error(q, np.array([[0.0], [1.0]]), np.array([[0.0], [0.5]]))
        0.125
    """
    q = np.asarray(q, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(q.shape[0], -1)
    g = np.asarray(g, dtype=np.float64).reshape(q.shape[1], -1)
    used = q.sum(axis=0) > 0
    dist = ((x[:, None, :] - g[None, used, :]) ** 2).sum(-1)
    return float((q[:, used] * dist).sum() / q.shape[0])


def elbo_fixed_point_step(
    q: np.ndarray, x: np.ndarray, prior: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """One round of Prop. 1's ELBO fixed-point equations on the tile grid.

    Eq. 4 first, g^t = Σ_i w_i^t x_i with w from q^t; then Eq. 3,
    q^{t+1}(z|x_i) ∝ π(z) exp(−‖x_i − g^t(z)‖² / 2σ²), as tile masses (log-space).

    Args:
        q: ``[n, B]`` tile masses of the current encoder (rows sum to 1, no holes).
        x: ``[n, ...]`` data.
        prior: ``[B]`` prior tile masses.
        sigma: decoder standard deviation σ > 0.

    Returns:
        ``(q_next [n, B], g [B, ...])``.

    Raises:
        ValueError: ``q`` leaves a hole (Eq. 3 needs g everywhere) or bad arguments.

    Example:
        >>> prior = np.full(4, 0.25)
        >>> q = restricted_prior_posteriors(supports_from_labels(np.array([0, 0, 1, 1]), 2),
        ...                                 prior)
        >>> q_next, g = elbo_fixed_point_step(q, np.array([[0.0], [1.0]]), prior, sigma=0.05)
        >>> bool(np.allclose(q_next, q))         # Prop. 2: a partition is a fixed point
        True
    """
    q = np.asarray(q, dtype=np.float64)
    prior = _check_prior(prior, q.shape[1])
    sigma = _check_positive(sigma, "sigma")
    g = optimal_decoder(q, x)
    if np.isnan(g).any():
        raise ValueError("q leaves holes (tiles without posterior mass): g is undefined there")
    flat_x = np.asarray(x, dtype=np.float64).reshape(q.shape[0], -1)
    flat_g = g.reshape(q.shape[1], -1)
    dist = ((flat_x[:, None, :] - flat_g[None, :, :]) ** 2).sum(-1)
    logits = np.log(prior)[None, :] - dist / (2 * sigma**2)
    return np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)), g


def elbo_fixed_point_iteration(
    x: np.ndarray,
    grid: LatentGrid,
    n_steps: int = 200,
    seed: int = 0,
    anchor_scale: float = 1.0,
    sigma_floor: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate Eqs. 3–4 with σ re-estimated at every step (Eq. 15): the high-capacity VAE of
    §3.1 trained to convergence on a tiny data set.

    The decoder starts smooth in z: g⁰(z) = Σ_i softmax_i(−‖z − e_i‖² / anchor_scale²) x_i for
    random latent anchors e_i ~ N(0, I); then q ← Eq. 3, g ← Eq. 4 and
    σ² ← E‖x − g(z)‖² / d_x (Eq. 15 with the maximum-likelihood 1/d_x). As §3.1 says, σ
    shrinks towards 0 and q hardens into a partition of the latent grid (Prop. 2); which
    partition depends on the initialisation, and it is generally not equiprobable.

    Args:
        x: ``[n, ...]`` data.
        grid: latent grid (e.g. ``latent_grid(48, 3.0, "normal")``).
        n_steps: iterations.
        seed: seed of the anchors.
        anchor_scale: width of the initial soft assignment.
        sigma_floor: σ is not allowed below this (σ → 0 is the ill-posed limit of §3.1).

    Returns:
        ``(q [n, B], sigmas [n_steps])``: the final encoder and the σ trajectory.

    Example:
        >>> g = latent_grid(8, 3.0, "normal")
        >>> q, s = elbo_fixed_point_iteration(np.array([[0.0], [1.0], [3.0]]), g, 50)
        >>> bool(s[-1] < 1e-3), int((q > 1e-12).sum(axis=0).max())  # σ → 0, one owner per tile
        (True, 1)
    """
    n_steps = _check_int(n_steps, "n_steps")
    anchor_scale = _check_positive(anchor_scale, "anchor_scale")
    sigma_floor = _check_positive(sigma_floor, "sigma_floor")
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    flat_x = x.reshape(n, -1)
    rng = np.random.default_rng(seed)
    anchors = rng.normal(size=(n, 2))
    logits = -((grid.centres[None, :, :] - anchors[:, None, :]) ** 2).sum(-1) / anchor_scale**2
    w0 = np.exp(logits - scipy.special.logsumexp(logits, axis=0, keepdims=True))  # [n, B]
    g = (w0.T @ flat_x).reshape((grid.n_tiles,) + x.shape[1:])
    sigmas = np.empty(n_steps)
    q = None
    for t in range(n_steps):
        flat_g = g.reshape(grid.n_tiles, -1)
        dist = ((flat_x[:, None, :] - flat_g[None, :, :]) ** 2).sum(-1)
        if q is None:
            sigma = math.sqrt(max(dist.mean() / flat_x.shape[1], sigma_floor**2))
        else:
            sigma = math.sqrt(
                max(expected_reconstruction_error(q, x, g) / flat_x.shape[1], sigma_floor**2)
            )
        sigmas[t] = sigma
        lg = grid.log_prior[None, :] - dist / (2 * sigma**2)
        q = np.exp(lg - scipy.special.logsumexp(lg, axis=1, keepdims=True))  # Eq. 3
        g = optimal_decoder(q, x)  # Eq. 4
        if np.isnan(g).any():  # tiles every q has abandoned: keep their previous g
            g = np.where(np.isnan(g), flat_g.reshape(g.shape), g)
    return q, sigmas


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
        kl_learned: average KL of the partition reached by :func:`elbo_fixed_point_iteration`.
        learned_labels: ``[B]`` that partition.
        learned_sigmas: σ over its iterations.
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
       decoder; it converges to a partition that is *not* equiprobable, with average KL > ln n.

    Args:
        images: ``[n, H, W]`` data (e.g. :func:`data_builders.mixtures.tiny_glyphs`).
        grid_size: tiles per side.
        overlap_mass: prior mass of the overlap region (< 1/n).
        hole_centre: latent centre of the hole.
        hole_radius: its radius.
        n_steps: iterations of :func:`elbo_fixed_point_iteration`.
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
    overlap_mass = float(overlap_mass)
    if not 0 < overlap_mass < 1 / n:
        raise ValueError(
            f"overlap_mass must lie in (0, 1/n) = (0, {1 / n:.3g}), got {overlap_mass}"
        )
    hole_radius = float(hole_radius)
    if hole_radius < 0:
        raise ValueError(f"hole_radius must be >= 0, got {hole_radius}")
    grid = latent_grid(grid_size, 3.0, "normal")
    labels = equiprobable_partition(grid, n, by="angle")
    supports = supports_from_labels(labels, n)
    kl_equiprobable = average_kl(restricted_prior_posteriors(supports, grid.prior), grid.prior)

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
    learned_labels = q_learned.argmax(axis=0)
    kl_learned = average_kl(q_learned, grid.prior)
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
    )


# ---------------------------------------------------------------------------------------------
# Prop. 5: equipartition of energy (Appendix C.6)
# ---------------------------------------------------------------------------------------------


def _check_energy(hamiltonian: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    h = np.asarray(hamiltonian, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 1 or not np.all(np.isfinite(h)):
        raise ValueError(f"hamiltonian must be a finite [n, m] array, got shape {h.shape}")
    return h, _check_positive(beta, "beta")


def equipartition_residual(hamiltonian: np.ndarray, beta: float, gamma: np.ndarray) -> np.ndarray:
    """Prop. 5's condition as a residual: R_a = Σ_i e^{−H_ia/β} / Σ_b e^{−H_ib/β} γ_b − n.

    Zero for every a at a solution. Note Σ_a γ_a (R_a + n) = n for ANY γ (sum over a first),
    so a solution automatically has Σ_a γ_a = 1: the normalisation is implied.

    Example:
        >>> H = np.array([[0.0, 50.0], [50.0, 0.0]])
        >>> equipartition_residual(H, 1.0, np.array([0.5, 0.5])).round(6).tolist()
        [0.0, 0.0]
    """
    h, beta = _check_energy(hamiltonian, beta)
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.shape != (h.shape[1],) or np.any(gamma <= 0):
        raise ValueError(f"gamma must be {h.shape[1]} positive numbers, got {gamma}")
    log_k = -h / beta
    log_z = scipy.special.logsumexp(log_k + np.log(gamma)[None, :], axis=1)
    return np.exp(log_k - log_z[:, None]).sum(axis=0) - h.shape[0]


def equipartition_objective(hamiltonian: np.ndarray, beta: float, gamma: np.ndarray) -> float:
    """J(γ) = (1/n) Σ_i ln Σ_b γ_b e^{−H_ib/β}: minus the Lagrangian of Eq. 2 at the optimal
    encoder of Appendix C.6 (up to constants). Prop. 5's condition is its stationarity on the
    simplex: ∂J/∂γ_a = (1/n) Σ_i e^{−H_ia/β}/Z_i = const = 1.

    Example:
        >>> abs(equipartition_objective(np.zeros((3, 2)), 1.0, np.array([0.3, 0.7]))) < 1e-12
        True
    """
    h, beta = _check_energy(hamiltonian, beta)
    gamma = np.asarray(gamma, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_gamma = np.log(gamma)
    return float(scipy.special.logsumexp(-h / beta + log_gamma[None, :], axis=1).mean())


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(a - top).sum(axis=axis))


def equipartition_gamma(
    hamiltonian: np.ndarray,
    beta: float,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    drop_below: float = 1e-12,
) -> tuple[np.ndarray, int]:
    """Solve Prop. 5's equipartition condition for the tile probabilities γ (Appendix C.6).

    Fixed-point (EM / Blahut–Arimoto) iteration: γ_a ← γ_a (1/n) Σ_i e^{−H_ia/β} / Z_i(γ) with
    Z_i = Σ_b γ_b e^{−H_ib/β}. Starting from uniform γ it keeps γ positive and on the simplex
    (Σ_a of the update is exactly 1), never decreases the concave objective
    :func:`equipartition_objective`, and its fixed points with γ_a > 0 are exactly the solutions
    of Σ_i e^{−H_ia/β}/Z_i = n. If no data point favours element a enough, the maximiser has
    γ_a = 0 and the condition holds only on the support (there Σ_i e^{−H_ia/β}/Z_i ≤ n, the
    KKT condition); γ_a then decays geometrically and counts as dropped below ``drop_below``.
    Log-space throughout.

    Args:
        hamiltonian: ``[n, m]`` energies H_ia of data point i on partition element a (for a
            β-VAE, H = ‖x_i − ψ_a‖²/2 with ψ_a the distinct fixed points).
        beta: β > 0.
        tol: stop when |Σ_i e^{−H_ia/β}/Z_i / n − 1| < tol on the support (and the ratio is
            below 1 + tol off it).
        max_iter: iteration cap (``iterations == max_iter`` means not converged).
        drop_below: γ_a below this counts as off the support.

    Returns:
        ``(gamma [m], iterations)``.

    Example:
        >>> H = np.array([[0.0, 9.0, 9.0], [9.0, 0.0, 9.0], [9.0, 9.0, 0.0]])
        >>> g, _ = equipartition_gamma(H, 1.0)
        >>> g.round(6).tolist()
        [0.333333, 0.333333, 0.333333]
    """
    h, beta = _check_energy(hamiltonian, beta)
    tol = _check_positive(tol, "tol")
    max_iter = _check_int(max_iter, "max_iter")
    log_drop = math.log(_check_positive(drop_below, "drop_below"))
    n, m = h.shape
    log_k = -h / beta
    log_gamma = np.full(m, -math.log(m))
    for it in range(1, max_iter + 1):
        log_z = _logsumexp(log_k + log_gamma[None, :], axis=1)
        log_ratio = _logsumexp(log_k - log_z[:, None], axis=0) - math.log(n)
        ratio_minus_one = np.expm1(log_ratio)
        on_support = log_gamma > log_drop
        if np.all(np.abs(ratio_minus_one[on_support]) < tol) and np.all(
            ratio_minus_one[~on_support] < tol
        ):
            return np.exp(log_gamma), it - 1
        log_gamma = log_gamma + log_ratio
        log_gamma -= _logsumexp(log_gamma, axis=0)  # exact in theory; removes round-off
    return np.exp(log_gamma), max_iter


def equipartition_gamma_direct(hamiltonian: np.ndarray, beta: float) -> np.ndarray:
    """Independent check of Prop. 5: maximise :func:`equipartition_objective` directly with
    ``scipy.optimize.minimize`` (L-BFGS-B on softmax logits of γ, analytic gradient).

    Example:
        >>> H = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 0.5]])
        >>> g1, _ = equipartition_gamma(H, 1.0)
        >>> bool(np.allclose(g1, equipartition_gamma_direct(H, 1.0), atol=1e-5))
        True
    """
    h, beta = _check_energy(hamiltonian, beta)
    log_k = -h / beta
    m = h.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_gamma = theta - scipy.special.logsumexp(theta)
        log_z = scipy.special.logsumexp(log_k + log_gamma[None, :], axis=1)
        resp = np.exp(log_k + log_gamma[None, :] - log_z[:, None]).mean(axis=0)  # γ_a ∂J/∂γ_a
        return -float(log_z.mean()), -(resp - np.exp(log_gamma))

    res = scipy.optimize.minimize(
        loss,
        np.zeros(m),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
    )
    return np.exp(res.x - scipy.special.logsumexp(res.x))


def fixed_point_energies(
    x: np.ndarray,
    psi: np.ndarray,
    grid: LatentGrid,
    tol: float = 1e-2,
    min_fraction: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prop. 5's inputs from a converged Eq. 20 run: distinct fixed points and their energies.

    The reconstructions ψ are clustered (:func:`cluster_fixed_points`, clusters with less than
    ``min_fraction`` of the prior mass dropped); cluster a is a partition element Ω_a, and the
    β-VAE "Hamiltonian" of Eq. 19 is H_ia = ‖x_i − ψ_a‖²/2 (so that e^{−H/β} is Eq. 19's kernel).

    Returns:
        ``(H [n, m], centres [m, d], tile_mass [m])``: tile_mass is the prior mass of the tiles
        that Eq. 20 sent to each fixed point (renormalised over the kept clusters).

    Example:
        >>> x = np.array([[-0.2, 0.0], [0.2, 0.0]])
        >>> psi = np.array([[-0.2, 0.0]] * 3 + [[0.2, 0.0]])
        >>> H, c, mass = fixed_point_energies(x, psi, latent_grid(2))
        >>> H.round(3).tolist(), mass.tolist()
        ([[0.0, 0.08], [0.08, 0.0]], [0.75, 0.25])
    """
    x = _as_points(x)
    centres, mass, _ = cluster_fixed_points(psi, tol, weights=grid.prior)
    keep = mass >= min_fraction * mass.sum()
    centres, mass = centres[keep], mass[keep]
    energies = 0.5 * ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return energies, centres, mass / mass.sum()


def equipartition_table(hamiltonian: np.ndarray, beta: float, tile_mass: np.ndarray | None = None):
    """``pandas.DataFrame`` comparing, per partition element a: γ_a from the fixed-point solver,
    from direct maximisation, the data points that prefer a, and (optionally) the tile mass
    Eq. 20 gave it; plus the residual of Prop. 5's condition and the objective J(γ).

    Example:
        >>> H = np.array([[0.0, 9.0], [9.0, 0.0], [8.0, 0.0]])
        >>> equipartition_table(H, 1.0)["γ (Prop. 5 solver)"].round(3).tolist()
        [0.333, 0.667]
    """
    import pandas as pd

    h, beta = _check_energy(hamiltonian, beta)
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
# Chapter settings
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
    },
}


def theory_profile(profile: str, **overrides) -> dict:
    """The theory chapter's settings for ``profile`` ∈ {"smoke", "cpu", "gpu"}.

    - ``smoke``: seconds, for CI (16 β values, 60 iterations, small grids).
    - ``cpu``: the default and what the book shows: Appendix A's full Fig. 2 set-up (32×32
      grid, 100 β values, ≤ 400 iterations, α = 0.9, tol 1e-3).
    - ``gpu``: the same with a finer β grid (200 values) and finer grids elsewhere; the
      theory is numpy code, a GPU is not used.

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
