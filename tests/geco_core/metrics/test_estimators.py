"""Tests of geco_core.metrics.estimators against closed forms and references: scipy / mpmath
normal CDFs for the quantized normal, direct computations of σ_opt, the Gaussian KL and the
Monte Carlo standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from geco_core.metrics.estimators import (
    gaussian_kl,
    mean_stderr,
    optimal_sigma,
    quantized_normal_log_prob,
    standard_normal_log_prob,
)

F64 = torch.float64


@pytest.mark.parametrize("sigma", [1e-6, 1e-3, 0.05, 1.0, 30.0])
@pytest.mark.parametrize("mean", [-0.7, 0.0, 0.2, 0.5, 1.0, 1.6])
def test_quantized_normal_bins_sum_to_one(mean, sigma):
    x = torch.arange(256, dtype=F64) / 255.0
    lp = quantized_normal_log_prob(x, torch.tensor(mean, dtype=F64), sigma)
    assert torch.isfinite(lp).sum() >= 1 and not torch.isnan(lp).any()
    assert (lp <= 1e-15).all()
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


def test_quantized_normal_matches_scipy_and_mpmath_tails():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (500,), generator=g).to(F64) / 255.0
    mean = 1.4 * torch.rand(500, generator=g, dtype=F64) - 0.2
    sigma = 0.02 + 0.3 * torch.rand(500, generator=g, dtype=F64)
    lp = quantized_normal_log_prob(x, mean, sigma).numpy()
    k = np.round(x.numpy() * 255)
    lo = np.where(k > 0, (k - 0.5) / 255, -np.inf)
    hi = np.where(k < 255, (k + 0.5) / 255, np.inf)
    mn, sd = mean.numpy(), sigma.numpy()
    cdf_diff = stats.norm.cdf(hi, mn, sd) - stats.norm.cdf(lo, mn, sd)
    sf_diff = stats.norm.sf(lo, mn, sd) - stats.norm.sf(hi, mn, sd)  # accurate above the mean
    with np.errstate(divide="ignore"):
        ref = np.log(np.where(lo + hi > 2 * mn, sf_diff, cdf_diff))
    ok = ref > -25  # the plain CDF difference is accurate away from the far tails
    assert ok.sum() > 400
    np.testing.assert_allclose(lp[ok], ref[ok], rtol=1e-7, atol=1e-10)

    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    cases = [
        (0.5, 0.0, 0.01),
        (1.0, 0.0, 0.01),
        (0.0, 1.5, 0.02),
        (0.2, 0.9, 0.05),
        (0.6, 0.6, 1e-4),
    ]
    for xv, mv, sv in cases:
        kk = round(xv * 255)
        a = mpmath.mpf(-1e9) if kk == 0 else (mpmath.mpf(kk) - 0.5) / 255
        b = mpmath.mpf(1e9) if kk == 255 else (mpmath.mpf(kk) + 0.5) / 255
        if a + b > 2 * mv:  # mirrored so that 60 digits suffice in the upper tail too
            exact = mpmath.log(mpmath.ncdf((mv - a) / sv) - mpmath.ncdf((mv - b) / sv))
        else:
            exact = mpmath.log(mpmath.ncdf((b - mv) / sv) - mpmath.ncdf((a - mv) / sv))
        got = quantized_normal_log_prob(
            torch.tensor(xv, dtype=F64), torch.tensor(mv, dtype=F64), sv
        )
        assert math.isclose(got.item(), float(exact), rel_tol=1e-9, abs_tol=1e-12), (xv, mv, sv)


def test_quantized_normal_bad_arguments():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="sigma"):
        quantized_normal_log_prob(x, x, 0.0)
    with pytest.raises(ValueError, match="x"):
        quantized_normal_log_prob(x + 1.5, x, 0.1)
    with pytest.raises(ValueError, match="n_bins"):
        quantized_normal_log_prob(x, x, 0.1, n_bins=1)


def test_optimal_sigma_is_the_per_pixel_rms_residual():
    g = torch.Generator().manual_seed(0)
    x, x_mean = torch.rand(5, 1, 3, 4, generator=g), torch.rand(5, 1, 3, 4, generator=g)
    direct = math.sqrt(((x.double() - x_mean.double()) ** 2).mean().item())
    assert math.isclose(optimal_sigma(x, x_mean), direct, rel_tol=1e-12)
    with pytest.raises(ValueError, match="x_mean"):
        optimal_sigma(torch.zeros(2, 3), torch.zeros(3, 2))


def test_gaussian_kl_and_standard_normal_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu, ls = (
        torch.randn(6, 3, generator=g, dtype=F64),
        0.3 * torch.randn(6, 3, generator=g, dtype=F64),
    )
    q = torch.distributions.Normal(mu, ls.exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, ls), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(standard_normal_log_prob(mu), p.log_prob(mu).sum(-1))


def test_mean_stderr():
    t = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=F64)
    mean, se = mean_stderr(t)
    assert mean == 3.5 and math.isclose(se, float(np.std(t.numpy(), ddof=1)) / 2, rel_tol=1e-12)
    assert math.isnan(mean_stderr(torch.tensor([2.0]))[1])
    with pytest.raises(ValueError, match="terms"):
        mean_stderr(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="terms"):
        mean_stderr(torch.tensor([]))


def test_optimal_sigma_refuses_empty_and_mismatched_inputs():
    with pytest.raises(ValueError, match="^x: need at least one pixel value"):
        optimal_sigma(torch.zeros(0, 1, 2, 2), torch.zeros(0, 1, 2, 2))
    with pytest.raises(ValueError, match="^x_mean: expected the shape of x"):
        optimal_sigma(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 3))


def test_mismatched_shapes_are_refused_by_name():
    from geco_core.metrics.marginal import gaussian_log_q_pairs

    with pytest.raises(ValueError, match="log_sigma"):
        gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="mean"):
        quantized_normal_log_prob(torch.zeros(3, 4), torch.zeros(3, 5), 0.1)
    with pytest.raises(ValueError, match="z: expected"):
        gaussian_log_q_pairs(torch.zeros(3, 4), torch.zeros(5, 3), torch.zeros(5, 3))
