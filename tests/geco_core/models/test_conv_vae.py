"""Tests of the Gaussian conv VAE and the shared diagonal-Gaussian closed forms."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from geco_core.models.conv_vae import ConvVAE
from geco_core.models.layers import diag_normal_kl, diag_normal_log_prob

SMALL = dict(latent_dim=6, channels=(8, 16), hidden=32, context_embed=8)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ConvVAE((1, 28, 28), **{**SMALL, **kw})


def test_diag_normal_closed_forms_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mq, lq, mp, lp, z = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(5))
    ref_kl = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp())).sum(-1)
    torch.testing.assert_close(diag_normal_kl(mq, lq, mp, lp), ref_kl)
    torch.testing.assert_close(
        diag_normal_kl(mq, lq), kl_divergence(Normal(mq, lq.exp()), Normal(0.0, 1.0)).sum(-1)
    )
    torch.testing.assert_close(
        diag_normal_log_prob(z, mq, lq), Normal(mq, lq.exp()).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(diag_normal_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    # summing over trailing (C, H, W) dims
    z4 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        diag_normal_log_prob(z4, dims=3), Normal(0.0, 1.0).log_prob(z4).sum((1, 2, 3))
    )


@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_and_ranges(conditional):
    ctx_shape = (2, 28, 28) if conditional else None
    m = _model(context_shape=ctx_shape)
    x = torch.rand(5, 1, 28, 28)
    ctx = torch.rand(5, 2, 28, 28) if conditional else None
    out = m(x, ctx)
    assert out.x_mean.shape == x.shape
    assert out.x_mean.min() >= 0 and out.x_mean.max() <= 1
    assert out.z.shape == (5, 6)
    for t in (out.kl, out.log_q, out.log_prior):
        assert t.shape == (5,) and torch.isfinite(t).all()
    mu, log_sigma = m.posterior_params(x, ctx)
    assert mu.shape == log_sigma.shape == (5, 6)
    z, lq = m.sample_posterior(x, n=3, context=ctx)
    assert z.shape == (3, 5, 6) and lq.shape == (3, 5)
    assert m.sample(4, None if ctx is None else ctx[:4]).shape == (4, 1, 28, 28)


def test_kl_equals_torch_distributions_and_monte_carlo():
    m = _model()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(3)
    out = m(x)
    mu, log_sigma = m.posterior_params(x)
    q = Normal(mu, log_sigma.exp())
    torch.testing.assert_close(out.kl, kl_divergence(q, Normal(0.0, 1.0)).sum(-1))
    torch.testing.assert_close(out.log_q, q.log_prob(out.z).sum(-1))
    torch.testing.assert_close(out.log_prior, Normal(0.0, 1.0).log_prob(out.z).sum(-1))
    # log q − log π averaged over many posterior samples → the closed-form KL
    z, lq = m.sample_posterior(x, n=20000)
    mc = (lq - diag_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, out.kl, atol=0.05, rtol=0.02)


def test_log_q_matches_sample_posterior():
    m = _model()
    x = torch.rand(3, 1, 28, 28)
    z, lq = m.sample_posterior(x, n=4)
    for k in range(4):
        torch.testing.assert_close(m.log_q(z[k], x), lq[k])


def test_gradients_reach_all_parameters_conditional():
    m = _model(context_shape=(2, 28, 28))
    x, ctx = torch.rand(4, 1, 28, 28), torch.rand(4, 2, 28, 28)
    out = m(x, ctx)
    ((out.x_mean - x).square().sum() + out.kl.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_numbers():
    x = torch.rand(3, 1, 28, 28)
    outs = []
    for _ in range(2):
        m = _model(seed=7)
        torch.manual_seed(11)
        outs.append(m(x))
    for a, b in zip(vars(outs[0]).values(), vars(outs[1]).values()):
        assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        ConvVAE((1, 30, 30), **SMALL)  # 30 not divisible by 4
    with pytest.raises(ValueError, match="latent_dim"):
        ConvVAE((1, 28, 28), latent_dim=0)
    m = _model()
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28))
    mc = _model(context_shape=(2, 28, 28))
    with pytest.raises(ValueError, match="context is required"):
        mc(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="context must have shape"):
        mc(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="z must have shape"):
        m.decode(torch.rand(2, 5))
