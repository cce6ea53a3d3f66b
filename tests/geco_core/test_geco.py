"""GECO (Algorithm 1) against a hand computation: trajectory, gradients, options, state, NaNs."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch

from geco_core.geco import GECO, GECOState, geco_step

# A fixed sequence of batch estimates Ĉᵗ for 3 constraints: violated, satisfied, mixed signs.
C_SEQ = np.array(
    [
        [0.30, -0.10, 0.05],
        [0.20, -0.20, -0.05],
        [0.10, 0.40, 0.00],
        [-0.05, 0.10, 0.20],
        [-0.30, -0.40, 0.15],
        [0.05, 0.25, -0.35],
        [0.00, -0.15, 0.10],
        [0.12, 0.02, -0.08],
    ]
)
KL_SEQ = np.linspace(3.0, 1.0, len(C_SEQ))


def reference(
    c_seq,
    alpha,
    nu,
    lambda_init,
    update_every=1,
    warmup_steps=0,
    factor_clamp=None,
    lambda_bounds=None,
):
    """Algorithm 1 written out with numpy: per step (λᵗ⁻¹, C_maᵗ, λᵗ)."""
    lam = np.broadcast_to(np.asarray(lambda_init, dtype=float), c_seq[0].shape).copy()
    c_ma = None
    out = []
    for t, c in enumerate(c_seq):
        c_ma = c.copy() if t == 0 else alpha * c_ma + (1 - alpha) * c
        lam_prev = lam.copy()
        if t >= warmup_steps and (t - warmup_steps + 1) % update_every == 0:
            factor = np.exp(nu * c_ma)
            if factor_clamp is not None:
                factor = np.clip(factor, *factor_clamp)
            lam = lam * factor
            if lambda_bounds is not None:
                lam = np.clip(lam, *lambda_bounds)
        out.append((lam_prev, c_ma.copy(), lam.copy()))
    return out


def run_and_check(geco, c_seq, kl_seq, expected, atol=1e-12):
    for t, (c, k, (lam_prev, c_ma, lam)) in enumerate(zip(c_seq, kl_seq, expected)):
        c_hat = torch.tensor(c, dtype=torch.float64, requires_grad=True)
        kl = torch.tensor(k, dtype=torch.float64, requires_grad=True)
        loss = geco.loss(kl, c_hat)
        loss.backward()
        # the loss value is kl + Σ λᵗ⁻¹ Cᵗ with Cᵗ = C_maᵗ ...
        assert loss.item() == pytest.approx(k + float(lam_prev @ c_ma), abs=atol)
        # ... and its gradient w.r.t. Ĉ is exactly λᵗ⁻¹ (λ a constant), w.r.t. KL exactly 1
        np.testing.assert_allclose(c_hat.grad.numpy(), lam_prev, rtol=0, atol=atol)
        assert kl.grad.item() == 1.0
        np.testing.assert_allclose(geco.c_ma.numpy(), c_ma, rtol=0, atol=atol)
        np.testing.assert_allclose(geco.lambdas.numpy(), lam, rtol=1e-12, atol=0)
        assert geco.step_count == t + 1


def test_trajectory_and_gradients_match_algorithm_1():
    lambda_init = [1.0, 0.5, 2.0]
    geco = GECO(n_constraints=3, alpha=0.9, nu=2.0, lambda_init=lambda_init)
    expected = reference(C_SEQ, 0.9, 2.0, lambda_init)
    run_and_check(geco, C_SEQ, KL_SEQ, expected)
    # a violated constraint (C_ma > 0) ends with λ above its start, a slack one below
    lam_final = geco.lambdas.numpy()
    c_ma_final = geco.c_ma.numpy()
    assert lam_final[0] > 1.0 and c_ma_final[0] > 0


def test_first_step_initialises_moving_average_with_c_hat():
    geco = GECO(n_constraints=3, alpha=0.99, nu=1.0)
    c = torch.tensor(C_SEQ[0], dtype=torch.float64, requires_grad=True)
    loss = geco.loss(torch.tensor(0.0, dtype=torch.float64), c)
    np.testing.assert_allclose(geco.c_ma.numpy(), C_SEQ[0], rtol=0, atol=0)
    assert loss.item() == pytest.approx(C_SEQ[0].sum(), abs=1e-15)  # λ⁻¹ = 1


def test_gradient_reaches_model_parameters():
    """∂loss/∂θ = ∂KL/∂θ + Σ λᵗ⁻¹_l ∂Ĉ_l/∂θ, with the moving average adding nothing."""
    torch.manual_seed(0)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64)
    geco = GECO(n_constraints=3, alpha=0.5, nu=1.0, lambda_init=[1.0, 2.0, 3.0])
    for _ in range(3):  # build up a moving average first
        geco.loss(torch.tensor(0.0, dtype=torch.float64), torch.tanh(w @ theta).detach().cos())
    lam_prev = geco.lambdas.clone()
    theta.grad = None
    c_hat = torch.tanh(w @ theta)
    kl = theta.square().sum()
    geco.loss(kl, c_hat).backward()
    expected = 2 * theta.detach() + w.T @ (lam_prev * (1 - torch.tanh(w @ theta.detach()) ** 2))
    torch.testing.assert_close(theta.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        dict(update_every=3),
        dict(warmup_steps=3),
        dict(factor_clamp=(0.8, 1.25)),
        dict(lambda_bounds=(0.6, 1.6)),
        dict(update_every=2, warmup_steps=2, factor_clamp=(0.9, 1.1), lambda_bounds=(0.5, 2.0)),
    ],
)
def test_options_match_hand_computation(options):
    lambda_init = [1.0, 0.7, 1.5]
    geco = GECO(n_constraints=3, alpha=0.8, nu=3.0, lambda_init=lambda_init, **options)
    expected = reference(C_SEQ, 0.8, 3.0, lambda_init, **options)
    run_and_check(geco, C_SEQ, KL_SEQ, expected)
    # the option changed the trajectory (each is off by default)
    plain = reference(C_SEQ, 0.8, 3.0, lambda_init)
    assert not np.allclose(expected[-1][2], plain[-1][2])


def test_alpha_zero_uses_raw_batch_estimates():
    geco = GECO(n_constraints=3, alpha=0.0, nu=1.0)
    for c in C_SEQ[:3]:
        geco.loss(torch.tensor(0.0, dtype=torch.float64), torch.tensor(c))
        np.testing.assert_allclose(geco.c_ma.numpy(), c, rtol=0, atol=0)
    expected = np.exp(C_SEQ[:3].sum(0))
    np.testing.assert_allclose(geco.lambdas.numpy(), expected, rtol=1e-12)


def test_beta_is_inverse_lambda_for_one_constraint():
    geco = GECO(n_constraints=1, alpha=0.99, nu=1.5, lambda_init=2.0)
    assert geco.beta == pytest.approx(0.5)
    geco.loss(torch.tensor(1.0), torch.tensor([0.2], requires_grad=True))
    assert geco.beta == pytest.approx(1.0 / (2.0 * math.exp(1.5 * 0.2)), rel=1e-6)
    # a 0-d Ĉ is accepted for a single constraint
    geco.loss(torch.tensor(1.0), torch.tensor(0.1, requires_grad=True))
    assert geco.step_count == 2
    with pytest.raises(ValueError, match="n_constraints"):
        GECO(n_constraints=2).beta  # noqa: B018


def test_eval_mode_and_no_grad_leave_state_untouched():
    geco = GECO(n_constraints=3, alpha=0.9, nu=1.0, lambda_init=[1.0, 2.0, 3.0])
    geco.loss(torch.tensor(0.0, dtype=torch.float64), torch.tensor(C_SEQ[0]))
    before = geco.state_dict()
    c = torch.tensor(C_SEQ[1], requires_grad=True)
    kl = torch.tensor(2.0, dtype=torch.float64)
    loss = geco.eval().loss(kl, c)
    assert not geco.training
    # evaluation returns the plain Lagrangian kl + λᵀĈ with the current λ
    assert loss.item() == pytest.approx(2.0 + float(before["lambdas"] @ c.detach()), abs=1e-12)
    with torch.no_grad():
        geco.train().loss(kl, c)
    for key, value in geco.state_dict().items():
        assert torch.equal(value, before[key]), key
    geco.loss(kl, c)  # training mode with gradients: updates again
    assert geco.step_count == 2


def test_state_dict_round_trip_continues_identically():
    kwargs = dict(n_constraints=3, alpha=0.9, nu=2.0, lambda_init=[1.0, 0.5, 2.0], warmup_steps=1)
    a = GECO(**kwargs)
    for c in C_SEQ[:4]:
        a.loss(torch.tensor(0.0), torch.tensor(c, dtype=torch.float32))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = GECO(**kwargs)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.step_count == a.step_count == 4
    assert torch.equal(b.lambdas, a.lambdas) and torch.equal(b.c_ma, a.c_ma)
    for c, k in zip(C_SEQ[4:], KL_SEQ[4:]):
        ca = torch.tensor(c, dtype=torch.float32, requires_grad=True)
        cb = torch.tensor(c, dtype=torch.float32, requires_grad=True)
        la, lb = a.loss(torch.tensor(k), ca), b.loss(torch.tensor(k), cb)
        la.backward(), lb.backward()
        assert torch.equal(la, lb) and torch.equal(ca.grad, cb.grad)
        assert torch.equal(a.lambdas, b.lambdas) and torch.equal(a.c_ma, b.c_ma)
    assert a.step_count == b.step_count == len(C_SEQ)


def test_state_dict_is_a_copy_and_validated():
    geco = GECO(n_constraints=3)
    sd = geco.state_dict()
    geco.loss(torch.tensor(0.0), torch.tensor(C_SEQ[0], dtype=torch.float32))
    assert torch.equal(sd["lambdas"], torch.ones(3, dtype=torch.float64))
    assert int(sd["step_count"]) == 0
    with pytest.raises(ValueError, match="lambdas"):
        geco.load_state_dict({**sd, "lambdas": torch.ones(2)})
    with pytest.raises(ValueError, match="lambdas"):
        geco.load_state_dict({**sd, "lambdas": torch.tensor([1.0, -1.0, 1.0])})
    with pytest.raises(ValueError, match="missing"):
        geco.load_state_dict({k: v for k, v in sd.items() if k != "c_ma"})


def test_non_finite_c_hat_is_skipped_warned_and_eventually_raises():
    lambda_init = [1.0, 0.5, 2.0]
    geco = GECO(n_constraints=3, alpha=0.9, nu=2.0, lambda_init=lambda_init, max_bad_steps=3)
    zero = torch.tensor(0.0, dtype=torch.float64)
    nan_c = torch.tensor([0.1, float("nan"), 0.0], dtype=torch.float64)
    inf_c = torch.tensor([float("inf"), 0.0, 0.0], dtype=torch.float64)

    # a bad first step does not initialise the moving average
    with pytest.warns(RuntimeWarning, match="non-finite"):
        geco.loss(zero, nan_c)
    assert geco.step_count == 0 and torch.equal(geco.lambdas, torch.tensor(lambda_init))

    good = iter(C_SEQ)
    geco.loss(zero, torch.tensor(next(good)))
    geco.loss(zero, torch.tensor(next(good)))
    snapshot = geco.state_dict()
    for bad in (nan_c, inf_c):  # two consecutive bad steps: warn, leave λ, C_ma, t as they were
        with pytest.warns(RuntimeWarning, match="consecutive"):
            loss = geco.loss(zero, bad.clone().requires_grad_())
        assert not torch.isfinite(loss)  # the caller sees the bad step
        for key in ("lambdas", "c_ma", "step_count"):
            assert torch.equal(geco.state_dict()[key], snapshot[key]), key
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good step resets the counter silently
        for c in good:
            geco.loss(zero, torch.tensor(c))
    # the bad steps were simply skipped: the trajectory equals Algorithm 1 on the good ones
    expected = reference(C_SEQ, 0.9, 2.0, lambda_init)[-1]
    np.testing.assert_allclose(geco.lambdas.numpy(), expected[2], rtol=1e-12)
    np.testing.assert_allclose(geco.c_ma.numpy(), expected[1], rtol=0, atol=1e-12)
    assert geco.step_count == len(C_SEQ)

    with pytest.warns(RuntimeWarning):
        geco.loss(zero, nan_c)
        geco.loss(zero, nan_c)
    with pytest.raises(FloatingPointError, match="max_bad_steps=3"):
        geco.loss(zero, nan_c)
    np.testing.assert_allclose(geco.lambdas.numpy(), expected[2], rtol=1e-12)


def test_geco_step_function_is_branch_free_on_bad_input():
    state = GECOState(
        lambdas=torch.tensor([2.0]),
        c_ma=torch.tensor([0.5]),
        step=torch.tensor(4),
        bad_steps=torch.tensor(1),
    )
    same = geco_step(state, torch.tensor([float("nan")]), alpha=0.9, nu=1.0)
    assert torch.equal(same.lambdas, state.lambdas) and torch.equal(same.c_ma, state.c_ma)
    assert int(same.step) == 4 and int(same.bad_steps) == 2
    new = geco_step(state, torch.tensor([0.1]), alpha=0.9, nu=1.0)
    c_ma = 0.9 * 0.5 + 0.1 * 0.1
    assert new.c_ma.item() == pytest.approx(c_ma)
    assert new.lambdas.item() == pytest.approx(2.0 * math.exp(c_ma))
    assert int(new.step) == 5 and int(new.bad_steps) == 0


def test_lambda_floor_keeps_an_inactive_constraint_recoverable():
    geco = GECO(n_constraints=1, alpha=0.0, nu=10.0, lambda_bounds=(1e-3, 1e3))
    for _ in range(50):  # strongly slack: λ would fall to exp(-500)
        geco.loss(torch.tensor(0.0), torch.tensor([-1.0]))
    assert geco.lambdas.item() == pytest.approx(1e-3)
    geco.loss(torch.tensor(0.0), torch.tensor([0.1]))  # violated again: λ rises at once
    assert geco.lambdas.item() == pytest.approx(1e-3 * math.exp(1.0), rel=1e-6)


def test_float32_state_follows_the_constraint_dtype():
    geco = GECO(n_constraints=1, nu=1.0)
    c = torch.tensor([0.05], requires_grad=True)
    loss = geco.loss(torch.tensor(1.0), c)
    assert loss.dtype == torch.float32 and geco.lambdas.dtype == torch.float32
    assert geco.lambdas.item() == pytest.approx(math.exp(0.05), rel=1e-6)
    geco.loss(torch.tensor(1.0, dtype=torch.float64), c.double())
    assert geco.lambdas.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(alpha=1.0), "alpha"),
        (dict(alpha=-0.1), "alpha"),
        (dict(nu=0.0), "nu"),
        (dict(nu=-1.0), "nu"),
        (dict(nu=float("nan")), "nu"),
        (dict(lambda_init=0.0), "lambda_init"),
        (dict(lambda_init=[1.0, 2.0]), "lambda_init"),
        (dict(n_constraints=0), "n_constraints"),
        (dict(update_every=0), "update_every"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(max_bad_steps=0), "max_bad_steps"),
        (dict(factor_clamp=(1.1, 0.9)), "factor_clamp"),
        (dict(factor_clamp=(0.9, 0.95)), "factor_clamp"),
        (dict(lambda_bounds=(2.0, 1.0)), "lambda_bounds"),
        (dict(lambda_bounds=(2.0, 3.0)), "lambda_init"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GECO(**kwargs)


def test_bad_loss_inputs_raise_value_error():
    geco = GECO(n_constraints=3)
    with pytest.raises(ValueError, match="c_hat"):
        geco.loss(torch.tensor(0.0), torch.zeros(2))
    with pytest.raises(ValueError, match="c_hat"):
        geco.loss(torch.tensor(0.0), torch.zeros(4, 3))  # per-example values, not batch means
    with pytest.raises(ValueError, match="kl"):
        geco.loss(torch.zeros(4), torch.zeros(3))
    assert geco.step_count == 0


def test_docstring_examples_run():
    import doctest

    import geco_core.geco

    result = doctest.testmod(geco_core.geco)
    assert result.attempted > 0 and result.failed == 0


def test_non_numeric_hyper_parameters_and_integer_estimates_raise_type_error():
    with pytest.raises(TypeError, match=r"^alpha must be a real number, got None"):
        GECO(alpha=None)
    with pytest.raises(TypeError, match=r"^nu must be a real number"):
        GECO(nu="1")
    with pytest.raises(TypeError, match=r"^lambda_init must be a number or a sequence"):
        GECO(lambda_init=None)
    with pytest.raises(TypeError, match=r"^lambda_init must be a number or a sequence"):
        GECO(lambda_init="abc")
    geco = GECO()
    # an integer Ĉ used to turn λ into an integer inside the loss
    with pytest.raises(
        TypeError,
        match=r"^c_hat must be a floating-point tensor, got dtype "
        r"torch\.int64",
    ):
        geco.loss(torch.tensor(1.0), torch.tensor([2]))
    with pytest.raises(TypeError, match=r"^kl must be a floating-point tensor"):
        geco.loss(torch.tensor(1), torch.tensor([0.5]))
    assert geco.step_count == 0 and geco.lambdas.dtype == torch.float64
    geco.loss(torch.tensor(1.0), torch.tensor([0.5]))
    assert geco.lambdas.dtype == torch.float32 and geco.step_count == 1


def test_satisfied_speedup_multiplies_the_step_only_where_the_constraint_is_met():
    from geco_core.geco import multiplier_update

    lam = torch.tensor([2.0, 2.0], dtype=torch.float64)
    c = torch.tensor([0.3, -0.3], dtype=torch.float64)
    new = multiplier_update(lam, c, nu=0.5, satisfied_speedup=10.0)
    torch.testing.assert_close(new, lam * torch.exp(torch.tensor([0.15, -1.5],
                                                                 dtype=torch.float64)))
    # through GECO: a violated step as Algorithm 1, a satisfied one 10× faster (α = 0)
    g = GECO(alpha=0.0, nu=1.0, satisfied_speedup=10.0)
    g.loss(torch.tensor(0.0), torch.tensor([0.2], requires_grad=True))
    assert float(g.lambdas) == pytest.approx(math.exp(0.2))
    g.loss(torch.tensor(0.0), torch.tensor([-0.1], requires_grad=True))
    assert float(g.lambdas) == pytest.approx(math.exp(0.2 - 1.0))
    with pytest.raises(ValueError, match="satisfied_speedup"):
        GECO(satisfied_speedup=0.5)
    assert "satisfied_speedup=10.0" in repr(g)


# -- nu="auto": ν from the first batch's constraint (the book's policy) ------------------------
def test_auto_nu_is_the_rule_of_the_first_estimate_per_constraint():
    """ν_l = 0.05/|Ĉ⁰_l|, so the first update moves log λ by exactly ±0.05 per constraint
    (C_ma⁰ = Ĉ⁰); afterwards the trajectory is Algorithm 1's with that ν."""
    c_seq = C_SEQ[:, :2]  # first row: +0.30 and -0.10
    geco = GECO(n_constraints=2, alpha=0.9, nu="auto")
    assert geco.nu_auto and geco.nu is None
    nu = 0.05 / np.abs(c_seq[0])
    expected = reference(c_seq, 0.9, nu, 1.0)
    run_and_check(geco, c_seq, KL_SEQ, expected)
    np.testing.assert_allclose(geco.nu, nu, rtol=1e-15)
    g1 = GECO(n_constraints=2, alpha=0.9, nu="auto")
    g1.loss(torch.tensor(0.0, dtype=torch.float64), torch.tensor(c_seq[0]))
    np.testing.assert_allclose(g1.lambdas.log().numpy(), [0.05, -0.05], rtol=1e-12)


