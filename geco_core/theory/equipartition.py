"""Prop. 5: equipartition of energy (Appendix C.6).

Once Eq. 20's reconstructions have merged into m distinct values ψ_a, the latent space is a
partition again, with energies H_ia = ‖x_i − ψ_a‖²/2. Prop. 5's condition on the prior masses
γ_a of the partition elements,

    Σ_i e^{−H_ia/β} / Σ_b e^{−H_ib/β} γ_b = n    for every a,

generalises Prop. 2's "mass 1/n per data point" to β > 0.

- :func:`equipartition_residual` — the condition as a residual;
- :func:`equipartition_objective` — J(γ), whose stationarity on the simplex it is;
- :func:`equipartition_gamma` — the solver (EM / Blahut–Arimoto fixed point);
- :func:`equipartition_gamma_direct` — an independent check by ``scipy.optimize.minimize``;
- :func:`fixed_point_energies` — H, ψ_a and the tile masses from a converged Eq. 20 run.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Prop. 5, Appendix C.6, Eq. 19
    (the kernel e^{−H/β}).

Example:
    >>> H = np.array([[0.0, 9.0], [9.0, 0.0], [8.0, 0.0]])   # two points prefer element 1
    >>> gamma, _ = equipartition_gamma(H, 1.0)
    >>> gamma.round(3).tolist(), float(np.abs(equipartition_residual(H, 1.0, gamma)).max()) < 1e-8
    ([0.333, 0.667], True)
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.special

from geco_base.checks import check_int, check_positive
from geco_core.theory._arrays import as_points
from geco_core.theory.grid import LatentGrid
from geco_core.theory.phase import cluster_fixed_points

__all__ = [
    "equipartition_gamma",
    "equipartition_gamma_direct",
    "equipartition_objective",
    "equipartition_residual",
    "fixed_point_energies",
]


def _check_energy(hamiltonian: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    h = np.asarray(hamiltonian, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 1 or not np.all(np.isfinite(h)):
        raise ValueError(f"hamiltonian must be a finite [n, m] array, got shape {h.shape}")
    return h, check_positive(beta, "beta")


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
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter")
    log_drop = math.log(check_positive(drop_below, "drop_below"))
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
        >>> from geco_core.theory import latent_grid
        >>> H, c, mass = fixed_point_energies(x, psi, latent_grid(2))
        >>> H.round(3).tolist(), mass.tolist()
        ([[0.0, 0.08], [0.08, 0.0]], [0.75, 0.25])
    """
    x = as_points(x)
    centres, mass, _ = cluster_fixed_points(psi, tol, weights=grid.prior)
    keep = mass >= min_fraction * mass.sum()
    centres, mass = centres[keep], mass[keep]
    energies = 0.5 * ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return energies, centres, mass / mass.sum()
