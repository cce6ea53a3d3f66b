"""Tests of the model-level metrics (geco_core.metrics.evaluation) on a tiny linear-Gaussian model
whose reconstruction error has a closed-form expectation, against direct scipy computations and
direct loops over (z_s, x_i) pairs, and on the real conv VAE, VAE + NVP and ConvDRAW.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from geco_core.metrics import (
    average_kl,
    draw_sources,
    gaussian_kl,
    marginal_kl,
    nll_per_pixel,
    optimal_sigma,
    sigma_opt,
    standard_normal_log_prob,
)
from geco_core.models import build_model
from geco_core.models.base import LatentVariableModel, VAEOutput

F64 = torch.float64


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

    posterior_kind = "gaussian"

    def posterior_params(self, x: Tensor, context: Tensor | None = None):
        return self._params(x, context)


class TinyContextVAE(TinyPairsVAE):
    """The same model with the encoder-context fast path (h = [μ, log σ], no broadcasting)."""

    posterior_kind = "context"

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


def _naive_marginal_terms(z, log_q_pair, N, log_prior):
    """Direct double loop over (s, i) pairs: the reference for the fast paths."""
    terms = []
    for s in range(z.shape[0]):
        row = torch.stack([log_q_pair(z[s], i) for i in range(N)])
        terms.append(torch.logsumexp(row.double(), 0) - math.log(N) - log_prior[s].double())
    return torch.stack(terms)


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


def test_marginal_kl_encoder_equal_to_prior_is_zero():
    # a model whose encoder ignores x and outputs the prior (pairs path)
    model = TinyPairsVAE(log_sigma0=0.0)
    with torch.no_grad():
        for p in (model.A, model.b, model.V):
            p.zero_()
    r2 = marginal_kl(model, _data(30), S=300, method="pairs", progress=False)
    assert abs(r2.value) < 1e-10 and abs(r2.mutual_info) < 1e-10


def test_model_paths_independent_of_chunk_sizes():
    # model-level paths: context (non-broadcasting) and pairs
    x = _data(23)
    for cls, method in [(TinyContextVAE, "context"), (TinyPairsVAE, "pairs")]:
        base = marginal_kl(cls(), x, S=31, method=method, chunk_s=31, chunk_n=23, progress=False)
        r = marginal_kl(cls(), x, S=31, method=method, chunk_s=4, chunk_n=5, progress=False)
        assert math.isclose(r.value, base.value, rel_tol=1e-6)


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


def test_dispatch_follows_the_declared_posterior_kind():
    x = _data(12)
    assert (TinyPairsVAE.posterior_kind, TinyGaussianVAE.posterior_kind) == ("generic", "gaussian")
    assert TinyContextVAE.posterior_kind == "context" and not TinyContextVAE.context_broadcasts

    class Undeclared(TinyPairsVAE):  # has the method but does not declare the Gaussian path
        def posterior_params(self, x, context=None):
            raise AssertionError("the metrics dispatch on posterior_kind, not on hasattr")

    assert average_kl(Undeclared(), x, n_samples=2).method == "monte_carlo"
    assert marginal_kl(Undeclared(), x, S=8, progress=False).M == 12  # the pairs path
    with pytest.raises(ValueError, match="posterior_kind"):
        marginal_kl(TinyPairsVAE(), x, S=8, method="gaussian")
    with pytest.raises(ValueError, match="posterior_kind"):
        marginal_kl(TinyGaussianVAE(), x, S=8, method="context")
    # the real models declare their fast paths
    kinds = {
        name: (type(m).posterior_kind, type(m).context_broadcasts)
        for name, m in (
            ("conv_vae", build_model("conv_vae", latent_dim=2, channels=(4, 4), hidden=8)),
            ("vae_nvp", build_model("vae_nvp", latent_dim=2, channels=(4, 4), context_dim=8)),
            ("convdraw", build_model("convdraw", steps=1, hidden=4)),
        )
    }
    assert kinds == {
        "conv_vae": ("gaussian", False),
        "vae_nvp": ("context", True),
        "convdraw": ("generic", False),
    }


def test_metrics_leave_rng_and_mode_untouched():
    model = TinyGaussianVAE()
    model.train()
    state = torch.get_rng_state()
    marginal_kl(TinyPairsVAE(), _data(5), S=10, method="pairs", progress=False)
    sigma_opt(model, _data(5))
    assert torch.equal(state, torch.get_rng_state()) and model.training


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
    with pytest.raises(ValueError, match="n"):
        sigma_opt(m, x, n=0)
    conditional = build_model("conv_vae", (1, 8, 8), context_shape=(1, 8, 8), channels=(4,))
    with pytest.raises(ValueError, match="context"):
        sigma_opt(conditional, torch.rand(3, 1, 8, 8))


# --------------------------------------------------------------------------------------------
# The real models
# --------------------------------------------------------------------------------------------
def _nvp_model():
    kw = dict(latent_dim=3, channels=(4, 4), context_dim=8, flow_hidden=8, n_flows=2)
    return build_model("vae_nvp", (1, 8, 8), **kw).double()


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
    torch.manual_seed(0)
    model = build_model("conv_vae", (1, 8, 8), latent_dim=3, channels=(4, 4), hidden=8)
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
    torch.manual_seed(0)
    model = build_model("convdraw", (1, 8, 8), steps=2, hidden=4, z_channels=1)
    model = model.double()
    x = torch.rand(6, 1, 8, 8, dtype=F64)
    full = marginal_kl(model, x, S=5, seed=2, method="pairs", progress=False)
    sub = marginal_kl(model, x, S=5, seed=2, M=6, progress=False)
    assert sub.M == 6 and full.M == 6
    assert math.isclose(sub.value, full.value, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(sub.mutual_info, full.mutual_info, rel_tol=1e-9, abs_tol=1e-9)
