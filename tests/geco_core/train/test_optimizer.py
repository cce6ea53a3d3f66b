"""The engine's optimiser (:func:`geco_core.train.make_optimizer`): PyTorch's fused Adam, the
same update as the for-loop Adam to float rounding, on every model of the library."""

from __future__ import annotations

import copy

import pytest
import torch

from geco_core.constraints import RE
from geco_core.models import MODELS, build_model
from geco_core.objectives import GECOObjective
from geco_core.train import make_optimizer


def _dense_strides(t: torch.Tensor) -> tuple[int, ...]:
    """Strides of the dims longer than one (a size-1 dim's stride is immaterial)."""
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


@pytest.mark.parametrize("name", MODELS)
def test_fused_adam_equals_the_for_loop_adam(name):
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    model = build_model(name, (1, 28, 28)).train()
    model.prepare(x)
    twin = copy.deepcopy(model)
    objective = GECOObjective([RE(kappa=0.1)], alpha=0.9)
    fused = make_optimizer(list(model.parameters()), 1e-3)
    plain = torch.optim.Adam(twin.parameters(), lr=1e-3, foreach=False)
    for _ in range(5):
        loss, _ = objective(model(x), x)
        fused.zero_grad(set_to_none=True)
        loss.backward()
        for p, q in zip(model.parameters(), twin.parameters()):
            # The fused kernel reads the raw memory of a parameter, its gradient and its
            # moments alike, so they must share one layout: autograd gives every gradient its
            # parameter's strides (ConvDRAW's channels_last weights included).
            assert _dense_strides(p.grad) == _dense_strides(p)
            q.grad = p.grad.clone()  # the same gradient into both optimisers
        fused.step()
        plain.step()
    for (pname, a), b in zip(model.named_parameters(), twin.parameters()):
        # five steps of lr 1e-3 move a weight up to 5e-3; the two differ by float rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=pname)
        ma, mb = fused.state[a]["exp_avg_sq"], plain.state[b]["exp_avg_sq"]
        torch.testing.assert_close(ma, mb, rtol=1e-5, atol=0, msg=pname)


def test_a_for_loop_checkpoint_resumes_with_its_own_settings():
    w = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.Adam([w], lr=1e-3)  # the earlier engine's optimiser
    w.grad = torch.tensor([1.0, -2.0, 3.0])
    old.step()
    new = make_optimizer([w], 1e-3)
    assert new.param_groups[0]["fused"] is True
    new.load_state_dict(old.state_dict())
    assert not new.param_groups[0]["fused"]  # continues with the for-loop update, as saved
    torch.testing.assert_close(new.state[w]["exp_avg"], old.state[w]["exp_avg"], rtol=0, atol=0)
