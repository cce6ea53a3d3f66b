"""Objectives against closed forms, torch.distributions and hand-computed GECO trajectories."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from geco_core.constraints import CLA, RE, GroupedRE
from geco_core.objectives import (
    ELBO,
    AnnealedBeta,
    BetaVAE,
    GECOObjective,
    gaussian_nll,
    gqn_sigma,
    sigma_to_lambda,
)


def test_gaussian_nll_matches_torch_distributions(batch):
    x, out = batch(1)
    sigma = 0.37
    sse = (x - out.x_mean).pow(2).flatten(1).sum(1)
    ref = -torch.distributions.Normal(out.x_mean, sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_nll(sse, x[0].numel(), sigma), ref)
    # per pixel, from the MSE
    mse = sse.mean() / x[0].numel()
    torch.testing.assert_close(gaussian_nll(mse, 1, sigma), ref.mean() / x[0].numel())


def test_elbo_fixed_sigma_loss_and_gradient(batch):
    x, out = batch(2)
    sigma = 0.2
    obj = ELBO(sigma=sigma, learn_sigma=False)
    loss, m = obj(out, x)
    ref = -torch.distributions.Normal(out.x_mean, sigma).log_prob(x).flatten(1).sum(1) + out.kl
    # σ is stored as a float32 ln σ: compare at float32 precision
    torch.testing.assert_close(loss, ref.mean().to(loss.dtype), rtol=1e-6, atol=0)
    loss.backward()
    B, D = x.shape[0], x[0].numel()
    # ∂/∂g of mean_b ‖x−g‖²/(2σ²) = (g − x)/(σ² B); ∂/∂KL_b = 1/B
    torch.testing.assert_close(
        out.x_mean.grad, (out.x_mean - x).detach() / (sigma**2 * B), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(out.kl.grad, torch.full_like(out.kl, 1.0 / B))
    assert list(obj.parameters()) == []
    mse = (x - out.x_mean).pow(2).mean()
    assert m["mse"].item() == pytest.approx(mse.item())
    assert m["kl"].item() == pytest.approx(out.kl.mean().item())
    assert m["nll"].item() == pytest.approx(ref.mean().item() / D - out.kl.mean().item() / D)
    assert m["lambda"].item() == pytest.approx(D / (2 * sigma**2))
    assert m["beta"].item() == pytest.approx(2 * sigma**2 / D)


def test_elbo_learned_sigma_is_stationary_at_sigma_opt(batch):
    x, out = batch(3, requires_grad=False)
    mse = (x - out.x_mean).pow(2).mean()
    # ∂(−F)/∂ln σ = mean_b (D − sse_b/σ²) = D (1 − MSE/σ²): zero at σ = σ_opt (Appendix D).
    obj = ELBO(sigma=float(mse.sqrt()), learn_sigma=True)
    (p,) = list(obj.parameters())
    loss, _ = obj(out, x.float())
    loss.backward()
    assert abs(p.grad.item()) < 1e-4 * x[0].numel()
    obj2 = ELBO(sigma=0.5, learn_sigma=True)
    loss2, _ = obj2(out, x)
    loss2.backward()
    D = x[0].numel()
    expected = D * (1 - mse.item() / 0.25)
    assert next(obj2.parameters()).grad.item() == pytest.approx(expected, rel=1e-5)
    # state round trip
    obj3 = ELBO(sigma=0.9)
    obj3.load_state_dict(obj2.state_dict())
    assert obj3.sigma.item() == pytest.approx(0.5)


def test_gqn_schedule_and_annealed_objective(batch):
    assert gqn_sigma(0) == 2.0
    assert gqn_sigma(100_000) == pytest.approx(1.35)
    assert gqn_sigma(200_000) == pytest.approx(0.7)
    assert gqn_sigma(10**7) == pytest.approx(0.7)
    x, out = batch(4)
    obj = AnnealedBeta(2.0, 0.7, n_steps=10)
    D = x[0].numel()
    for step, sigma in [(0, 2.0), (5, 1.35), (20, 0.7)]:
        loss, m = obj(out, x, step=step)
        ref, _ = ELBO(sigma=sigma, learn_sigma=False)(out, x)
        torch.testing.assert_close(loss, ref)
        assert m["sigma"].item() == pytest.approx(sigma)
        assert m["beta"].item() == pytest.approx(2 * sigma**2 / D)
        assert m["lambda"].item() == pytest.approx(sigma_to_lambda(sigma, D))


def test_beta_vae_equals_elbo_at_the_mapped_sigma(batch):
    """β-VAE with β = 2σ²/D has the ELBO(σ)'s gradients: the λ = D/(2σ²) map."""
    x, out = batch(5)
    sigma, D = 0.3, x[0].numel()
    beta = 2 * sigma**2 / D
    loss_b, m = BetaVAE(beta)(out, x)
    gb = torch.autograd.grad(loss_b, [out.x_mean, out.kl])
    loss_e, _ = ELBO(sigma=sigma, learn_sigma=False)(out, x)
    ge = torch.autograd.grad(loss_e, [out.x_mean, out.kl])
    for a, b in zip(gb, ge):
        torch.testing.assert_close(a, b)
    # the losses differ by the constant D ln(σ√(2π))
    assert (loss_e - loss_b).item() == pytest.approx(
        D * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    )
    assert m["beta"].item() == pytest.approx(beta)
    assert m["sigma"].item() == pytest.approx(sigma)


