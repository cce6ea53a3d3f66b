"""Tests of geco_core.metrics and geco_core.marginal_kl against closed forms and references.

References used: closed-form Gaussian KLs, scipy quadrature of a 1-D mixture KL, scipy / mpmath
normal CDFs for the quantized normal, direct loops over (z_s, x_i) pairs, and a tiny linear
Gaussian model whose reconstruction error has a closed-form expectation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import Tensor, nn

from geco_core.marginal_kl import (
    draw_sources,
    gaussian_kl,
    gaussian_log_q_pairs,
    gaussian_log_q_pairs_fn,
    marginal_kl_from_log_q,
    marginal_kl_gaussian,
    marginal_kl_subsampled_from_log_q,
    mean_stderr,
    standard_normal_log_prob,
)
from geco_core.metrics import (
    average_kl,
    marginal_kl,
    nll_per_pixel,
    optimal_sigma,
    quantized_normal_log_prob,
    sigma_opt,
)
from geco_core.models.base import LatentVariableModel, VAEOutput

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost on a shared, loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------
# A tiny deterministic linear-Gaussian model implementing the base interface
# --------------------------------------------------------------------------------------------
def _diag_log_prob(z: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    return torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).sum(-1)


class TinyPairsVAE(LatentVariableModel):
    """x ``[B, 1, 2, 3]`` → q(z|x) = N(Ax + b, diag σ(x)²), g(z) = Wz + c (linear, float64).

    Exposes only the generic interface (``log_q`` on matched rows): the "pairs" method.
    ``log_sigma0`` sets the posterior width (−30 gives a deterministic encoder).
    """

    def __init__(self, latent_dim: int = 2, log_sigma0: float = -1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        D = 6
        self.latent_dim = latent_dim
        self.A = nn.Parameter(0.8 * torch.randn(latent_dim, D, generator=g, dtype=F64))
        self.b = nn.Parameter(0.1 * torch.randn(latent_dim, generator=g, dtype=F64))
        self.V = nn.Parameter(0.3 * torch.randn(latent_dim, D, generator=g, dtype=F64))
        self.W = nn.Parameter(0.2 * torch.randn(D, latent_dim, generator=g, dtype=F64))
        self.c = nn.Parameter(torch.full((D,), 0.5, dtype=F64))
        self.log_sigma0 = log_sigma0

    def _params(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        flat = x.reshape(x.shape[0], -1).to(F64)
        mu = flat @ self.A.T + self.b
        log_sigma = self.log_sigma0 + 0.2 * torch.tanh(flat @ self.V.T)
        return mu, log_sigma

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return (z @ self.W.T + self.c).reshape(z.shape[0], 1, 2, 3)

    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        mu, ls = self._params(x)
        z = mu + ls.exp() * torch.randn_like(mu)
        log_q = _diag_log_prob(z, mu, ls)
        log_prior = standard_normal_log_prob(z)
        return VAEOutput(self.decode(z), z, gaussian_kl(mu, ls), log_q, log_prior)

    def log_q(self, z: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        mu, ls = self._params(x)
        return _diag_log_prob(z, mu, ls)

    def sample_posterior(self, x: Tensor, n: int = 1, context: Tensor | None = None):
        mu, ls = self._params(x)
        z = mu + ls.exp() * torch.randn(n, *mu.shape, dtype=F64)
        return z, _diag_log_prob(z, mu, ls)

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        return self.decode(torch.randn(n, self.latent_dim, dtype=F64))


class TinyGaussianVAE(TinyPairsVAE):
    """The same model with the diagonal-Gaussian fast path (``posterior_params``)."""

    def posterior_params(self, x: Tensor, context: Tensor | None = None):
        return self._params(x, context)


class TinyContextVAE(TinyPairsVAE):
    """The same model with the encoder-context fast path (h = [μ, log σ], no broadcasting)."""

    def posterior_context(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return torch.cat(self._params(x, context), dim=-1)

    def log_q_from_context(self, z: Tensor, h: Tensor) -> Tensor:
        if z.dim() != 2 or h.dim() != 2 or z.shape[0] != h.shape[0]:
            raise ValueError("matched rows only")
        mu, ls = h.chunk(2, dim=-1)
        return _diag_log_prob(z, mu, ls)


def _data(n: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 2, 3), generator=g).to(F64) / 255.0


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


# --------------------------------------------------------------------------------------------
# Quantized normal
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# σ_opt and the NLL on the tiny model
# --------------------------------------------------------------------------------------------
def test_sigma_opt_deterministic_encoder_equals_direct_rms():
    model = TinyGaussianVAE(log_sigma0=-40.0)
    x = _data(50)
    mu, _ = model.posterior_params(x)
    direct = torch.sqrt(((x - model.decode(mu)) ** 2).mean()).item()
    assert math.isclose(sigma_opt(model, x, n=1000), direct, rel_tol=1e-12)
    assert math.isclose(optimal_sigma(x, model.decode(mu)), direct, rel_tol=1e-12)
    # a subset: the RMS over exactly n of the points, seed-dependent, reproducible
    per_point = ((x - model.decode(mu)) ** 2).mean(dim=(1, 2, 3))
    s10 = sigma_opt(model, x, n=10, seed=3)
    assert s10 == sigma_opt(model, x, n=10, seed=3)
    # documented subset: the first n of a seeded permutation of the N indices
    subset = torch.randperm(50, generator=torch.Generator().manual_seed(3))[:10]
    assert math.isclose(s10, math.sqrt(per_point[subset].mean().item()), rel_tol=1e-12)
    assert s10 != sigma_opt(model, x, n=10, seed=4)


def test_sigma_opt_stochastic_encoder_matches_closed_form_expectation():
    # E‖x − Wz − c‖² = ‖x − Wμ − c‖² + Σ_j ‖W_{:,j}‖² σ_j² for z ~ N(μ, diag σ²)
    model = TinyGaussianVAE(log_sigma0=0.0)
    x = _data(4000, seed=5)
    mu, ls = model.posterior_params(x)
    bias = ((x - model.decode(mu)) ** 2).reshape(len(x), -1).sum(1)
    var = ((model.W**2).sum(0) * torch.exp(2 * ls)).sum(1)
    expected = math.sqrt(((bias + var).sum() / x.numel()).item())
    got = sigma_opt(model, x, n=4000, seed=0)
    assert math.isclose(got, expected, rel_tol=0.02)
    assert not math.isclose(got, math.sqrt((bias.sum() / x.numel()).item()), rel_tol=0.05)


def test_nll_per_pixel_matches_direct_scipy_computation():
    model = TinyGaussianVAE(log_sigma0=-40.0)
    x = _data(40, seed=2)
    sigma = 0.17
    r = nll_per_pixel(model, x, sigma, batch_size=7)
    mu, _ = model.posterior_params(x)
    m = model.decode(mu).detach().numpy()
    k = np.round(x.numpy() * 255)
    lo = np.where(k > 0, (k - 0.5) / 255, -np.inf)
    hi = np.where(k < 255, (k + 0.5) / 255, np.inf)
    lp = np.log(stats.norm.cdf(hi, m, sigma) - stats.norm.cdf(lo, m, sigma))
    per_point = -lp.reshape(40, -1).mean(1)
    assert math.isclose(r.nats_per_pixel, per_point.mean(), rel_tol=1e-9)
    assert math.isclose(r.bits_per_dim, per_point.mean() / math.log(2), rel_tol=1e-9)
    assert math.isclose(r.stderr, per_point.std(ddof=1) / math.sqrt(40), rel_tol=1e-6)
    assert r.n == 40 and r.sigma == sigma


# --------------------------------------------------------------------------------------------
# Average KL
# --------------------------------------------------------------------------------------------
def test_average_kl_closed_form_and_monte_carlo_agree():
    x = _data(200, seed=4)
    closed = average_kl(TinyGaussianVAE(), x)
    mu, ls = TinyGaussianVAE().posterior_params(x)
    direct = 0.5 * (mu**2 + torch.exp(2 * ls) - 1 - 2 * ls).sum(1)
    assert closed.method == "closed_form"
    assert math.isclose(closed.value, direct.mean().item(), rel_tol=1e-12)
    assert math.isclose(closed.stderr, (direct.std() / math.sqrt(200)).item(), rel_tol=1e-9)

    class MCOnly(TinyPairsVAE):  # KL reported as the single-sample log q − log π
        def forward(self, x, context=None):
            out = super().forward(x, context)
            out.kl = out.log_q - out.log_prior
            return out

    mc = average_kl(MCOnly(), x, n_samples=200)
    assert mc.method == "monte_carlo" and mc.n_samples == 200
    assert abs(mc.value - closed.value) < 4 * math.hypot(mc.stderr, 0.2 * closed.stderr)


# --------------------------------------------------------------------------------------------
# Marginal KL: closed forms and references
# --------------------------------------------------------------------------------------------
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
    # the same through a model whose encoder ignores x and outputs the prior (pairs path)
    model = TinyPairsVAE(log_sigma0=0.0)
    with torch.no_grad():
        for p in (model.A, model.b, model.V):
            p.zero_()
    r2 = marginal_kl(model, _data(30), S=300, method="pairs", progress=False)
    assert abs(r2.value) < 1e-10 and abs(r2.mutual_info) < 1e-10


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


def test_marginal_kl_independent_of_chunk_sizes():
    mu, ls = _random_posteriors(257, 4, seed=4)
    ref = marginal_kl_gaussian(mu, ls, S=301, seed=5, chunk_s=301, chunk_n=257)
    for cs, cn in [(1, 257), (301, 1), (7, 13), (64, 100), (1000, 1000)]:
        r = marginal_kl_gaussian(mu, ls, S=301, seed=5, chunk_s=cs, chunk_n=cn)
        assert math.isclose(r.value, ref.value, rel_tol=1e-6, abs_tol=1e-12)
        assert math.isclose(r.stderr, ref.stderr, rel_tol=1e-6)
        assert math.isclose(r.mutual_info, ref.mutual_info, rel_tol=1e-6, abs_tol=1e-12)
    # model-level paths: context (non-broadcasting) and pairs
    x = _data(23)
    for cls, method in [(TinyContextVAE, "context"), (TinyPairsVAE, "pairs")]:
        base = marginal_kl(cls(), x, S=31, method=method, chunk_s=31, chunk_n=23, progress=False)
        r = marginal_kl(cls(), x, S=31, method=method, chunk_s=4, chunk_n=5, progress=False)
        assert math.isclose(r.value, base.value, rel_tol=1e-6)


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


# --------------------------------------------------------------------------------------------
# Model-level paths and the subsampled estimator
# --------------------------------------------------------------------------------------------
def test_model_paths_agree():
    x = _data(40, seed=6)
    kw = dict(S=400, seed=3, progress=False)
    pairs = marginal_kl(TinyPairsVAE(), x, method="pairs", **kw)
    ctx = marginal_kl(TinyContextVAE(), x, method="auto", **kw)
    gauss = marginal_kl(TinyGaussianVAE(), x, method="auto", **kw)
    # pairs and context draw the same samples through forward(): identical estimates
    assert math.isclose(ctx.value, pairs.value, rel_tol=1e-10)
    assert math.isclose(ctx.mutual_info, pairs.mutual_info, rel_tol=1e-9)
    # the Gaussian path draws its own noise: agreement within Monte Carlo error
    assert abs(gauss.value - pairs.value) < 4 * math.hypot(gauss.stderr, pairs.stderr)
    assert abs(gauss.value_cv - pairs.value) < 4 * math.hypot(gauss.stderr_cv, pairs.stderr)


def test_metrics_leave_rng_and_mode_untouched():
    model = TinyGaussianVAE()
    model.train()
    state = torch.get_rng_state()
    marginal_kl(TinyPairsVAE(), _data(5), S=10, method="pairs", progress=False)
    sigma_opt(model, _data(5))
    assert torch.equal(state, torch.get_rng_state()) and model.training


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


def test_subsampled_model_path_uses_distinct_components():
    x = _data(30)
    seen = []

    class Spy(TinyPairsVAE):
        def log_q(self, z, x, context=None):
            seen.append(x.shape[0])
            return super().log_q(z, x, context)

    r = marginal_kl(Spy(), x, S=20, M=6, chunk_s=5, progress=False)
    assert r.M == 6 and r.n == 30 and math.isclose(r.bias_bound, math.log(5))
    assert sum(seen) == 20 * 6  # S·M pair evaluations, not S·N
    assert r.mutual_info <= math.log(6) + 1e-9


def test_bad_arguments_raise():
    x = _data(5)
    m = TinyGaussianVAE()
    with pytest.raises(ValueError, match="method"):
        marginal_kl(m, x, method="exact")
    with pytest.raises(ValueError, match="sampling"):
        marginal_kl(m, x, sampling="sobol")
    with pytest.raises(ValueError, match="M"):
        marginal_kl(m, x, M=6)
    with pytest.raises(ValueError, match="S"):
        marginal_kl(m, x, S=0)
    with pytest.raises(ValueError, match="mu, log_sigma"):
        marginal_kl_gaussian(torch.zeros(3, 2), torch.zeros(3, 3), S=4)
    with pytest.raises(ValueError, match="n"):
        sigma_opt(m, x, n=0)
    with pytest.raises(ValueError, match="x_mean"):
        optimal_sigma(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="terms"):
        mean_stderr(torch.tensor([1.0, float("nan")]))


# --------------------------------------------------------------------------------------------
# The real VAE + NVP model (skipped until geco_core.models provides it)
# --------------------------------------------------------------------------------------------
def _nvp_model():
    models = pytest.importorskip("geco_core.models")
    build = getattr(models, "build_model", None)
    if build is None:
        pytest.skip("geco_core.models.build_model not available yet")
    try:
        kw = dict(latent_dim=3, channels=(4, 4), context_dim=8, flow_hidden=8, n_flows=2)
        model = build("vae_nvp", (1, 8, 8), **kw)
    except (ValueError, TypeError, NotImplementedError) as e:  # pragma: no cover
        pytest.skip(f"vae_nvp not buildable: {e}")
    return model.double()


def test_nvp_context_fast_path_matches_naive_pair_loop():
    model = _nvp_model()
    torch.manual_seed(0)
    x = torch.rand(7, 1, 8, 8, dtype=F64)
    fast = marginal_kl(
        model, x, S=6, seed=1, method="context", chunk_s=4, chunk_n=3, progress=False
    )
    pairs = marginal_kl(model, x, S=6, seed=1, method="pairs", progress=False)
    assert math.isclose(fast.value, pairs.value, rel_tol=1e-9, abs_tol=1e-9)
    # naive reference: the same samples, one log_q call per (z_s, x_i) pair
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(1)
        src = draw_sources(7, 6, "uniform", torch.Generator().manual_seed(1))
        out = model.eval()(x[src])
        naive = _naive_marginal_terms(
            out.z, lambda zs, i: model.log_q(zs[None], x[i : i + 1])[0], 7, out.log_prior
        )
    assert math.isclose(fast.value, naive.mean().item(), rel_tol=1e-9, abs_tol=1e-9)
    assert fast.mutual_info_in_range()


def test_real_conv_vae_gaussian_path_agrees_with_pairs_path():
    models = pytest.importorskip("geco_core.models")
    torch.manual_seed(0)
    model = models.build_model("conv_vae", (1, 8, 8), latent_dim=3, channels=(4, 4), hidden=8)
    model = model.double()
    x = torch.rand(20, 1, 8, 8, dtype=F64)
    gauss = marginal_kl(model, x, S=600, seed=1, progress=False)
    pairs = marginal_kl(model, x, S=600, seed=1, method="pairs", progress=False)
    assert abs(gauss.value - pairs.value) < 4 * math.hypot(gauss.stderr, pairs.stderr)
    assert abs(gauss.mutual_info - pairs.mutual_info) < 4 * math.hypot(
        gauss.mutual_info_stderr, pairs.mutual_info_stderr
    )
    closed = average_kl(model, x)
    assert math.isclose(gauss.value_cv, closed.value - gauss.mutual_info, rel_tol=1e-12)


def test_real_convdraw_subsampled_with_all_components_equals_full():
    models = pytest.importorskip("geco_core.models")
    torch.manual_seed(0)
    model = models.build_model("convdraw", (1, 8, 8), steps=2, hidden=4, z_channels=1)
    model = model.double()
    x = torch.rand(6, 1, 8, 8, dtype=F64)
    full = marginal_kl(model, x, S=5, seed=2, method="pairs", progress=False)
    sub = marginal_kl(model, x, S=5, seed=2, M=6, progress=False)
    assert sub.M == 6 and full.M == 6
    assert math.isclose(sub.value, full.value, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(sub.mutual_info, full.mutual_info, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("N,S", [(7, 30), (30, 7), (5, 5)])
def test_stratified_sources_balance(N, S):
    counts = draw_sources(N, S, "stratified", torch.Generator().manual_seed(0)).bincount(
        minlength=N
    )
    assert counts.sum() == S and counts.max() - counts.min() <= 1
    assert counts.min() == S // N
