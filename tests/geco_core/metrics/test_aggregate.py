"""Marginal-KL estimators on one log-density matrix (geco_core.metrics.aggregate) against brute
force, closed forms and the population value they bracket."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from geco_core.metrics import marginal_kl_from_log_q, standard_normal_log_prob
from geco_core.metrics.aggregate import (
    aggregate_log_density,
    exact_estimate,
    leave_one_out_estimate,
    log_q_matrix,
    minibatch_stratified_estimate,
    minibatch_weighted_estimate,
    mss_log_weights,
)
from geco_core.models import build_model


def _gaussian_population(N, sigma, tau, seed):
    """N 1-D posteriors N(μᵢ, σ²) with μᵢ ~ N(0, τ²); one sample per posterior; the matrix."""
    g = np.random.default_rng(seed)
    mu = g.normal(0.0, tau, N)
    z = mu + sigma * g.normal(size=N)
    L = stats.norm.logpdf(z[:, None], mu[None, :], sigma)
    lp = stats.norm.logpdf(z)
    return torch.from_numpy(L), torch.from_numpy(lp), torch.arange(N)


def test_exact_and_leave_one_out_against_brute_force():
    L, lp, src = _gaussian_population(40, 0.3, 1.0, 0)
    Ln, lpn = L.numpy(), lp.numpy()
    brute = np.mean(logsumexp(Ln, axis=1) - math.log(40) - lpn)
    e = exact_estimate(L, lp)
    assert e.value == pytest.approx(brute, abs=1e-12) and e.n_terms == 40
    terms = [logsumexp(np.delete(Ln[s], s)) - math.log(39) - lpn[s] for s in range(40)]
    loo = leave_one_out_estimate(L, lp, src)
    assert loo.value == pytest.approx(np.mean(terms), abs=1e-12)
    assert loo.stderr == pytest.approx(np.std(terms, ddof=1) / math.sqrt(40), rel=1e-9)
    # the own component adds mass, so here leave-one-out ends below exact (term by term it
    # need not: it divides by N − 1, not N)
    assert loo.value < e.value
    # the same number as the streaming estimator of geco_core.metrics.marginal
    fn = lambda zb, i0, i1: L[: len(zb), i0:i1].clone() if len(zb) == 40 else None  # noqa: E731
    ref = marginal_kl_from_log_q(torch.zeros(40, 1), fn, 40, lp, chunk_s=40, chunk_n=7,
                                 warn=False)
    assert e.value == pytest.approx(ref.value, abs=1e-12)


def test_aggregate_log_density_is_the_mixture_density():
    mu, sigma = np.array([-1.0, 0.5, 2.0]), 0.7
    z = np.linspace(-3, 3, 11)
    L = torch.from_numpy(stats.norm.logpdf(z[:, None], mu[None], sigma))
    expect = np.log(stats.norm.pdf(z[:, None], mu[None], sigma).mean(1))
    np.testing.assert_allclose(aggregate_log_density(L).numpy(), expect, atol=1e-12)


def test_exact_and_leave_one_out_bracket_the_population_marginal_kl():
    """Posteriors N(μᵢ, σ²), μᵢ ~ N(0, τ²): the population aggregate is N(0, σ² + τ²), so
    KL[q ‖ π] = KL[N(0, v) ‖ N(0, 1)] = ½ (v − 1 − ln v). Over many training sets, the mean
    exact estimate lies above it and the mean leave-one-out estimate below it."""
    sigma, tau, N, reps = 0.2, 1.5, 30, 200
    v = sigma**2 + tau**2
    truth = 0.5 * (v - 1 - math.log(v))
    ex, lo = [], []
    for r in range(reps):
        L, lp, src = _gaussian_population(N, sigma, tau, 100 + r)
        ex.append(exact_estimate(L, lp).value)
        lo.append(leave_one_out_estimate(L, lp, src).value)
    ex, lo = np.array(ex), np.array(lo)
    se_ex, se_lo = ex.std(ddof=1) / math.sqrt(reps), lo.std(ddof=1) / math.sqrt(reps)
    assert ex.mean() - truth > 3 * se_ex, (ex.mean(), truth, se_ex)
    assert truth - lo.mean() > 3 * se_lo, (lo.mean(), truth, se_lo)


def test_minibatch_weighted_offsets_in_the_two_limits():
    N, B = 12, 4
    src = torch.arange(N)
    # complete overlap (every posterior the same density): log q̂ = log q − log N
    L = torch.full((N, N), -1.3, dtype=torch.float64)
    lp = torch.full((N,), -1.3, dtype=torch.float64)
    mws = minibatch_weighted_estimate(L, lp, src, B, generator=torch.Generator().manual_seed(0))
    assert mws.value == pytest.approx(-math.log(N), abs=1e-12) and mws.n_terms == N
    assert exact_estimate(L, lp).value == pytest.approx(0.0, abs=1e-12)
    # disjoint posteriors (own density e^0, all others e^-200): exact gives −log N + (0 − lp),
    # MWS gives −log(N·B) + (0 − lp)
    L = torch.full((N, N), -200.0, dtype=torch.float64)
    L.fill_diagonal_(0.0)
    lp = torch.zeros(N, dtype=torch.float64)
    mws = minibatch_weighted_estimate(L, lp, src, B, generator=torch.Generator().manual_seed(0))
    assert mws.value == pytest.approx(-math.log(N * B), abs=1e-9)
    assert exact_estimate(L, lp).value == pytest.approx(-math.log(N), abs=1e-9)
    # MSS: own weight 1/N, so the disjoint limit is exact, and complete overlap gives 0
    mss = minibatch_stratified_estimate(L, lp, src, B, generator=torch.Generator().manual_seed(0))
    assert mss.value == pytest.approx(-math.log(N), abs=1e-9)
    L = torch.full((N, N), -1.3, dtype=torch.float64)
    lp = torch.full((N,), -1.3, dtype=torch.float64)
    mss = minibatch_stratified_estimate(L, lp, src, B, generator=torch.Generator().manual_seed(0))
    assert mss.value == pytest.approx(0.0, abs=1e-12)


def test_mss_weights_give_an_unbiased_mixture_density_over_uniform_batches():
    """E over the uniformly drawn other members of a batch of Σ_j W_0j q(z|x_j), the own point
    at position 0, is q_N(z) = (1/N) Σ_i q(z|x_i): enumerated over every ordered batch."""
    import itertools

    N, B = 6, 4
    q = np.random.default_rng(0).random(N) + 0.1  # q(z|x_i) for one z, own point i = 0
    W = mss_log_weights(B, N).exp().numpy()
    others = [j for j in range(N) if j != 0]
    vals = [W[0, 0] * q[0] + sum(W[0, k + 1] * q[j] for k, j in enumerate(perm))
            for perm in itertools.permutations(others, B - 1)]
    assert np.mean(vals) == pytest.approx(q.mean(), rel=1e-12)


def test_mss_weights_match_their_definition_and_the_batch_sum():
    B, N = 5, 50
    W = mss_log_weights(B, N).exp()
    M = B - 1
    for i in range(B):
        for j in range(B):
            want = 1 / N if i == j else (N - M) / (N * M) if j == (i + 1) % B else 1 / M
            assert float(W[i, j]) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(W.sum(1).numpy(), 1.0, rtol=1e-12)
    # the estimate of one batch by hand
    g = np.random.default_rng(3)
    L = torch.from_numpy(g.normal(size=(B, B)))
    lp = torch.from_numpy(g.normal(size=B))
    est = minibatch_stratified_estimate(L, lp, torch.arange(B), B,
                                        generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(1))
    Lp = L[perm][:, perm].numpy()
    W5 = mss_log_weights(B, B).numpy()  # the matrix has N = B = 5 components
    terms = logsumexp(Lp + W5, axis=1) - lp[perm].numpy()
    assert est.value == pytest.approx(terms.mean(), abs=1e-12)


def test_minibatches_skip_batches_with_repeated_sources_and_the_remainder():
    L, lp = torch.zeros(7, 3, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
    src = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    est = minibatch_weighted_estimate(L, lp, src, 3, generator=torch.Generator().manual_seed(0))
    assert est.n_terms % 3 == 0 and est.n_terms <= 6
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_weighted_estimate(L, lp, torch.zeros(7, dtype=torch.long), 2)


def test_bad_arguments_name_themselves():
    L, lp, src = torch.zeros(4, 4), torch.zeros(4), torch.arange(4)
    with pytest.raises(ValueError, match="log_q"):
        exact_estimate(torch.zeros(4), lp)
    with pytest.raises(ValueError, match="log_prior"):
        exact_estimate(L, torch.zeros(3))
    with pytest.raises(ValueError, match="source"):
        leave_one_out_estimate(L, lp, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="source"):
        leave_one_out_estimate(L, lp, src.float())
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_stratified_estimate(L, lp, src, 2)
    with pytest.raises(TypeError, match="batch_size"):
        minibatch_weighted_estimate(L, lp, src, 2.0)
    with pytest.raises(ValueError, match="N >= 2"):
        leave_one_out_estimate(torch.zeros(1, 1), torch.zeros(1), torch.tensor([0]))


@pytest.mark.parametrize("name", ["vae_nvp", "conv_vae", "convdraw"])
def test_log_q_matrix_equals_the_model_density_of_every_pair(name):
    torch.manual_seed(0)
    kw = {"vae_nvp": dict(latent_dim=3, channels=(4, 4), context_dim=8, flow_hidden=8,
                          n_flows=2),
          "conv_vae": dict(latent_dim=3),
          "convdraw": {}}[name]
    model = build_model(name, (1, 28, 28), **kw).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        z = model.sample_posterior(x[:4], n=1)[0][0]  # [4, d]: one sample of points 0..3
        L = log_q_matrix(model, z, x, chunk_s=3, chunk_n=2)
        assert L.shape == (4, 5) and L.dtype == torch.float32
        for s in range(4):
            ref = model.log_q(z[s : s + 1].expand(5, -1), x)
            torch.testing.assert_close(L[s], ref.float(), atol=2e-4, rtol=1e-5)
    assert not model.training


def test_log_q_matrix_then_exact_equals_the_model_level_marginal_kl():
    from geco_core.metrics import draw_sources, marginal_kl

    torch.manual_seed(1)
    model = build_model("vae_nvp", (1, 28, 28), latent_dim=2, channels=(4, 4), context_dim=8,
                        flow_hidden=8, n_flows=2).eval()
    x = torch.rand(12, 1, 28, 28)
    ref = marginal_kl(model, x, S=24, seed=5, sampling="stratified", progress=False, warn=False)
    # the same samples as marginal_kl draws them
    g = torch.Generator().manual_seed(5)
    src = draw_sources(12, 24, "stratified", g)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        with torch.no_grad():
            out = model(x[src])
    L = log_q_matrix(model, out.z, x)
    est = exact_estimate(L.double(), standard_normal_log_prob(out.z.double()))
    assert est.value == pytest.approx(ref.value, abs=1e-4)
