"""The later methods' objectives against closed forms, autograd and torch.distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geco_core.constraints import RE
from geco_core.objectives import OBJECTIVES
from geco_core.objectives.alternatives import (
    ControlVAE,
    CooperLagrangian,
    SigmaVAE,
    SoftplusLagrangian,
    control_vae_beta,
    reverse_gradient,
)


def test_registered_by_name():
    for name, cls in [("sigma_vae", SigmaVAE), ("control_vae", ControlVAE),
                      ("softplus_lagrangian", SoftplusLagrangian), ("cooper", CooperLagrangian)]:
        assert OBJECTIVES[name] is cls


def test_sigma_vae_is_the_gaussian_elbo_at_the_batch_mle_sigma(batch):
    x, out = batch(1)
    loss, m = SigmaVAE()(out, x)
    mse = (x - out.x_mean).pow(2).mean().detach()
    sigma = mse.sqrt()
    ref = -torch.distributions.Normal(out.x_mean, sigma).log_prob(x).flatten(1).sum(1) + out.kl
    torch.testing.assert_close(loss, ref.mean())
    d = x[0].numel()
    torch.testing.assert_close(m["lambda"], d / (2 * mse))
    # the closed form D/2 + (D/2) ln(2π·MSE) + KL
    torch.testing.assert_close(loss.detach(), d / 2 + d / 2 * torch.log(2 * math.pi * mse)
                               + out.kl.detach().mean())
    # σ is a constant for autograd: ∂loss/∂x_mean is the fixed-σ ELBO's gradient
    loss.backward()
    expected = -(x - out.x_mean.detach()) / (sigma**2 * x.shape[0])
    torch.testing.assert_close(out.x_mean.grad, expected)


def test_control_vae_beta_closed_form_and_direction():
    assert control_vae_beta(0.0, 0.0, 0.02, 0.001, 0.0) == pytest.approx(0.01)
    e = -3.0
    assert control_vae_beta(e, 2 * e, 0.02, 0.001, 1e-4) == pytest.approx(
        0.02 / (1 + math.exp(e)) + 0.001 * 6 + 1e-4)
    assert control_vae_beta(1e4, 0.0, 0.02, 0.0, 0.0) == 0.0  # no overflow


def test_control_vae_controller_raises_beta_for_a_kl_above_target_and_stops_windup(batch):
    x, out = batch(2)
    obj = ControlVAE(kl_target=1.0, kp=1e-3, ki=1e-5, beta_min=1e-6, beta_max=1e-2)
    kl = float(out.kl.detach().mean())  # ≈ 2.5 nats > 1: e < 0 → β rises
    obj(out, x)
    b1 = obj.beta
    assert b1 == pytest.approx(1e-3 / (1 + math.exp(1.0 - kl)) - 1e-5 * (1.0 - kl) + 1e-6)
    obj(out, x)
    assert obj.beta > b1
    # a KL far below target drives β to its floor; the integral stops at the clip
    obj2 = ControlVAE(kl_target=1e4, kp=1e-3, ki=1e-3, beta_min=1e-6, beta_max=1e-2)
    obj2(out, x)
    assert obj2.beta == 1e-6 and obj2.integral == 0.0
    # loss = KL + MSE/β at the β of the call; state round trip
    loss, _ = obj(out, x)
    beta = float(obj.state_dict()["beta"])
    obj3 = ControlVAE(kl_target=1.0, kp=1e-3, ki=1e-5, beta_min=1e-6, beta_max=1e-2)
    obj3.load_state_dict(obj.state_dict())
    assert obj3.beta == beta and obj3.integral == obj.integral
    with torch.no_grad():  # no controller update outside training
        obj3(out, x)
    assert obj3.beta == beta


def test_reverse_gradient_against_autograd():
    u = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    (torch.sin(reverse_gradient(u, rate=0.25)) * 2).sum().backward()
    torch.testing.assert_close(u.grad, -0.25 * 2 * torch.cos(u.detach()))


def test_softplus_lagrangian_value_gradient_and_adam_bound(batch):
    x, out = batch(3)
    re = RE(kappa=0.1)
    obj = SoftplusLagrangian(re, lambda_init=4.0, rate=0.5)
    assert float(obj.lam) == pytest.approx(4.0)
    loss, m = obj(out, x)
    c_hat = re(x, out.x_mean).mean()
    torch.testing.assert_close(loss, out.kl.mean() + 4.0 * c_hat.to(loss.dtype),
                               rtol=1e-6, atol=1e-6)
    loss.backward()
    u = obj.u.detach().clone().requires_grad_(True)
    dlam = torch.autograd.grad(torch.nn.functional.softplus(u) ** 2, u)[0]
    torch.testing.assert_close(obj.u.grad, (-0.5 * c_hat.detach() * dlam).to(obj.u.dtype))
    # In Adam the step in u is bounded by lr·(1 − β₁)/√(1 − β₂) ≈ 3.16·lr whatever the rate
    # (Kingma & Ba 2015, §2.1): λ after n steps ≤ softplus(u0 + 3.16·n·lr)², here ≈ 5
    obj = SoftplusLagrangian(re, lambda_init=1.0, rate=1e6)
    u0 = obj.u.item()
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    for _ in range(50):
        opt.zero_grad()
        loss, _ = obj(out, x)
        loss.backward()
        opt.step()
    bound = 50 * 1e-2 * 0.1 / math.sqrt(1 - 0.999)
    assert obj.u.item() <= u0 + bound
    assert float(obj.lam) <= float(torch.nn.functional.softplus(torch.tensor(u0 + bound)) ** 2)
    assert float(obj.lam) < 6.0  # while an SGD step of rate·Ĉ = 1e6·Ĉ would be enormous


def test_cooper_gradient_ascent_step_is_lambda_plus_eta_c_and_projected(batch):
    x, out = batch(4)
    re = RE(kappa=0.1)
    obj = CooperLagrangian(re, dual_lr=10.0, lambda_init=2.0)
    loss, m = obj(out, x)
    c_hat = re(x, out.x_mean).mean().item()
    assert float(m["lambda"]) == pytest.approx(2.0)  # the loss used λ before the step
    torch.testing.assert_close(loss, out.kl.mean() + 2.0 * re(x, out.x_mean).mean(),
                               rtol=1e-6, atol=1e-6)
    assert float(obj.lam) == pytest.approx(2.0 + 10.0 * c_hat, rel=1e-5)
    # a satisfied constraint pulls λ down to 0, never below
    lax = RE(kappa=10.0)
    obj = CooperLagrangian(lax, dual_lr=10.0, lambda_init=1.0)
    obj(out, x)
    assert float(obj.lam) == 0.0
    # the multiplier is a constant of the primal loss: its gradient reaches x_mean only
    x, out = batch(5)
    obj = CooperLagrangian(RE(kappa=0.1), dual_lr=1.0, lambda_init=3.0)
    loss, _ = obj(out, x)
    loss.backward()
    n = x.numel()
    torch.testing.assert_close(out.x_mean.grad, (3.0 * 2 * (out.x_mean - x) / n).detach(),
                               rtol=1e-5, atol=1e-7)


def test_cooper_nupi_with_zero_kp_equals_gradient_ascent_and_state_round_trip(batch):
    x, out = batch(6)
    a = CooperLagrangian(RE(kappa=0.1), dual_lr=5.0, dual_optimizer="sgd")
    b = CooperLagrangian(RE(kappa=0.1), dual_lr=5.0, dual_optimizer="nupi", kp=0.0)
    for _ in range(3):
        a(out, x)
        b(out, x)
    assert float(a.lam) == pytest.approx(float(b.lam), rel=1e-6)
    c = CooperLagrangian(RE(kappa=0.1), dual_lr=5.0, dual_optimizer="nupi", kp=2.0)
    c(out, x)
    d = CooperLagrangian(RE(kappa=0.1), dual_lr=5.0, dual_optimizer="nupi", kp=2.0)
    d.load_state_dict(c.state_dict())
    c(out, x)
    d(out, x)
    assert float(c.lam) == pytest.approx(float(d.lam), rel=1e-6)


@pytest.mark.parametrize("kw, match", [
    ({"dual_optimizer": "adam"}, "dual_optimizer"),
    ({"dual_lr": 0.0}, "dual_lr"),
    ({"kp": -1.0}, "kp"),
])
def test_cooper_arguments_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        CooperLagrangian(RE(kappa=0.1), **kw)


def test_train_config_checks_objective_kwargs():
    from geco_core.train import TrainConfig

    with pytest.raises(ValueError, match="objective_kwargs: unknown key"):
        TrainConfig(objective="cooper", objective_kwargs={"dual_lrr": 1.0},
                    progress=False).validate_kwargs()
    with pytest.raises(ValueError, match="objective_kwargs"):
        TrainConfig(objective="geco", objective_kwargs={"x": 1}, progress=False).validate_kwargs()
    TrainConfig(objective="control_vae", objective_kwargs={"kl_target": 5.0},
                progress=False).validate_kwargs()


@pytest.mark.parametrize("objective, kw", [
    ("sigma_vae", {}), ("control_vae", {"kl_target": 20.0}), ("softplus_lagrangian", {}),
    ("cooper", {"dual_lr": 100.0}), ("cooper", {"dual_optimizer": "nupi", "kp": 1.0}),
])
def test_each_trains_and_resumes_to_the_same_numbers(tmp_path, objective, kw):
    from geco_core.train import TrainConfig, fit

    common = dict(model="conv_vae", dataset="micro-mnist", objective=objective,
                  objective_kwargs=kw, batch_size=7, lr=1e-3, progress=False,
                  dataset_kwargs={"n": 7}, log_every=1, ckpt_every=2, device="cpu",
                  model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16})
    full = fit(TrainConfig(steps=4, **common))
    fit(TrainConfig(steps=2, out_dir=str(tmp_path), **common))
    resumed = fit(TrainConfig(steps=4, out_dir=str(tmp_path), **common), resume=True)
    assert resumed.metrics["loss"] == pytest.approx(full.metrics["loss"], rel=1e-6)
    assert resumed.metrics["lambda"] == pytest.approx(full.metrics["lambda"], rel=1e-6)


@pytest.mark.parametrize("make, read", [
    (lambda: ControlVAE(kl_target=1.0), lambda o: (o.beta, o.integral)),
    (lambda: CooperLagrangian(RE(kappa=0.1), dual_lr=1.0), lambda o: float(o.lam)),
    (lambda: CooperLagrangian(RE(kappa=0.1), dual_lr=1.0, dual_optimizer="nupi", kp=0.5),
     lambda o: float(o.lam)),
])  # fmt: skip
def test_one_nan_never_enters_a_multiplier_or_controller_state(batch, make, read):
    obj = make()
    x, out = batch(1)
    obj(out, x)
    before = read(obj)
    x, bad = batch(2)
    bad.kl = bad.kl.detach().clone()
    bad.kl[0] = float("nan")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        obj(bad, x)
    assert read(obj) == before
    x, out = batch(3)
    obj(out, x)
    assert all(math.isfinite(v) for v in np.atleast_1d(read(obj)))


@pytest.mark.parametrize("make, name", [
    (lambda: ControlVAE(kl_target=1e300), "kl_target"),
    (lambda: ControlVAE(beta_min=1e-300), "beta_min"),
    (lambda: SoftplusLagrangian(RE(kappa=0.1), lambda_init=1e300), "lambda_init"),
    (lambda: SoftplusLagrangian(RE(kappa=0.1), rate=1e-300), "rate"),
    (lambda: CooperLagrangian(RE(kappa=0.1), dual_lr=1e300), "dual_lr"),
])  # fmt: skip
def test_settings_outside_float32_are_refused(make, name):
    with pytest.raises(ValueError, match=f"^{name} must lie in float32's range"):
        make()
