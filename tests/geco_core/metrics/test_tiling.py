"""Tiling measures (geco_core.metrics.tiling) against closed forms and synthetic posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geco_core.metrics.tiling import (
    count_modes,
    effective_tiles,
    own_weight,
    pairwise_log_q,
    posterior_spread,
    self_classification_rate,
)


# --------------------------------------------------------------------------------------------
# Tiling measures on synthetic Gaussian posteriors
# --------------------------------------------------------------------------------------------
def gaussian_log_q(z: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """log N(z; mean_j, std² I) for every sample and every component: [S, k]."""
    d = z.shape[-1]
    sq = (z[:, None, :] - means[None]).pow(2).sum(-1)
    return -0.5 * sq / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def synthetic(means: torch.Tensor, std: float, per_point: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k, d = means.shape
    source = torch.arange(k).repeat_interleave(per_point)
    z = means[source] + std * torch.randn(k * per_point, d, generator=g, dtype=means.dtype)
    return z, source


def test_self_classification_rate_is_one_for_well_separated_clusters():
    k = 7
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = 10.0 * torch.stack([angles.cos(), angles.sin()], 1)
    z, source = synthetic(means, 0.3, 200)
    log_q = gaussian_log_q(z, means, 0.3)
    assert self_classification_rate(log_q, source) == 1.0
    assert own_weight(log_q, source) > 1 - 1e-9


def test_self_classification_rate_is_one_over_k_for_identical_posteriors():
    k = 5
    means = torch.zeros(k, 2, dtype=torch.float64)
    z, source = synthetic(means, 1.0, 100)
    log_q = gaussian_log_q(z, means, 1.0)
    assert self_classification_rate(log_q, source) == pytest.approx(1 / k, abs=1e-12)
    assert own_weight(log_q, source) == pytest.approx(1 / k, abs=1e-12)


def test_self_classification_rate_matches_the_bayes_error_of_two_overlapping_gaussians():
    # Two unit 1-D Gaussians at ±a: a sample is on its own side with probability Φ(a).
    a = 0.5
    means = torch.tensor([[-a], [a]], dtype=torch.float64)
    z, source = synthetic(means, 1.0, 200_000, seed=1)
    rate = self_classification_rate(gaussian_log_q(z, means, 1.0), source)
    phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    assert rate == pytest.approx(phi, abs=4e-3)


def test_own_weight_matches_numerical_integration():
    # E_{z~N(a,1)}[w_own(z)], w_own = sigmoid(2 a z), by quadrature on a fine grid.
    a = 0.7
    means = torch.tensor([[-a], [a]], dtype=torch.float64)
    z, source = synthetic(means, 1.0, 200_000, seed=2)
    w = own_weight(gaussian_log_q(z, means, 1.0), source)
    grid = np.linspace(a - 12, a + 12, 200_001)
    dens = np.exp(-0.5 * (grid - a) ** 2) / math.sqrt(2 * math.pi)
    ref = np.trapezoid(dens / (1 + np.exp(-2 * a * grid)), grid)
    assert w == pytest.approx(ref, abs=3e-3)


def test_self_classification_rate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="log_q"):
        self_classification_rate(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="source"):
        self_classification_rate(torch.zeros(3, 2), torch.tensor([0, 1, 2]))


def test_posterior_spread_is_sqrt_det_of_the_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    z = (torch.randn(2, 50_000, 2, generator=g, dtype=torch.float64) @ chol.T).numpy()
    z[1] *= 0.1  # a tighter posterior: √det scales by 0.1² in 2-D
    spread = posterior_spread(z)
    expected = math.sqrt(float(torch.linalg.det(cov)))
    assert spread[0] == pytest.approx(expected, rel=0.02)
    assert spread[1] == pytest.approx(0.01 * expected, rel=0.02)


def test_count_modes_counts_merged_posteriors_once():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [0.05, 0.0]])
    z = centres[:, None, :] + 0.5 * torch.randn(5, 300, 2, generator=g)
    assert count_modes(z) == 3  # points 0, 1, 4 share a mode
    assert count_modes(z[2:4]) == 2


def test_effective_tiles_spans_one_to_n():
    assert effective_tiles(0.0) == 1.0
    assert effective_tiles(math.log(7)) == pytest.approx(7.0)


def test_pairwise_log_q_matches_matched_rows_of_the_model():
    from geco_core.models import build_model

    torch.manual_seed(0)
    m = build_model(
        "vae_nvp",
        (1, 28, 28),
        latent_dim=2,
        channels=(4, 4),
        context_dim=8,
        flow_hidden=8,
        n_flows=2,
    ).eval()
    x = torch.rand(3, 1, 28, 28)
    z = torch.randn(5, 2)
    with torch.no_grad():
        pairs = pairwise_log_q(m, z, x)
        for j in range(3):
            ref = m.log_q(z, x[j : j + 1].expand(5, -1, -1, -1))
            torch.testing.assert_close(pairs[:, j], ref, atol=1e-5, rtol=1e-5)
