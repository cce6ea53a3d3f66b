"""Tensor-level estimators of the paper's evaluation metrics (no model involved).

- :func:`optimal_sigma` — σ_opt of Eq. 26 (Appendix D; Eq. 3 of the workshop paper) from data
  and reconstructions;
- :func:`quantized_normal_log_prob` — the "quantized normal" likelihood of Rosca et al. (2018)
  used for the β-independent NLL of Appendix D (Fig. 4's x-axis);
- :func:`gaussian_kl` — KL[N(μ, diag σ²) ‖ N(0, I)], the average KL of §4.1.1 for Gaussian
  encoders; :func:`standard_normal_log_prob` — log π(z) for π = N(0, I) (§3);
- :func:`mean_stderr` — the Monte Carlo mean and standard error every metric reports.

The marginal-KL estimators on tensors are in :mod:`geco_core.metrics.marginal`; the
model-level metrics in :mod:`geco_core.metrics.evaluation`.

References:
    Rezende & Viola, "Taming VAEs", 2018: §3, §4.1.1, Appendix D (Eq. 26).
    Rosca, Lakshminarayanan & Mohamed, "Distribution matching in variational inference", 2018
    (ref. [28]): the quantized normal.
    Kingma & Welling, "Auto-encoding variational Bayes", 2014, Appendix B (Gaussian KL).

Example:
    >>> x = torch.full((2, 1, 2, 2), 0.5)
    >>> s = optimal_sigma(x, x + 0.1)
    >>> round(s, 6), float(quantized_normal_log_prob(x, x, s).sum()) < 0
    (0.1, True)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geco_base.checks import check_int

__all__ = [
    "gaussian_kl",
    "mean_stderr",
    "optimal_sigma",
    "quantized_normal_log_prob",
    "standard_normal_log_prob",
]

_LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Monte Carlo summaries, the standard-normal prior, the Gaussian KL
# --------------------------------------------------------------------------------------------
def mean_stderr(terms: Tensor) -> tuple[float, float]:
    """Mean and standard error (unbiased sample std / √n) of a 1-D tensor, in float64.

    Example:
        >>> mean_stderr(torch.tensor([1.0, 3.0]))
        (2.0, 1.0)
    """
    t = terms.detach().reshape(-1).double()
    if t.numel() == 0:
        raise ValueError("terms: need at least one value")
    if not torch.isfinite(t).all():
        raise ValueError("terms: non-finite values (NaN or inf) in the Monte Carlo terms")
    if t.numel() == 1:
        return float(t[0]), float("nan")
    return float(t.mean()), float(t.std(unbiased=True) / math.sqrt(t.numel()))


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: the prior π(z) of paper §3.

    Example:
        >>> float(standard_normal_log_prob(torch.zeros(1, 2)))  # -log(2π)
        -1.8378770351409912
    """
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI


def gaussian_kl(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """Closed-form KL[N(μ, diag σ²) ‖ N(0, I)] = ½ Σ_d (μ² + σ² − 1 − 2 log σ), per row.

    Kingma & Welling (2014), Appendix B; the average KL of paper §4.1.1 for Gaussian encoders.

    Example:
        >>> float(gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)))
        0.0
    """
    if mu.shape != log_sigma.shape:
        raise ValueError(f"log_sigma: expected the shape of mu {tuple(mu.shape)}, got "
                         f"{tuple(log_sigma.shape)}")
    return 0.5 * (mu * mu + torch.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma).sum(-1)


# --------------------------------------------------------------------------------------------
# σ_opt — Eq. 26 (Appendix D), Eq. 3 of the workshop paper
# --------------------------------------------------------------------------------------------
def optimal_sigma(x: Tensor, x_mean: Tensor) -> float:
    """σ_opt of Eq. 26 (Appendix D; Eq. 3 of the workshop paper), per pixel.

    σ_opt = sqrt( (1/(n·D)) Σᵢ ‖xᵢ − g(zᵢ)‖² ), zᵢ ~ q(z|xᵢ), D pixel values per image: the
    maximum-likelihood global standard deviation of the Gaussian likelihood N(x; g(z), σ² I)
    given the reconstructions. (The paper's formulas divide by the number of images only, which
    is the RMS of the whole-image residual norm; the *per-pixel* σ of the likelihood, used for
    the per-pixel NLL, also divides by D.)

    Args:
        x: data ``[n, ...]``; x_mean: reconstructions g(z) of the same shape.

    Example:
        >>> round(optimal_sigma(torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.1)), 6)
        0.1
    """
    if x.shape != x_mean.shape:
        raise ValueError(
            f"x_mean: expected the shape of x {tuple(x.shape)}, got {tuple(x_mean.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"x: need at least one pixel value, got shape {tuple(x.shape)}")
    r = (x.detach().double() - x_mean.detach().double()).reshape(-1)
    return float(torch.sqrt(torch.dot(r, r) / r.numel()))


# --------------------------------------------------------------------------------------------
# Quantized-normal log-likelihood — Appendix D, Rosca et al. (2018)
# --------------------------------------------------------------------------------------------
def _log1mexp(t: Tensor) -> Tensor:
    """log(1 − eᵗ) for t ≤ 0, accurate near 0 and for very negative t (Mächler 2012)."""
    t = t.clamp(max=0.0)
    return torch.where(t > -_LN2, torch.log(-torch.expm1(t)), torch.log1p(-torch.exp(t)))


def quantized_normal_log_prob(
    x: Tensor, mean: Tensor, sigma: float | Tensor, n_bins: int = 256
) -> Tensor:
    """log P(x) under the quantized normal of Rosca et al. (2018) (paper Appendix D).

    A pixel value x = k/(n_bins − 1) (k = 0 … n_bins−1; x is rounded to the nearest level)
    gets the mass of N(mean, σ²) over its bin [(k − ½)/(n_bins−1), (k + ½)/(n_bins−1)]; the
    first bin takes (−∞, ½/(n_bins−1)] and the last [(n_bins − 1.5)/(n_bins−1), ∞), so the
    n_bins masses sum to 1 for any mean (also outside [0, 1]) and σ > 0.

    Computed in float64 in log space: log(Φ(b) − Φ(a)) = log Φ(b) + log(1 − exp(log Φ(a) −
    log Φ(b))) with ``torch.special.log_ndtr``, switching to the mirrored form log Φ(−a) +
    log(1 − exp(log Φ(−b) − log Φ(−a))) when the bin lies above the mean (a + b > 0), so the
    subtraction never cancels in a far tail.

    Args:
        x: pixel values in [0, 1] on the n_bins-level grid.
        mean: the Gaussian means g(z) (any real values), broadcastable with x.
        sigma: standard deviation(s) > 0, broadcastable.
        n_bins: number of levels (256 for 8-bit images).

    Returns:
        Elementwise log-probabilities in nats (≤ 0), dtype of ``mean`` (at least float32).

    Example:
        >>> x = torch.arange(256) / 255.0
        >>> lp = quantized_normal_log_prob(x, torch.tensor(0.3), 0.05)  # all 256 levels
        >>> round(lp.exp().sum().item(), 6)
        1.0
    """
    check_int(n_bins, "n_bins", minimum=2)
    try:
        torch.broadcast_shapes(x.shape, mean.shape)
    except RuntimeError:
        raise ValueError(f"mean: shape {tuple(mean.shape)} does not broadcast with x's "
                         f"{tuple(x.shape)}") from None
    sig = torch.as_tensor(sigma, dtype=torch.float64, device=mean.device)
    if not bool((sig > 0).all()) or not bool(torch.isfinite(sig).all()):
        raise ValueError(f"sigma: must be finite and > 0, got {sigma!r}")
    xd = x.double()
    if bool((xd < -1e-6).any()) or bool((xd > 1 + 1e-6).any()):
        raise ValueError("x: pixel values must lie in [0, 1]")
    scale = n_bins - 1
    k = torch.round(xd * scale).clamp(0, scale)
    lo = torch.where(k > 0, (k - 0.5) / scale, torch.full_like(k, -math.inf))
    hi = torch.where(k < scale, (k + 0.5) / scale, torch.full_like(k, math.inf))
    m = mean.double()
    a, b = (lo - m) / sig, (hi - m) / sig
    log_ndtr = torch.special.log_ndtr
    # Lower side: Φ(b) − Φ(a); upper side (bin above the mean): Φ(−a) − Φ(−b).
    la, lb = log_ndtr(a), log_ndtr(b)
    lower = lb + _log1mexp(la - lb)
    lna, lnb = log_ndtr(-a), log_ndtr(-b)
    upper = lna + _log1mexp(lnb - lna)
    out = torch.where(a + b > 0, upper, lower)
    return out.to(torch.promote_types(mean.dtype, torch.float32))