def test_auto_nu_single_constraint_is_a_float_and_matches_the_numeric_nu():
    c = [0.25, 0.1, -0.02, 0.05]  # 0.25 is exact in float32: ν = 0.2
    auto, fixed = GECO(alpha=0.9, nu="auto"), GECO(alpha=0.9, nu=0.2)
    for v in c:
        for g in (auto, fixed):
            g.loss(torch.tensor(1.0), torch.tensor([v]))
        assert torch.equal(auto.lambdas, fixed.lambdas)
    assert isinstance(auto.nu, float) and auto.nu == pytest.approx(0.2, rel=1e-15)
    assert "nu='auto' → 0.2" in repr(auto)


def test_auto_nu_waits_for_a_finite_estimate():
    geco = GECO(alpha=0.9, nu="auto")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        geco.loss(torch.tensor(1.0), torch.tensor([float("nan")]))
    assert geco.nu is None and geco.step_count == 0 and "nu" not in geco.state_dict()
    geco.loss(torch.tensor(1.0), torch.tensor([-0.5]))
    assert geco.nu == pytest.approx(0.1)
    assert geco.lambdas.item() == pytest.approx(math.exp(-0.05), rel=1e-6)


def test_auto_nu_state_dict_round_trip_and_refusals():
    geco = GECO(n_constraints=2, alpha=0.9, nu="auto")
    for c in C_SEQ[:3, :2]:
        geco.loss(torch.tensor(0.0, dtype=torch.float64), torch.tensor(c))
    sd = geco.state_dict()
    assert sd["nu"].shape == (2,) and sd["nu"].dtype == torch.float64
    again = GECO(n_constraints=2, alpha=0.9, nu="auto")
    again.load_state_dict(sd)
    assert again.nu == geco.nu
    for c in C_SEQ[3:, :2]:  # the restored GECO continues exactly
        for g in (geco, again):
            g.loss(torch.tensor(0.0, dtype=torch.float64), torch.tensor(c))
        assert torch.equal(geco.lambdas, again.lambdas)
    with pytest.raises(ValueError, match="'nu' is saved by a GECO with nu='auto' only"):
        GECO(n_constraints=2, nu=1.0).load_state_dict(sd)
    no_nu = {k: v for k, v in sd.items() if k != "nu"}
    with pytest.raises(ValueError, match="no 'nu'"):
        GECO(n_constraints=2, nu="auto").load_state_dict(no_nu)
    with pytest.raises(ValueError, match="state_dict\\['nu'\\]"):
        GECO(n_constraints=2, nu="auto").load_state_dict({**sd, "nu": torch.tensor([-1.0, 1.0])})


