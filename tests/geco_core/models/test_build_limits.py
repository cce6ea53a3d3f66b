"""build_model counts parameters on the meta device before allocating: huge sizes are refused
in one line, and the check leaves the weights (and the random stream) of a seed unchanged."""

from __future__ import annotations

import pytest
import torch

from geco_core.models import MAX_PARAMETERS, MODELS, build_model


@pytest.mark.parametrize("name, kw", [("conv_vae", {"latent_dim": 10**9}),
                                      ("vae_nvp", {"latent_dim": 10**7}),
                                      ("convdraw", {"hidden": 10**6})])
def test_huge_models_are_refused_before_any_allocation(name, kw):
    with pytest.raises(ValueError, match=f"model_kwargs: {name} .* parameters"):
        build_model(name, **kw)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_count_leaves_a_seeds_weights_and_random_stream_unchanged(name):
    torch.manual_seed(0)
    a, after_a = build_model(name), torch.rand(3)
    torch.manual_seed(0)
    b, after_b = MODELS[name](image_shape=(1, 28, 28), context_shape=None), torch.rand(3)
    assert torch.equal(after_a, after_b)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert sum(p.numel() for p in build_model(name, size="paper").parameters()) < MAX_PARAMETERS
