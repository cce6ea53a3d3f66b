"""Tests of the tensor-level marginal-KL estimators (geco_core.metrics.marginal) against closed
forms and references: closed-form Gaussian KLs, scipy quadrature of a 1-D mixture KL, direct
loops over (z_s, x_i) pairs, and the bias bounds of the subsampled mixture.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import Tensor

from geco_core.metrics.estimators import gaussian_kl, standard_normal_log_prob
from geco_core.metrics.marginal import (
    SAMPLINGS,
    draw_sources,
    gaussian_log_q_pairs,
    gaussian_log_q_pairs_fn,
    logsumexp_chunked,
    marginal_kl_from_log_q,
    marginal_kl_gaussian,
    marginal_kl_subsampled_from_log_q,
)

F64 = torch.float64


def _diag_log_prob(z: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    return torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).sum(-1)


def _random_posteriors(N: int, d: int, seed: int, spread: float = 1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, d, generator=g, dtype=F64)
    log_sigma = -0.7 + 0.3 * torch.randn(N, d, generator=g, dtype=F64)
    return mu.to(dtype), log_sigma.to(dtype)


def _naive_marginal_terms(z, log_q_pair, N, log_prior):
    """Direct double loop over (s, i) pairs: the reference for the fast paths."""
    terms = []
    for s in range(z.shape[0]):
        row = torch.stack([log_q_pair(z[s], i) for i in range(N)])
        terms.append(torch.logsumexp(row.double(), 0) - math.log(N) - log_prior[s].double())
    return torch.stack(terms)


def test_gaussian_pair_matrix_matches_distribution_log_prob():
    mu, ls = _random_posteriors(7, 5, seed=0)
    z = torch.randn(11, 5, dtype=F64)
    ref = torch.distributions.Normal(mu, ls.exp()).log_prob(z[:, None]).sum(-1)
    torch.testing.assert_close(gaussian_log_q_pairs(z, mu, ls), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sampling", ["uniform", "stratified"])
def test_marginal_kl_single_point_equals_closed_form_kl(sampling):
    mu = torch.tensor([[0.7, -1.2, 0.1]], dtype=F64)
    ls = torch.log(torch.tensor([[0.5, 1.3, 0.2]], dtype=F64))
    r = marginal_kl_gaussian(mu, ls, S=20_000, seed=1, sampling=sampling)
    kl = gaussian_kl(mu, ls).item()
    assert abs(r.value - kl) < 4 * r.stderr and r.stderr < 0.02
    assert abs(r.mutual_info) < 1e-10  # q(z) = q(z|x_1): no information about n
    assert math.isclose(r.value_cv, kl, rel_tol=1e-9)


def test_marginal_kl_encoder_equal_to_prior_is_zero():
    mu, ls = torch.zeros(40, 6, dtype=F64), torch.zeros(40, 6, dtype=F64)
    r = marginal_kl_gaussian(mu, ls, S=500, seed=0)
    assert abs(r.value) < 1e-10 and abs(r.mutual_info) < 1e-10 and abs(r.avg_kl) < 1e-10


@pytest.mark.parametrize("sampling", ["uniform", "stratified"])
def test_marginal_kl_two_component_mixture_matches_quadrature(sampling):
    mus, sigmas = np.array([-1.0, 1.5]), np.array([0.5, 0.8])

    def q(z):
        return 0.5 * stats.norm.pdf(z, mus[0], sigmas[0]) + 0.5 * stats.norm.pdf(
            z, mus[1], sigmas[1]
        )

    def integrand(z):
        qz = q(z)
        return qz * (np.log(qz) - stats.norm.logpdf(z)) if qz > 0 else 0.0

    ref, err = integrate.quad(integrand, -15, 15, limit=200, epsabs=1e-12)
    assert err < 1e-8
    mu = torch.tensor(mus, dtype=F64)[:, None]
    ls = torch.log(torch.tensor(sigmas, dtype=F64))[:, None]
    r = marginal_kl_gaussian(mu, ls, S=200_000, seed=2, sampling=sampling, chunk_s=30_000)
    assert abs(r.value - ref) < 4 * r.stderr and r.stderr < 0.005
    # the control-variate estimate (closed-form avg KL − paired MI) is much tighter
    assert abs(r.value_cv - ref) < 4 * r.stderr_cv and r.stderr_cv < r.stderr / 2


def test_marginal_kl_float32_matches_float64():
    mu, ls = _random_posteriors(300, 8, seed=3)
    r64 = marginal_kl_gaussian(mu, ls, S=3000, seed=7)
    r32 = marginal_kl_gaussian(mu.float(), ls.float(), S=3000, seed=7)
    assert math.isclose(r32.value, r64.value, rel_tol=1e-4)
    assert math.isclose(r32.mutual_info, r64.mutual_info, rel_tol=1e-4)


def test_marginal_kl_gaussian_independent_of_chunk_sizes():
    mu, ls = _random_posteriors(257, 4, seed=4)
    ref = marginal_kl_gaussian(mu, ls, S=301, seed=5, chunk_s=301, chunk_n=257)
    for cs, cn in [(1, 257), (301, 1), (7, 13), (64, 100), (1000, 1000)]:
        r = marginal_kl_gaussian(mu, ls, S=301, seed=5, chunk_s=cs, chunk_n=cn)
        assert math.isclose(r.value, ref.value, rel_tol=1e-6, abs_tol=1e-12)
        assert math.isclose(r.stderr, ref.stderr, rel_tol=1e-6)
        assert math.isclose(r.mutual_info, ref.mutual_info, rel_tol=1e-6, abs_tol=1e-12)


def test_marginal_kl_matches_naive_pair_loop():
    mu, ls = _random_posteriors(12, 3, seed=8)
    g = torch.Generator().manual_seed(0)
    src = draw_sources(12, 9, "uniform", g)
    z = mu[src] + ls[src].exp() * torch.randn(9, 3, generator=g, dtype=F64)
    lp = standard_normal_log_prob(z)
    naive = _naive_marginal_terms(z, lambda zs, i: _diag_log_prob(zs, mu[i], ls[i]), 12, lp)
    r = marginal_kl_from_log_q(z, gaussian_log_q_pairs_fn(mu, ls), 12, lp, chunk_s=4, chunk_n=5)
    assert math.isclose(r.value, naive.mean().item(), rel_tol=1e-12)
    assert math.isclose(r.stderr, (naive.std() / 3).item(), rel_tol=1e-9)


@pytest.mark.parametrize("spread", [0.05, 1.0, 20.0])
def test_mutual_information_in_range(spread):
    N = 64
    mu, ls = _random_posteriors(N, 3, seed=9, spread=spread)
    r = marginal_kl_gaussian(mu, ls, S=4000, seed=1)
    assert r.mutual_info_in_range()
    assert -4 * r.mutual_info_stderr <= r.mutual_info <= math.log(N) + 1e-9
    assert math.isclose(r.avg_kl - r.value, r.mutual_info, rel_tol=1e-9, abs_tol=1e-9)
    avg_exact = gaussian_kl(mu, ls).mean().item()
    assert abs(r.avg_kl - avg_exact) < 4 * r.stderr + 1e-9
    if spread == 20.0:  # disjoint posteriors: n is identified from z, I = log N
        assert math.isclose(r.mutual_info, math.log(N), abs_tol=1e-3)
    if spread == 0.05:  # heavily overlapping posteriors (same centre, widths differ): I ≪ log N
        assert r.mutual_info < 0.1 * math.log(N)


def test_out_of_range_mutual_information_warns():
    z = torch.zeros(50, 1, dtype=F64)
    fn = lambda zb, i0, i1: torch.zeros(len(zb), i1 - i0, dtype=F64)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="I\\(n; z\\)"):
        marginal_kl_from_log_q(z, fn, 4, log_q_source=torch.full((50,), -5.0, dtype=F64))


def _subsampled(mu, ls, M, S, seed=0):
    N = mu.shape[0]
    g = torch.Generator().manual_seed(seed)
    src = draw_sources(N, S, "uniform", g)
    z = mu[src] + ls[src].exp() * torch.randn(S, mu.shape[1], generator=g, dtype=mu.dtype)
    lq_src = _diag_log_prob(z, mu[src], ls[src])

    def log_q_fn(zz, idx):
        return _diag_log_prob(zz, mu[idx], ls[idx])

    return z, src, lq_src, log_q_fn


def test_subsampled_estimator_bias_against_full_mixture():
    N, M, S = 64, 8, 3000
    bound = math.log(N / M)
    # 1) M = N: the same mixture (in another order) as the full estimator on the same samples
    mu, ls = _random_posteriors(N, 2, seed=11)
    z, src, lq, fn = _subsampled(mu, ls, N, 200)
    full = marginal_kl_from_log_q(z, gaussian_log_q_pairs_fn(mu, ls), N, log_q_source=lq)
    sub = marginal_kl_subsampled_from_log_q(z, fn, src, N, N, log_q_source=lq)
    assert math.isclose(sub.value, full.value, rel_tol=1e-10) and sub.bias_bound == 0.0
    # 2) partially overlapping posteriors: 0 ≤ bias ≤ log(N/M), measured
    z, src, lq, fn = _subsampled(mu, ls, M, S, seed=1)
    full = marginal_kl_from_log_q(z, gaussian_log_q_pairs_fn(mu, ls), N, log_q_source=lq)
    sub = marginal_kl_subsampled_from_log_q(z, fn, src, N, M, log_q_source=lq, seed=2)
    bias, se = sub.value - full.value, sub.mutual_info_stderr + full.mutual_info_stderr
    assert -4 * se <= bias <= bound + 4 * se and sub.bias_bound == pytest.approx(bound)
    assert 0 <= sub.mutual_info <= math.log(M) + 1e-9
    # 3) disjoint posteriors: the bias reaches log(N/M)
    mu_far = 1000.0 * mu
    z, src, lq, fn = _subsampled(mu_far, ls, M, S, seed=3)
    # (|z|/σ ~ 10³: the matmul terms cancel at the 1e-9 level, so I(n; z) = log N only up to
    # that rounding: the rounding allowance is passed explicitly)
    full = marginal_kl_from_log_q(
        z, gaussian_log_q_pairs_fn(mu_far, ls), N, log_q_source=lq, numerical_tol=1e-6
    )
    sub = marginal_kl_subsampled_from_log_q(z, fn, src, N, M, log_q_source=lq)
    assert math.isclose(full.mutual_info, math.log(N), abs_tol=1e-6)
    assert math.isclose(sub.value - full.value, bound, abs_tol=1e-3)
    # 4) identical posteriors: no bias at all
    mu0, ls0 = mu[:1].repeat(N, 1), ls[:1].repeat(N, 1)
    z, src, lq, fn = _subsampled(mu0, ls0, M, 200, seed=4)
    full = marginal_kl_from_log_q(z, gaussian_log_q_pairs_fn(mu0, ls0), N, log_q_source=lq)
    sub = marginal_kl_subsampled_from_log_q(z, fn, src, N, M, log_q_source=lq)
    assert math.isclose(sub.value, full.value, rel_tol=1e-10)


@pytest.mark.parametrize("N,S", [(7, 30), (30, 7), (5, 5)])
def test_stratified_sources_balance(N, S):
    counts = draw_sources(N, S, "stratified", torch.Generator().manual_seed(0)).bincount(
        minlength=N
    )
    assert counts.sum() == S and counts.max() - counts.min() <= 1
    assert counts.min() == S // N


def test_logsumexp_chunked_matches_torch_and_keeps_minus_inf_rows():
    g = torch.Generator().manual_seed(3)
    full = torch.randn(5, 11, generator=g, dtype=F64)
    full[2] = -math.inf
    out = logsumexp_chunked(torch.zeros(5, 1), lambda z, i0, i1: full[:, i0:i1].clone(), 11, 4)
    torch.testing.assert_close(out, torch.logsumexp(full, 1))
    with pytest.raises(ValueError, match="log_q_pairs_fn"):
        logsumexp_chunked(torch.zeros(5, 1), lambda z, i0, i1: full, 11, 4)


def test_bad_tensor_arguments_raise():
    with pytest.raises(ValueError, match="mu, log_sigma"):
        marginal_kl_gaussian(torch.zeros(3, 2), torch.zeros(3, 3), S=4)
    with pytest.raises(ValueError, match="sampling"):
        draw_sources(3, 4, "sobol")
    with pytest.raises(ValueError, match="S"):
        draw_sources(3, 0)
    with pytest.raises(ValueError, match="chunk_n"):
        logsumexp_chunked(torch.zeros(1, 1), lambda z, i0, i1: torch.zeros(1, i1 - i0), 2, 0)
    assert SAMPLINGS == ("uniform", "stratified")
