"""Phase transitions of Prop. 4's fixed points: the order parameter u(β) and the critical β_c.

- :func:`reconstruction_error` — u(β) = E_{ρ(x) q(z|x)} ‖x − g(z)‖² (§3.2, Fig. 2 bottom left);
- :func:`second_derivative` — ∂²u/∂β² on a non-uniform β grid;
- :func:`critical_betas` — the top local maxima of |∂²u/∂β²| (Fig. 2 caption);
- :func:`cluster_fixed_points`, :func:`cluster_counts` — single-linkage deduplication of the ψ
  at one β (chains: a thread of nearby ψ is ONE cluster; used for Prop. 5's energies);
- :func:`location_tolerance`, :func:`fixed_point_locations`, :func:`count_fixed_point_locations`
  — what a picture shows: the occupied distinct locations at a resolution relative to the data
  scale (complete linkage, no chaining, so a thread counts as many);
- :func:`critical_beta_from_covariance`, :func:`collapse_beta`, :func:`merging_clusters` —
  deterministic annealing's critical temperature (Rose et al. 1990; Rose 1998) in the paper's
  β convention: a cluster splits / merges at β_c = λ_max of its covariance.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: §3.2, Fig. 2 (u(β), |∂²u/∂β²|
    and its top-3 local maxima), Eqs. 19–20 (the kernel e^{−‖x−ψ‖²/2β}).
    K. Rose, E. Gurewitz, G. C. Fox (1990), "Statistical mechanics and phase transitions in
    clustering", Phys. Rev. Lett. 65, 945; K. Rose (1998), "Deterministic annealing for
    clustering, compression, classification, regression, and related optimization problems",
    Proc. IEEE 86, 2210 (§III: the critical temperature T_c = 2 λ_max for squared-error
    distortion).

Example:
    >>> b = np.linspace(0.0, 0.1, 21)[1:]
    >>> u = np.minimum(b, 0.05)                           # a kink: one transition
    >>> critical_betas(b, u, k=1).beta_c.round(4).tolist()
    [0.05]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.signal
import scipy.special
from scipy.cluster.hierarchy import fcluster, linkage

from geco_base.checks import check_choice, check_fraction, check_int, check_positive
from geco_core.theory._arrays import as_betas, as_points, sq_dists

__all__ = [
    "CriticalBetas",
    "cluster_counts",
    "cluster_fixed_points",
    "collapse_beta",
    "count_fixed_point_locations",
    "critical_beta_from_covariance",
    "critical_betas",
    "fixed_point_locations",
    "location_tolerance",
    "merging_clusters",
    "reconstruction_error",
    "second_derivative",
]


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
    x = as_points(x)
    psi = np.asarray(psi, dtype=np.float64)
    single = psi.ndim == 2
    psi = psi[None] if single else psi
    betas = as_betas(betas)
    if betas.size != psi.shape[0]:
        raise ValueError(f"need one beta per psi set: {betas.size} betas, {psi.shape[0]} sets")
    log_prior = np.asarray(log_prior, dtype=np.float64)
    out = np.empty(betas.size)
    for k in range(betas.size):
        dist = sq_dists(x, psi[k])
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
    s = as_betas(betas)
    u = np.asarray(u, dtype=np.float64)
    if u.shape != s.shape:
        raise ValueError(f"u must have the shape of betas {s.shape}, got {u.shape}")
    if s.size < 3:
        raise ValueError(f"need at least 3 betas for a second derivative, got {s.size}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("betas must be strictly increasing")
    if check_choice(wrt, "wrt", ("beta", "log_beta")) == "log_beta":
        s = np.log(s)
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
    k = check_int(k, "k")
    curvature = np.abs(second_derivative(betas, u, wrt=wrt))
    peaks, _ = scipy.signal.find_peaks(curvature)
    order = peaks[np.argsort(-curvature[peaks], kind="stable")][:k]
    return CriticalBetas(
        beta_c=np.asarray(betas, dtype=np.float64)[order],
        height=curvature[order],
        index=order,
        curvature=curvature,
    )


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
    psi = as_points(psi, "psi")
    tol = check_positive(tol, "tol")
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
    min_fraction = check_fraction(min_fraction, "min_fraction")
    counts = []
    for p in psi:
        mass = cluster_fixed_points(p, tol)[1]
        counts.append(int((mass >= min_fraction * p.shape[0]).sum()))
    return np.array(counts, dtype=np.int64)


def location_tolerance(x: np.ndarray, rel: float = 0.05) -> float:
    """A resolution relative to the data scale: ``rel`` × the RMS distance of x to its mean.

    The RMS distance is sqrt(trace Σ) for the data covariance Σ; 5% of it is about the size of
    a marker in the book's figures, so :func:`count_fixed_point_locations` with this tolerance
    counts what the eye can separate.

    Example:
        >>> location_tolerance(np.array([[-1.0, 0.0], [1.0, 0.0]]), rel=0.5)
        0.5
    """
    x = as_points(x)
    rel = check_positive(rel, "rel")
    return float(rel * np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))


def fixed_point_locations(
    psi: np.ndarray, tol: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct locations of the reconstruction vectors at resolution ``tol``, WITHOUT chaining.

    Complete linkage (``scipy.cluster.hierarchy``, criterion "distance"): every group has a
    diameter of at most ``tol``, so a thread of ψ spaced below ``tol`` but longer than ``tol``
    is cut into between length/tol and 2·length/tol groups — about as many dots as a picture
    at that resolution shows — whereas single linkage (:func:`cluster_fixed_points`) merges
    the whole thread into one. Tight clusters (diameter well below ``tol``) count once each.
    For speed, ψ are first snapped to a lattice of spacing ``tol/20`` and identical snapped
    points are grouped (so diameters are at most ≈ 1.07 ``tol``).

    Args:
        psi: ``[B, d]`` reconstruction vectors (one β).
        tol: resolution > 0 (e.g. :func:`location_tolerance`).
        weights: optional ``[B]`` tile masses; centres are weighted means.

    Returns:
        ``(centres [m, d], mass [m], labels [B])``, sorted by decreasing mass (mass = count
        without ``weights``).

    Example:
        >>> thread = np.stack([np.linspace(0.0, 1.0, 101), np.zeros(101)], axis=1)
        >>> m = len(fixed_point_locations(thread, 0.1)[0])
        >>> 10 <= m <= 20, len(cluster_fixed_points(thread, 0.1)[0])
        (True, 1)
    """
    psi = as_points(psi, "psi")
    tol = check_positive(tol, "tol")
    w = np.ones(psi.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (psi.shape[0],):
        raise ValueError(f"weights must have shape ({psi.shape[0]},), got {w.shape}")
    snapped, inverse = np.unique(np.round(psi / (tol / 20)), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    rep = np.zeros((snapped.shape[0], psi.shape[1]))
    np.add.at(rep, inverse, psi)
    rep /= np.bincount(inverse, minlength=snapped.shape[0])[:, None]
    if rep.shape[0] == 1:
        group = np.zeros(1, dtype=np.int64)
    else:
        group = fcluster(linkage(rep, method="complete"), t=tol, criterion="distance") - 1
    raw = group[inverse]
    n_groups = raw.max() + 1
    mass = np.bincount(raw, weights=w, minlength=n_groups)
    sums = np.stack(
        [np.bincount(raw, weights=w * psi[:, j], minlength=n_groups) for j in range(psi.shape[1])],
        axis=1,
    )
    order = np.argsort(-mass, kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(n_groups)
    return (sums / mass[:, None])[order], mass[order], relabel[raw].astype(np.int64)


def count_fixed_point_locations(
    psi: np.ndarray, tol: float, min_fraction: float = 0.0
) -> np.ndarray:
    """Number of occupied distinct locations per β (:func:`fixed_point_locations`), ``[K]``.

    Locations holding fewer than ``min_fraction`` of the tiles are not counted (0 counts
    every red dot of the picture).

    Example:
        >>> psi = np.zeros((2, 4, 2)); psi[1, :, 0] = [0.0, 0.05, 0.10, 0.15]  # a short thread
        >>> count_fixed_point_locations(psi, tol=0.06).tolist(), cluster_counts(psi, 0.06).tolist()
        ([1, 2], [1, 1])
    """
    psi = np.asarray(psi, dtype=np.float64)
    psi = psi[None] if psi.ndim == 2 else psi
    if psi.ndim != 3:
        raise ValueError(f"psi must be [K, B, d] or [B, d], got {psi.shape}")
    min_fraction = check_fraction(min_fraction, "min_fraction", closed=True)
    return np.array(
        [int((fixed_point_locations(p, tol)[1] >= min_fraction * p.shape[0]).sum()) for p in psi],
        dtype=np.int64,
    )


def critical_beta_from_covariance(x: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Deterministic annealing's critical temperature in the β of Eqs. 19–20: λ_max(Σ).

    Rose et al. (1990) and Rose (1998, §III) cluster with Gibbs associations
    p(y|x) ∝ p(y) e^{−d(x, y)/T}; for the squared-error distortion d = ‖x − y‖² a cluster with
    (association-weighted) covariance C_{x|y} is stable as one codevector for T > T_c and
    splits below T_c = 2 λ_max(C_{x|y}). Eq. 19 of the paper has the same Gibbs form,
    p_ib ∝ π_b e^{−‖x_i − ψ_b‖²/2β}, with the tile masses π_b in the role of p(y): matching
    the exponents gives T = 2β, so β_c = T_c / 2 = λ_max(C). (The paper calls β a temperature
    too: large β is hot, everything merged.) With ``weights`` the covariance is weighted.

    Example:
        >>> critical_beta_from_covariance(np.array([[-0.25, 0.0], [0.25, 0.0]]))
        0.0625
    """
    x = as_points(x)
    w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[0],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {x.shape[0]} non-negative numbers with a positive sum")
    w = w / w.sum()
    centred = x - w @ x
    return float(np.linalg.eigvalsh((centred * w[:, None]).T @ centred)[-1])


def merging_clusters(
    x: np.ndarray, centres_below: np.ndarray, centres_above: np.ndarray
) -> list[np.ndarray]:
    """The data of every fixed point above a transition that absorbed several from below.

    Each x_i is assigned to its nearest fixed point below and above β_c; a fixed point above
    that receives points from two or more fixed points below is a merge, and its members are
    the cluster whose covariance sets β_c (:func:`critical_beta_from_covariance`).

    Returns:
        One ``[n]`` boolean mask per merge, sorted by decreasing λ_max of its covariance.

    Example:
        >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]])
        >>> below = x.copy(); above = np.array([[0.05, 0.0], [1.0, 0.0]])
        >>> [m.tolist() for m in merging_clusters(x, below, above)]
        [[True, True, False]]
    """
    x = as_points(x)
    below = np.argmin(sq_dists(x, as_points(centres_below, "centres_below")), axis=1)
    above = np.argmin(sq_dists(x, as_points(centres_above, "centres_above")), axis=1)
    merges = [above == a for a in np.unique(above) if np.unique(below[above == a]).size >= 2]
    return sorted(merges, key=lambda m: -critical_beta_from_covariance(x[m]))


def collapse_beta(x: np.ndarray) -> float:
    """The largest critical β: above it every ψ collapses onto the data mean (Eq. 20).

    This is deterministic annealing's first critical temperature (Rose et al. 1990; Rose 1998,
    T_c = 2 λ_max(Σ) for squared error) in the paper's β (T = 2β, see
    :func:`critical_beta_from_covariance`). Directly from Eq. 20: ψ_b = x̄ for all b is a fixed
    point for every β (then m_ib = 1); linearising Eq. 20 around it, a perturbation δ_b of ψ_b
    maps to Σ (δ_b − Σ_a π_a δ_a) / β, where Σ = (1/n) Σ_i (x_i − x̄)(x_i − x̄)ᵀ is the data
    covariance. Perturbations grow iff λ_max(Σ) > β, so the collapsed state is stable exactly
    for β > λ_max(Σ); the exponential smoothing does not move this threshold.

    Example:
        >>> collapse_beta(np.array([[-0.25, 0.0], [0.25, 0.0]]))
        0.0625
    """
    return critical_beta_from_covariance(x)
