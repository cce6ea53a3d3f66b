"""The engine's optimiser (:func:`geco_core.train.make_optimizer`): PyTorch's fused Adam, the
same update as the for-loop Adam to float rounding, on every model of the library."""

from __future__ import annotations

import copy

import pytest
import torch

from geco_core.constraints import RE
from geco_core.models import MODELS, build_model
from geco_core.objectives import ELBO, GECOObjective
from geco_core.train import make_optimizer


def _dense_strides(t: torch.Tensor) -> tuple[int, ...]:
    """Strides of the dims longer than one (a size-1 dim's stride is immaterial)."""
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


@pytest.mark.parametrize("name,channels", [(m, 1) for m in MODELS] + [("vae_nvp", 3)])
def test_fused_adam_equals_the_for_loop_adam(name, channels):
    torch.manual_seed(0)
    x = torch.rand(8, channels, 28, 28)
    model = build_model(name, (channels, 28, 28)).train()
    model.prepare(x)
    twin = copy.deepcopy(model)
    objective = GECOObjective([RE(kappa=0.1)], alpha=0.9)
    elbo = ELBO(sigma=0.1, learn_sigma=True)  # the objective's own parameter (a learned σ)
    elbo_twin = copy.deepcopy(elbo)
    params = list(model.parameters()) + list(elbo.parameters())
    params_twin = list(twin.parameters()) + list(elbo_twin.parameters())
    fused = make_optimizer(params, 1e-3)
    plain = torch.optim.Adam(params_twin, lr=1e-3, foreach=False)
    for _ in range(5):
        out = model(x)
        loss = objective(out, x)[0] + elbo(out, x)[0]
        fused.zero_grad(set_to_none=True)
        loss.backward()
        for p, q in zip(params, params_twin):
            # The fused kernel reads the raw memory of a parameter, its gradient and its
            # moments alike, so they must share one layout: autograd gives every gradient its
            # parameter's strides (the channels_last conv weights included).
            assert _dense_strides(p.grad) == _dense_strides(p)
            q.grad = p.grad.clone()  # the same gradient into both optimisers
        fused.step()
        plain.step()
    names = [n for n, _ in model.named_parameters()] + ["log_sigma"]
    for pname, a, b in zip(names, params, params_twin):
        # five steps of lr 1e-3 move a weight up to 5e-3; the two differ by float rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=pname)
        ma, mb = fused.state[a]["exp_avg_sq"], plain.state[b]["exp_avg_sq"]
        torch.testing.assert_close(ma, mb, rtol=1e-5, atol=0, msg=pname)


def _adam_steps(opt: torch.optim.Optimizer, w: torch.nn.Parameter, grads) -> None:
    for g in grads:
        w.grad = torch.empty_like(w).copy_(g)  # the parameter's layout, as autograd gives it
        opt.step()


def test_a_for_loop_checkpoint_resumes_fused_with_moments_in_the_new_layout():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 3, 2, 2, generator=g) for _ in range(6)]
    init = torch.randn(4, 3, 2, 2, generator=g)
    # the earlier engine: for-loop Adam on an NCHW weight, three steps, then saved
    w_old = torch.nn.Parameter(init.clone())
    old = torch.optim.Adam([w_old], lr=1e-2)
    _adam_steps(old, w_old, grads[:3])
    saved = copy.deepcopy(old.state_dict())
    # resumed by this engine into a channels_last weight (ConvDecoder's layout today)
    w_new = torch.nn.Parameter(w_old.detach().clone().contiguous(memory_format=torch.channels_last))
    new = make_optimizer([w_new], 1e-2)
    new.load_state_dict(saved)
    group, state = new.param_groups[0], new.state[w_new]
    assert group["fused"] is True and group["lr"] == 1e-2
    assert state["exp_avg"].stride() == state["exp_avg_sq"].stride() == w_new.stride()
    torch.testing.assert_close(state["exp_avg"], old.state[w_old]["exp_avg"], rtol=0, atol=0)
    _adam_steps(new, w_new, grads[3:])
    _adam_steps(old, w_old, grads[3:])  # what the old engine would have done
    torch.testing.assert_close(w_new, w_old, rtol=1e-6, atol=1e-8)