@pytest.mark.parametrize("nu", ["fast", "AUTO", ""])
def test_auto_nu_other_strings_are_refused(nu):
    with pytest.raises(TypeError, match="nu must be a real number > 0 or 'auto'"):
        GECO(nu=nu)


def test_auto_nu_with_a_zero_first_estimate_names_the_rule():
    with pytest.raises(ValueError, match="nu='auto'.*gives no ν"):
        GECO(nu="auto").loss(torch.tensor(1.0), torch.tensor([0.0]))


# -- reliability: float32 range and NaN state -------------------------------------------------
@pytest.mark.parametrize("kw, name", [({"nu": 1e300}, "nu"), ({"nu": 1e-300}, "nu"),
                                      ({"lambda_init": 1e300}, "lambda_init"),
                                      ({"lambda_init": 1e-300}, "lambda_init")])
def test_settings_outside_float32_are_refused(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must lie in float32's range"):
        GECO(**kw)


def test_a_nan_kl_leaves_the_multipliers_alone():
    geco = GECO(alpha=0.9, nu=1.0)
    geco.loss(torch.tensor(1.0), torch.tensor([0.2]))
    before = geco.state_dict()
    with pytest.warns(RuntimeWarning, match="non-finite constraint estimate c_hat or KL"):
        loss = geco.loss(torch.tensor(float("nan")), torch.tensor([0.2]))
    assert not torch.isfinite(loss)  # the caller skips this step
    after = geco.state_dict()
    for k in ("lambdas", "c_ma", "step_count"):
        assert torch.equal(before[k], after[k]), k
    assert int(after["bad_steps"]) == 1
    geco.loss(torch.tensor(1.0), torch.tensor([0.2]))
    assert torch.isfinite(geco.lambdas).all() and geco.step_count == 2


def test_propose_nu_refuses_a_nu_outside_float32():
    from geco_core.feasibility import propose_nu

    with pytest.raises(ValueError, match="^c0: 1e-320 gives ν"):
        propose_nu(1e-320)


def test_a_finite_c_hat_that_would_overflow_or_underflow_lambda_is_a_bad_step():
    """Without lambda_bounds, exp(ν·C_ma) can overflow λ to inf or underflow it to 0 from a
    finite Ĉ: the step is refused like a non-finite one (λ, C_ma, t kept; warned; raised
    after max_bad_steps), so λ never leaves (0, ∞)."""
    zero = torch.tensor(0.0)
    for c in (1e3, -1e3):
        geco = GECO(alpha=0.5, max_bad_steps=2)
        before = geco.state_dict()
        with pytest.warns(RuntimeWarning, match="overflow"):
            loss = geco.loss(zero, torch.tensor([c]))
        assert torch.isfinite(loss)
        after = geco.state_dict()
        for key in ("lambdas", "c_ma", "step_count"):
            assert torch.equal(after[key], before[key]), (c, key)
        assert int(after["bad_steps"]) == 1
        with pytest.raises(FloatingPointError, match="overflow"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                geco.loss(zero, torch.tensor([c]))
    geco = GECO(alpha=0.5)  # an ordinary large step still moves λ: e^{0.5·40}
    geco.loss(zero, torch.tensor([40.0]))
    assert float(geco.lambdas) == pytest.approx(math.exp(40.0), rel=1e-5)


def test_load_state_dict_refuses_a_non_finite_moving_average_or_bad_counters():
    geco = GECO()
    sd = geco.state_dict()
    with pytest.raises(ValueError, match="c_ma"):
        geco.load_state_dict({**sd, "c_ma": torch.tensor([math.nan], dtype=torch.float64)})
    for key, bad in (("step_count", torch.tensor(1.5)), ("bad_steps", torch.tensor(-1))):
        with pytest.raises(ValueError, match=key):
            geco.load_state_dict({**sd, key: bad})
    geco.load_state_dict(sd)  # the untouched state still loads
