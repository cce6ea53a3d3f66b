"""The models refuse inputs they would silently misread, at the public entry point, naming the
argument: integer or other-dtype images (TypeError), images outside [0, 1] (ValueError), a bad
sample count (ValueError / TypeError), integer latents (TypeError)."""

from __future__ import annotations

import pytest
import torch

from geco_core.models import build_model

TINY = {
    "conv_vae": dict(latent_dim=4, channels=(8, 8), hidden=16, context_embed=4),
    "vae_nvp": dict(latent_dim=4, channels=(8, 8), context_dim=16, flow_hidden=8, context_embed=4),
    "convdraw": dict(steps=2, hidden=8, z_channels=1, read_channels=4, context_channels=4),
}


def _model(name, conditional=False):
    torch.manual_seed(0)
    ctx = (2, 28, 28) if conditional else None
    return build_model(name, (1, 28, 28), context_shape=ctx, **TINY[name])


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", sorted(TINY))
def test_image_dtype_and_range_are_checked(name):
    m = _model(name)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(TypeError, match=r"^x has dtype torch\.float64 but the model computes in"):
        m(x.double())
    with pytest.raises(
        TypeError,
        match=r"^x must be a floating-point tensor, got dtype torch"
        r"\.uint8.*x\.float\(\) / 255",
    ):
        m((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\].*max 25"):
        m(x * 255)
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\]"):
        m(x - 0.5)
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\].*nan"):
        m(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\]"):
        m.log_q(torch.zeros(2, m.latent_dim), x * 255)
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\]"):
        m.sample_posterior(x * 255, n=2)
    # images in [0, 1] of the model's dtype work, including a float64 model
    assert m(x).x_mean.shape == x.shape
    assert m(torch.zeros_like(x)).x_mean.shape == x.shape and m(torch.ones_like(x)) is not None
    m64 = _model(name).double()
    assert m64(x.double()).x_mean.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(TINY))
def test_context_dtype_and_range_are_checked(name):
    m = _model(name, conditional=True)
    x, ctx = torch.rand(2, 1, 28, 28), torch.rand(2, 2, 28, 28)
    with pytest.raises(ValueError, match=r"^context must hold values in \[0, 1\]"):
        m(x, ctx * 255)
    with pytest.raises(TypeError, match=r"^context must be a floating-point tensor"):
        m(x, (ctx * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"^context must hold values in \[0, 1\]"):
        m.sample(2, context=ctx * 255)
    assert m(x, ctx).x_mean.shape == x.shape and m.sample(2, context=ctx).shape == x.shape


@pytest.mark.parametrize("name", sorted(TINY))
def test_sample_counts_and_latents_are_checked(name):
    m = _model(name)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"^n must be an int >= 1, got -1"):
        m.sample(-1)
    with pytest.raises(ValueError, match=r"^n must be an int >= 1, got 0"):
        m.sample(0)
    with pytest.raises(TypeError, match=r"^n must be an int, got 1\.5"):
        m.sample(1.5)
    with pytest.raises(ValueError, match=r"^n must be an int >= 1"):
        m.sample_posterior(x, n=0)
    with pytest.raises(TypeError, match=r"^z must be a floating-point tensor, got dtype torch"):
        m.decode(torch.zeros(2, m.latent_dim, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^z must have shape"):
        m.decode(torch.zeros(2, m.latent_dim + 1))
    assert m.sample(3).shape == (3, 1, 28, 28)
    z, lq = m.sample_posterior(x, n=2)
    assert z.shape == (2, 2, m.latent_dim) and lq.shape == (2, 2)


def test_classifier_refuses_integer_and_0_255_images():
    from geco_core.models.classifier import MNISTClassifier

    clf = MNISTClassifier()
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
        clf((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\]"):
        clf.probs(x * 255)
    with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\]"):
        clf.features(x * 255)
    assert clf(x).shape == (2, 10)
