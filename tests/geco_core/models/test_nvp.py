"""Tests of the VAE + conditional RealNVP posterior: bijectivity, log-dets, normalisation."""

import math

import pytest
import torch

from geco_core.models.layers import diag_normal_kl, diag_normal_log_prob
from geco_core.models.nvp import VAENVP, ConditionalAffineCoupling, soft_clip_log_scale

SMALL = dict(channels=(8, 8), context_dim=12, flow_hidden=16, context_embed=8)


def _model(latent_dim=4, n_flows=4, seed=0, randomize=0.0, dtype=torch.float32, **kw):
    """A small VAENVP; ``randomize > 0`` overwrites the flow's weights (zero-initialised output
    layers make the flow start as the identity, which would make most tests vacuous)."""
    torch.manual_seed(seed)
    m = VAENVP((1, 28, 28), latent_dim=latent_dim, n_flows=n_flows, **{**SMALL, **kw}).to(dtype)
    if randomize:
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for p in [*m.flows.parameters(), *m.base.parameters()]:
                p.copy_(randomize * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def test_soft_clip_is_symmetric_and_can_expand():
    a = torch.tensor([-1e6, -1.0, 0.0, 1.0, 1e6])
    s = soft_clip_log_scale(a, 3.0)
    assert s[0] > -3.0 and s[-1] < 3.0
    assert s[-1] > 2.99 and s[0] < -2.99  # expansions (s > 0) as large as contractions
    torch.testing.assert_close(s, -soft_clip_log_scale(-a, 3.0))
    torch.testing.assert_close(
        soft_clip_log_scale(torch.tensor([1e-4]), 3.0), torch.tensor([1e-4]), atol=1e-8, rtol=1e-3
    )


@pytest.mark.parametrize("latent_dim", [2, 5])
def test_inverse_of_forward_is_identity(latent_dim):
    m = _model(latent_dim=latent_dim, randomize=0.2)
    h = torch.randn(64, 12)
    u = 2 * torch.randn(64, latent_dim)
    z, ld = m.flow_forward(u, h)
    assert (z - u).abs().max() > 0.1  # the flow is not the identity
    u2, ld_inv = m.flow_inverse(z, h)
    torch.testing.assert_close(u2, u, atol=1e-5, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-5, rtol=0)
    z2, _ = m.flow_forward(u2, h)
    torch.testing.assert_close(z2, z, atol=1e-5, rtol=0)


@pytest.mark.parametrize("latent_dim", [2, 3, 4])
def test_log_det_matches_autograd_jacobian(latent_dim):
    m = _model(latent_dim=latent_dim, randomize=0.5, dtype=torch.float64)
    h = torch.randn(5, 12, dtype=torch.float64)
    u = torch.randn(5, latent_dim, dtype=torch.float64)
    _, ld = m.flow_forward(u, h)
    for b in range(5):
        jac = torch.autograd.functional.jacobian(lambda v, hb=h[b]: m.flow_forward(v, hb)[0], u[b])
        ref = torch.linalg.slogdet(jac).logabsdet
        assert abs(ref) > 1e-2  # non-trivial volume change
        torch.testing.assert_close(ld[b], ref, atol=1e-10, rtol=1e-10)
    # the inverse's log-det against the inverse's Jacobian
    z, _ = m.flow_forward(u, h)
    _, ld_inv = m.flow_inverse(z, h)
    jac = torch.autograd.functional.jacobian(lambda v: m.flow_inverse(v, h[0])[0], z[0])
    torch.testing.assert_close(ld_inv[0], torch.linalg.slogdet(jac).logabsdet)


def test_single_coupling_layer_transforms_only_unmasked_coordinates():
    torch.manual_seed(0)
    mask = torch.tensor([True, False, True, False, False])
    layer = ConditionalAffineCoupling(5, 3, 8, mask)
    with torch.no_grad():
        layer.out.weight.normal_()
        layer.out.bias.normal_()
    z, h = torch.randn(7, 5), torch.randn(7, 3)
    y, _ = layer(z, layer.context_term(h))
    torch.testing.assert_close(y[:, mask], z[:, mask])
    assert (y[:, ~mask] - z[:, ~mask]).abs().min() > 0
    with pytest.raises(ValueError, match="mask"):
        ConditionalAffineCoupling(3, 3, 8, torch.tensor([True, True, True]))


def test_density_integrates_to_one_on_2d_grid():
    m = _model(latent_dim=2, n_flows=6, randomize=0.25, dtype=torch.float64)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        h = m.posterior_context(x)
        lim, n = 12.0, 401
        g = torch.linspace(-lim, lim, n, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        logq = m.log_q_from_context(grid[:, None, :], h[None, :, :])  # [G, 3] (all pairs)
        mass = logq.exp().sum(0) * (g[1] - g[0]) ** 2
        z, _ = m.sample_posterior(x, n=2000)
        mu, log_sigma = m.base_params(h)
        log_base = diag_normal_log_prob(grid[:, None, :], mu, log_sigma)
    assert logq.shape == (n * n, 3)
    torch.testing.assert_close(mass, torch.ones(3, dtype=torch.float64), atol=1e-3, rtol=0)
    assert z.abs().max() < lim  # the grid covers the samples
    # the flow really reshapes the base Gaussian (else the test would be the Gaussian's)
    bulk = log_base > -6
    assert (logq - log_base)[bulk].abs().max() > 0.5


def test_log_q_matches_sample_posterior_and_broadcasts():
    m = _model(latent_dim=3, randomize=0.2)
    x = torch.rand(4, 1, 28, 28)
    z, lq = m.sample_posterior(x, n=5)
    assert z.shape == (5, 4, 3) and lq.shape == (5, 4)
    for k in range(5):
        torch.testing.assert_close(m.log_q(z[k], x), lq[k], atol=1e-4, rtol=1e-5)
    h = m.posterior_context(x)
    torch.testing.assert_close(m.log_q_from_context(z, h), lq, atol=1e-4, rtol=1e-5)
    # all pairs (z_j, h_i) by broadcasting == an explicit double loop
    zf = z.reshape(-1, 3)
    pairs = m.log_q_from_context(zf[:, None, :], h[None, :, :])
    assert pairs.shape == (20, 4)
    for i in range(4):
        ref = m.log_q_from_context(zf, h[i].expand(20, -1))
        torch.testing.assert_close(pairs[:, i], ref, atol=1e-5, rtol=1e-5)
    out = m(x)
    torch.testing.assert_close(m.log_q(out.z, x), out.log_q, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.kl, out.log_q - out.log_prior)
    torch.testing.assert_close(out.log_prior, diag_normal_log_prob(out.z))


def test_identity_flow_monte_carlo_kl_matches_gaussian_closed_form():
    m = _model(latent_dim=3)  # fresh model: zero-initialised couplings = identity flow
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        h = m.posterior_context(x)
        mu, log_sigma = m.base_params(h)
        z, lq = m.sample_posterior(x, n=20000)
    mc = (lq - diag_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, diag_normal_kl(mu, log_sigma), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_ranges_and_gradients(conditional):
    m = _model(latent_dim=2, randomize=0.3, context_shape=(2, 28, 28) if conditional else None)
    x = torch.rand(4, 1, 28, 28)
    ctx = torch.rand(4, 2, 28, 28) if conditional else None
    out = m(x, ctx)
    assert out.x_mean.shape == x.shape and 0 <= out.x_mean.min() and out.x_mean.max() <= 1
    assert out.z.shape == (4, 2)
    for t in (out.kl, out.log_q, out.log_prior):
        assert t.shape == (4,) and torch.isfinite(t).all()
    ((out.x_mean - x).square().sum() + out.kl.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert m.sample(3, None if ctx is None else ctx[:3]).shape == (3, 1, 28, 28)


def test_same_seed_same_numbers():
    x = torch.rand(3, 1, 28, 28)
    res = []
    for _ in range(2):
        m = _model(seed=5, randomize=0.3)
        torch.manual_seed(9)
        res.append(m(x))
    for a, b in zip(vars(res[0]).values(), vars(res[1]).values()):
        assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent_dim"):
        VAENVP((1, 28, 28), latent_dim=1)
    with pytest.raises(ValueError, match="n_flows"):
        VAENVP((1, 28, 28), n_flows=0)
    with pytest.raises(ValueError, match="log_scale_bound"):
        VAENVP((1, 28, 28), log_scale_bound=0.0)
    m = _model()
    with pytest.raises(ValueError, match="must be"):
        m.log_q_from_context(torch.randn(2, 5), torch.randn(2, 12))
    assert math.isfinite(m(torch.rand(1, 1, 28, 28)).kl.item())
