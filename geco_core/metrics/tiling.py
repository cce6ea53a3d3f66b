"""Tiling measures of a VAE's posteriors over a small data set (§3.1, Props. 2–3, Eq. 4).

For n data points, a high-capacity VAE's optimal posteriors are the prior restricted to the
tiles of an equiprobable partition of the latent space (Prop. 2): KL[q(z|x_i) ‖ π] = ln n for
every i, the aggregate q(z) equals π and the tiles do not overlap. Overlapping tiles blur the
optimal reconstruction (Prop. 3, Eq. 4); tiles that do not cover the prior leave holes. Each
function measures one of these properties from posterior samples:

- :func:`self_classification_rate`, :func:`own_weight` — overlap, from log q(z_s | x_j) for
  all pairs (:func:`pairwise_log_q`);
- :func:`posterior_spread` — √det of each posterior's covariance (1 for the prior);
- :func:`effective_tiles` — exp(I(n; z)), the number of distinguishable posteriors;
- :func:`count_modes` — clusters of posterior means (modes that merged).

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.1 (Props. 2–3), Eq. (4), §4.1.1, Appendix E.1.

Example:
    >>> log_q = torch.tensor([[0.0, -5.0], [-5.0, 0.0], [0.0, 1.0]])  # 3 samples, 2 points
    >>> self_classification_rate(log_q, torch.tensor([0, 1, 0]))
    0.6666666666666666
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from geco_base.checks import check_positive

__all__ = [
    "count_modes",
    "effective_tiles",
    "own_weight",
    "pairwise_log_q",
    "posterior_spread",
    "self_classification_rate",
]


def pairwise_log_q(model: torch.nn.Module, z: Tensor, x: Tensor) -> Tensor:
    """log q(z_s | x_j) for every sample and every point: ``z`` ``[..., d]`` → ``[..., N]``.

    Uses the encoder context h(x_j) once per point when the model declares
    ``posterior_kind == "context"`` (the VAE+NVP fast path), else ``model.log_q`` on
    repeated rows.
    """
    n = x.shape[0]
    lead = z.shape[:-1]
    zf = z.reshape(-1, z.shape[-1])
    if model.posterior_kind == "context":
        h = model.posterior_context(x)
        out = model.log_q_from_context(zf[:, None, :], h[None])
    else:
        zz = zf.repeat_interleave(n, dim=0)
        xx = x.repeat(zf.shape[0], *([1] * (x.dim() - 1)))
        out = model.log_q(zz, xx).reshape(zf.shape[0], n)
    return out.reshape(*lead, n)


def _check_log_q(log_q: Tensor, source: Tensor) -> None:
    if log_q.dim() != 2 or source.dim() != 1 or source.shape[0] != log_q.shape[0]:
        raise ValueError(
            f"log_q must be [S, N] and source [S], got {list(log_q.shape)} and {list(source.shape)}"
        )
    if source.numel() and (int(source.min()) < 0 or int(source.max()) >= log_q.shape[1]):
        raise ValueError(f"source indices must lie in [0, {log_q.shape[1]})")


def self_classification_rate(log_q: Tensor, source: Tensor) -> float:
    """Fraction of posterior samples most probable under their own data point's posterior.

    ``log_q[s, j] = log q(z_s | x_j)`` for samples z_s ~ q(z | x_{source[s]}). A sample counts
    1 when its own point has the largest density, 1/m when it ties with m − 1 others: 1.0 for
    disjoint tiles (Prop. 2), exactly 1/N for N identical posteriors.

    Args:
        log_q: ``[S, N]`` log-densities of every sample under every point's posterior.
        source: ``[S]`` int, the point each sample was drawn from.

    Example:
        >>> self_classification_rate(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
        0.5
    """
    _check_log_q(log_q, source)
    best = log_q.max(dim=1, keepdim=True).values
    ties = (log_q == best).sum(1).double()
    own = log_q.gather(1, source.long()[:, None]).squeeze(1) == best.squeeze(1)
    return float((own.double() / ties).mean())


def own_weight(log_q: Tensor, source: Tensor) -> float:
    """Mean decoder weight of a sample's own point, E_i E_{z~q(z|x_i)}[w_i(z)] (Eq. 4).

    w_i(z) = q(z|x_i) / Σ_j q(z|x_j) is the weight of x_i in the optimal decoder
    g(z) = Σ_j w_j(z) x_j (Eq. 4, Prop. 1); where tiles overlap it is < 1 and the optimal
    reconstruction blurs (Prop. 3). 1 for disjoint tiles, 1/N for identical posteriors.

    Example:
        >>> own_weight(torch.zeros(3, 3), torch.tensor([0, 1, 2]))
        0.3333333333333333
    """
    _check_log_q(log_q, source)
    w = torch.softmax(log_q.double(), dim=1)
    return float(w.gather(1, source.long()[:, None]).mean())


def posterior_spread(z: Tensor | np.ndarray) -> np.ndarray:
    """√det of the sample covariance of each point's posterior samples, ``[N]``.

    ``z`` is ``[N, S, d]`` (S samples per point). For d = 2 this is σ₁σ₂ of the posterior, an
    area scale in latent units: 1 for the prior N(0, I), smaller for tighter posteriors.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(1, 20000, 2, generator=g) * torch.tensor([2.0, 0.5])
        >>> round(float(posterior_spread(z)[0]), 1)
        1.0
    """
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    if z.dim() != 3 or z.shape[1] < 2:
        raise ValueError(f"z must be [N, S >= 2, d], got {list(z.shape)}")
    zc = z - z.mean(1, keepdim=True)
    cov = zc.transpose(1, 2) @ zc / (z.shape[1] - 1)
    return torch.linalg.det(cov).clamp_min(0.0).sqrt().numpy()


def count_modes(z: Tensor | np.ndarray, scale: float = 1.0) -> int:
    """Number of clusters of posterior means: points whose posteriors merged count once.

    Points i and j are linked when their posterior means are closer than
    ``scale · (r_i + r_j) / 2``, r = the RMS radius √(tr Σ / d) of a posterior's samples; the
    modes are the connected components (single linkage). ``z`` is ``[N, S, d]``.

    Example:
        >>> z = torch.randn(3, 50, 2) * 0.1 + torch.tensor([[[0.0, 0]], [[5, 0]], [[0, 5]]])
        >>> count_modes(z), count_modes(torch.randn(1, 50, 2).expand(3, 50, 2))
        (3, 1)
    """
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    if z.dim() != 3:
        raise ValueError(f"z must be [N, S, d], got {list(z.shape)}")
    check_positive(scale, "scale")
    mu = z.mean(1)
    radius = ((z - mu[:, None]).pow(2).sum(-1).mean(1) / z.shape[-1]).sqrt()
    linked = torch.cdist(mu, mu) <= scale * (radius[:, None] + radius[None, :]) / 2
    n = z.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if linked[i, j]:
                parent[find(i)] = find(j)
    return len({find(i) for i in range(n)})


def effective_tiles(mutual_info: float) -> float:
    """exp(I(n; z)): the number of distinguishable posteriors, between 1 and n.

    I(n; z) = avgKL − marginal KL (§4.1.1) is the information the latent carries about the
    data index; it is ln n for disjoint tiles (Prop. 2) and 0 when all posteriors coincide.

    Example:
        >>> round(effective_tiles(math.log(7)), 6)
        7.0
    """
    return float(math.exp(mutual_info))
