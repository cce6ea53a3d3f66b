"""Props. 1–3: tilings of the latent space, the optimal decoder, the average KL and blur.

With unlimited capacity (§3.1) the ELBO's fixed points are tilings: each data point x_i owns a
support Ω_i and its posterior is the prior restricted to it (Prop. 2); where supports overlap
the optimal decoder blurs (Prop. 3, Eq. 17); where none covers, it is undefined (a hole).

- :func:`equiprobable_partition`, :func:`supports_from_labels`,
  :func:`restricted_prior_posteriors` — Prop. 2's encoder on a tile partition;
- :func:`tile_average_kl` (from the definition) and :func:`partition_kl` (Appendix C.2's
  closed form, −(1/n) Σ ln π_i ≥ ln n);
- :func:`optimal_decoder` — Eq. 4; :func:`overlap_reconstruction` — Eq. 17;
- :func:`expected_reconstruction_error` — σ² of Eq. 15;
- :func:`hole_tiles`, :func:`uncovered_prior_mass` — the "holes" of §3.1 and Fig. 1: tiles that
  no posterior covers, and their prior mass;
- :func:`elbo_fixed_point_step` (Eqs. 3–4), :func:`elbo_fixed_point_iteration` (with Eq. 15).

:func:`tile_average_kl` is the discrete-tile average KL of these propositions; the
model-level Monte-Carlo estimator of §4.1.1 is :func:`geco_core.metrics.average_kl`.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Props. 1–3, Eqs. 3–4, 13–17,
    Appendix C.2.

Example:
    >>> from geco_core.theory import latent_grid
    >>> g = latent_grid(8)
    >>> labels = equiprobable_partition(g, 4, by="y")
    >>> q = restricted_prior_posteriors(supports_from_labels(labels, 4), g.prior)
    >>> bool(np.isclose(tile_average_kl(q, g.prior), np.log(4)))   # Prop. 2: ln n
    True
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special

from geco_base.checks import check_choice, check_int, check_nonnegative, check_positive
from geco_core.theory.grid import LatentGrid

__all__ = [
    "elbo_fixed_point_iteration",
    "elbo_fixed_point_step",
    "equiprobable_partition",
    "expected_reconstruction_error",
    "hole_tiles",
    "optimal_decoder",
    "overlap_reconstruction",
    "partition_kl",
    "restricted_prior_posteriors",
    "supports_from_labels",
    "tile_average_kl",
    "uncovered_prior_mass",
]


def _check_prior(prior: np.ndarray, n_tiles: int | None = None) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.ndim != 1 or (n_tiles is not None and prior.size != n_tiles):
        raise ValueError(f"prior must be a 1-D array of {n_tiles} tile masses, got {prior.shape}")
    if np.any(prior <= 0) or not np.all(np.isfinite(prior)):
        raise ValueError("prior masses must be finite and > 0")
    if abs(prior.sum() - 1.0) > 1e-8:
        raise ValueError(f"prior masses must sum to 1, got {prior.sum()}")
    return prior


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
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(4)
        >>> labels = equiprobable_partition(g, 4, by="x")
        >>> np.bincount(labels, weights=g.prior).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    n = check_int(n, "n")
    by = check_choice(by, "by", ("angle", "x", "y"))
    if n > grid.n_tiles:
        raise ValueError(f"n must be at most the number of tiles {grid.n_tiles}, got {n}")
    cx, cy = grid.centres[:, 0], grid.centres[:, 1]
    if by == "angle":
        key = np.lexsort((np.hypot(cx, cy), np.arctan2(cy, cx)))
    elif by == "x":
        key = np.lexsort((cy, cx))
    else:  # "y"
        key = np.lexsort((cx, cy))
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
    n = check_int(n, "n")
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


def tile_average_kl(q: np.ndarray, prior: np.ndarray) -> float:
    """(1/n) Σ_i KL[q(z|x_i) ‖ π(z)] for tile masses ``q`` ``[n, B]`` (Appendix C.2).

    Computed from the definition (``scipy.special.rel_entr``), so it is an independent check
    of the closed form :func:`partition_kl`. (Not to be confused with
    :func:`geco_core.metrics.average_kl`, the Monte-Carlo estimate for a trained model.)

    Example:
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(4)
        >>> q = restricted_prior_posteriors(supports_from_labels(
        ...     equiprobable_partition(g, 4, by="x"), 4), g.prior)
        >>> bool(abs(tile_average_kl(q, g.prior) - np.log(4)) < 1e-12)
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


def hole_tiles(q: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """``[B]`` booleans: the tiles that no posterior covers, Σ_i q_ia ≤ ``tol``.

    §3.1 calls regions where q(z|x) ≈ 0 for every x "holes": there the ELBO leaves the decoder
    unconstrained (Prop. 1, Eq. 9 with E_ρ[q(z|x)] = 0), and Eq. 4 is 0/0
    (:func:`optimal_decoder` returns NaN). ``tol=0`` asks for exactly zero mass.

    Example:
        >>> hole_tiles(np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])).tolist()
        [False, False, True]
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or np.any(q < 0):
        raise ValueError(f"q must be a non-negative [n, B] array, got shape {q.shape}")
    return q.sum(axis=0) <= check_nonnegative(tol, "tol")


def uncovered_prior_mass(q: np.ndarray, prior: np.ndarray, tol: float = 0.0) -> float:
    """Prior mass of the holes, Σ_a π_a 𝟙[Σ_i q_ia ≤ tol] (Fig. 1's black region, §3.1).

    A partition (Prop. 2) has 0; Fig. 1's tiling with a hole has the hole's mass.

    Example:
        >>> q = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
        >>> uncovered_prior_mass(q, np.array([0.25, 0.25, 0.5]))
        0.5
    """
    holes = hole_tiles(q, tol)
    prior = _check_prior(prior, holes.size)
    return float(prior[holes].sum())


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
    sigma = check_positive(sigma, "sigma")
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
    shrinks towards 0 and every tile ends up owned by at most one data point (Prop. 2); which
    tiling depends on the initialisation, and it is generally not equiprobable. It is also not
    always a partition: a tile whose decoder output is a blend of several x_i (not exactly one
    of them) gets posterior mass ∝ e^{−‖x_i − g‖²/2σ²}, which underflows to exactly 0 for every
    i once σ is small. Such tiles are holes (:func:`hole_tiles`) — a spontaneous instance of the
    "holes problem" of §3.1 — and keep the decoder value of their last covered step.

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
        >>> from geco_core.theory import latent_grid
        >>> g = latent_grid(8, 3.0, "normal")
        >>> q, s = elbo_fixed_point_iteration(np.array([[0.0], [1.0], [3.0]]), g, 50)
        >>> bool(s[-1] < 1e-3), int((q > 1e-12).sum(axis=0).max())  # σ → 0, one owner per tile
        (True, 1)
    """
    n_steps = check_int(n_steps, "n_steps")
    anchor_scale = check_positive(anchor_scale, "anchor_scale")
    sigma_floor = check_positive(sigma_floor, "sigma_floor")
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