def test_geco_objective_re_trajectory_matches_hand_computation(batch):
    kappa, alpha, nu = 0.3, 0.5, 2.0
    obj = GECOObjective(RE(kappa), alpha=alpha, nu=nu, lambda_init=1.0)
    lam, c_ma = 1.0, None
    B = 4
    for step in range(3):
        x, out = batch(10 + step, requires_grad=True)
        x, out.x_mean = x.float(), out.x_mean.detach().float().requires_grad_()
        out.kl = out.kl.detach().float().requires_grad_()
        loss, m = obj(out, x, step=step)
        D = x[0].numel()
        c_hat = ((x - out.x_mean).pow(2).flatten(1).mean(1) - kappa**2).mean().item()
        c_ma = c_hat if c_ma is None else alpha * c_ma + (1 - alpha) * c_hat
        # loss value: KL + λᵗ⁻¹ C_maᵗ; gradient: λᵗ⁻¹ ∂Ĉ/∂g
        assert loss.item() == pytest.approx(out.kl.mean().item() + lam * c_ma, rel=1e-5)
        loss.backward()
        torch.testing.assert_close(
            out.x_mean.grad, lam * 2 * (out.x_mean - x).detach() / (D * B), rtol=1e-5, atol=1e-7
        )
        lam = lam * math.exp(nu * c_ma)
        assert m["lambda"].item() == pytest.approx(lam, rel=1e-5)
        assert m["beta"].item() == pytest.approx(1 / lam, rel=1e-5)
        assert m["c_ma"].item() == pytest.approx(c_ma, rel=1e-5)
        assert m["c_hat"].item() == pytest.approx(c_hat, rel=1e-5)
        mse = (x - out.x_mean).pow(2).mean().item()
        assert m["mse"].item() == pytest.approx(mse, rel=1e-5)
        # NLL at σ_opt = √MSE: ½ ln(2π MSE) + ½
        assert m["nll"].item() == pytest.approx(0.5 * math.log(2 * math.pi * mse) + 0.5, rel=1e-5)
    assert obj.geco.step_count == 3


def test_geco_objective_vector_constraints_and_state_round_trip():
    torch.manual_seed(0)
    cons = [RE(0.2), GroupedRE(0.1, data_shape=(3, 4, 4))]
    obj = GECOObjective(cons, alpha=0.9, nu=1.0)
    assert obj.geco.n_constraints == 4
    x = torch.rand(6, 3, 4, 4)
    out = SimpleNamespace(x_mean=torch.rand(6, 3, 4, 4, requires_grad=True), kl=torch.ones(6))
    vals = obj.constraint_values(x, out.x_mean)
    ref = torch.cat(
        [
            ((x - out.x_mean) ** 2).flatten(1).mean(1, keepdim=True) - 0.04,
            ((x - out.x_mean) ** 2).flatten(2).mean(2) - 0.01,
        ],
        dim=1,
    )
    torch.testing.assert_close(vals, ref)
    _, m = obj(out, x)
    assert m["lambda"].shape == (4,) and m["c_ma"].shape == (4,)
    assert torch.isnan(m["beta"]).all()  # β = 1/λ only for one constraint
    # a copy restored from the state continues identically
    clone = GECOObjective([RE(0.2), GroupedRE(0.1, data_shape=(3, 4, 4))], alpha=0.9, nu=1.0)
    clone.load_state_dict(obj.state_dict())
    for _ in range(2):
        x = torch.rand(6, 3, 4, 4)
        o = SimpleNamespace(x_mean=torch.rand(6, 3, 4, 4, requires_grad=True), kl=torch.ones(6))
        la, _ = obj(o, x)
        lb, _ = clone(o, x)
        assert la.item() == lb.item()
        assert torch.equal(obj.geco.lambdas, clone.geco.lambdas)


def test_geco_objective_passes_labels_to_cla():
    clf = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    obj = GECOObjective([RE(0.1), CLA(0.8, clf)], alpha=0.5, nu=1.0)
    x = torch.rand(5, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 1, 0])
    out = SimpleNamespace(x_mean=torch.rand(5, 1, 4, 4), kl=torch.zeros(5))
    _, m = obj(out, x, labels=labels)
    p_true = torch.softmax(clf(out.x_mean), -1)[torch.arange(5), labels]
    assert m["c_hat"][1].item() == pytest.approx((0.8 - p_true).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        obj(out, x)  # CLA without labels


def test_geco_objective_does_not_update_under_no_grad(batch):
    obj = GECOObjective(RE(0.1), alpha=0.5, nu=1.0)
    x, out = batch(7)
    with torch.no_grad():
        obj(out, x.float())
    assert obj.geco.step_count == 0 and obj.geco.lambdas.item() == 1.0


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ELBO(sigma=0.0), "sigma"),
        (lambda: ELBO(sigma=float("nan")), "sigma"),
        (lambda: BetaVAE(beta=-1.0), "beta"),
        (lambda: AnnealedBeta(n_steps=0), "n_steps"),
        (lambda: AnnealedBeta(sigma_end=0.0), "sigma_end"),
        (lambda: gqn_sigma(0, n_steps=0), "n_steps"),
        (lambda: GECOObjective([]), "constraints"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_shape_mismatch_raises(batch):
    x, out = batch(8)
    with pytest.raises(ValueError, match="x_mean"):
        ELBO(learn_sigma=False)(out, x[:, :, :4])
