"""Tests of build_model and of the interface all three models share (CPU, and CUDA if present)."""

import pytest
import torch

from geco_core.models import MODEL_SIZES, MODELS, LatentVariableModel, build_model

TINY = {
    "conv_vae": dict(latent_dim=4, channels=(8, 8), hidden=16, context_embed=4),
    "vae_nvp": dict(latent_dim=4, channels=(8, 8), context_dim=16, flow_hidden=8, context_embed=4),
    "convdraw": dict(steps=2, hidden=8, z_channels=1, read_channels=4, context_channels=4),
}


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="conv_vae, convdraw, vae_nvp"):
        build_model("vae")
    with pytest.raises(ValueError, match="size"):
        build_model("conv_vae", size="tpu")
    assert set(MODELS) == {"conv_vae", "vae_nvp", "convdraw"}


def test_sizes_and_overrides():
    assert set(MODEL_SIZES) == {"small", "paper"} and set(MODEL_SIZES["paper"]) == set(MODELS)
    for name in MODELS:
        small = build_model(name)
        assert sum(p.numel() for p in small.parameters()) == sum(
            p.numel() for p in build_model(name, size="small").parameters()
        )
        big = build_model(name, size="paper")
        n_small = sum(p.numel() for p in small.parameters())
        n_big = sum(p.numel() for p in big.parameters())
        assert n_big > 2 * n_small, name
        assert set(MODEL_SIZES["paper"][name]) <= set(type(big).__init__.__code__.co_varnames)
    assert build_model("conv_vae", size="paper", latent_dim=3).latent_dim == 3


@pytest.mark.parametrize("name", sorted(TINY))
def test_context_of_another_size_is_refused(name):
    with pytest.raises(ValueError, match="context_shape H, W must equal image_shape H, W"):
        build_model(name, (1, 28, 28), context_shape=(2, 14, 28), **TINY[name])
    with pytest.raises(ValueError, match="context_shape must be 3 positive ints"):
        build_model(name, (1, 28, 28), context_shape=(2, 28), **TINY[name])


def _interface_check(name, conditional, device):
    torch.manual_seed(0)
    ctx_shape = (2, 28, 28) if conditional else None
    m = build_model(name, (1, 28, 28), context_shape=ctx_shape, **TINY[name]).to(device)
    assert isinstance(m, LatentVariableModel) and m.conditional == conditional
    x = torch.rand(3, 1, 28, 28, device=device)
    ctx = torch.rand(3, 2, 28, 28, device=device) if conditional else None
    out = m(x, ctx)
    D = m.latent_dim
    assert out.x_mean.shape == x.shape and out.x_mean.device == x.device
    assert out.z.shape == (3, D)
    assert out.kl.shape == out.log_q.shape == out.log_prior.shape == (3,)
    assert 0 <= out.x_mean.min() and out.x_mean.max() <= 1
    assert m.decode(out.z, ctx).shape == x.shape
    torch.testing.assert_close(m.log_q(out.z, x, ctx), out.log_q, atol=1e-3, rtol=1e-4)
    z, lq = m.sample_posterior(x, n=2, context=ctx)
    assert z.shape == (2, 3, D) and lq.shape == (2, 3) and z.device == x.device
    assert m.sample(3, ctx).shape == x.shape
    ((out.x_mean - x).square().sum() + out.kl.sum()).backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_common_interface_cpu(name, conditional):
    _interface_check(name, conditional, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_common_interface_cuda(name, conditional):
    _interface_check(name, conditional, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pretrained_classifier_on_cuda():
    from geco_core.models import load_pretrained_classifier

    net = load_pretrained_classifier(device="cuda")
    assert net.probs(torch.rand(2, 1, 28, 28, device="cuda")).device.type == "cuda"
