"""Objectives of the methods that came after GECO, in the same harness (chapter 05).

Each is an :class:`~geco_core.objectives.Objective` (``objective(out, x, ...) -> (loss,
metrics)``) on the λ = 1/β scale of :mod:`geco_core.objectives` (λ = the weight of the
per-pixel MSE relative to the KL), so their λ or β trajectories share one axis with GECO's:

- :class:`SigmaVAE` — the "optimal σ-VAE" (Rybkin et al. 2021): the Gaussian ELBO with the
  decoder's σ set, at every batch, to its analytic optimum σ² = MSE (the σ_opt of the paper's
  Appendix D, Eq. 26). No tolerance and no tuning: its implied λ = D/(2σ²) = D/(2·MSE).
- :class:`ControlVAE` — ControlVAE (Shao et al. 2020): a PI controller sets β so that the KL
  tracks a set-point (a KL target, not a reconstruction target).
- :class:`SoftplusLagrangian` — the Lagrangian with a multiplier λ = softplus(u)² whose raw
  parameter u is trained by the *model's* optimiser through a gradient-reversing op (DeepMind
  Sonnet 1, ``sonnet/python/modules/optimization_constraints.py``). Its docstring says that
  the gradient-scaling ``rate`` "has no effect when using optimisers such as Adam": Adam
  normalises every parameter's step to about its learning rate, so u moves by ≲ lr per step.
- :class:`CooperLagrangian` — gradient ascent on λ (or cooper's νPI) through the
  `cooper-optim <https://github.com/cooper-org/cooper>`_ package: a
  ``ConstrainedMinimizationProblem`` with one inequality constraint and a ``DenseMultiplier``,
  the dual step taken after each batch with cooper's dual Lagrangian (simultaneous updates).

The GECO variants (the genesis speed-up, the EfficientMORL floor) are options of
:class:`geco_core.GECO` (``satisfied_speedup``, ``lambda_bounds``).

References:
    O. Rybkin, K. Daniilidis, S. Levine. "Simple and Effective VAE Training with Calibrated
    Decoders". ICML 2021 (σ-VAE).
    H. Shao et al. "ControlVAE: Controllable Variational Autoencoder". ICML 2020.
    DeepMind Sonnet 1.36, ``optimization_constraints.py`` (squared-softplus multipliers).
    J. Gallego-Posada et al. "Cooper: a library for constrained optimization in deep
    learning", 2025; S. Sohrabi et al. "On PI controllers for updating Lagrange multipliers
    in constrained optimization" (νPI), ICML 2024.
    Rezende & Viola, "Taming VAEs", 2018: Eq. 2, Algorithm 1, Appendix D.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> x = torch.full((2, 1, 2, 2), 0.5)
    >>> out = SimpleNamespace(x_mean=x + 0.1, kl=torch.zeros(2))
    >>> _, m = SigmaVAE()(out, x)
    >>> round(float(m["sigma"]), 4), round(float(m["lambda"]), 1)  # σ² = MSE; λ = D/(2σ²)
    (0.1, 200.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geco_base.checks import check_float32, check_fraction
from geco_core.objectives.base import (
    Objective,
    accepted_kwargs,
    batch_stats,
    gaussian_nll,
    negative_elbo,
)

__all__ = [
    "ALTERNATIVE_OBJECTIVES",
    "CONTROL_VAE_BETA_RANGE",
    "ControlVAE",
    "CooperLagrangian",
    "SigmaVAE",
    "SoftplusLagrangian",
    "control_vae_beta",
    "reverse_gradient",
    "sigma_vae_sigma",
]


# --------------------------------------------------------------------------------------------
# Equations, one function each
# --------------------------------------------------------------------------------------------
def sigma_vae_sigma(mse: Tensor) -> Tensor:
    """σ-VAE's decoder σ: the maximiser of the Gaussian likelihood for a shared σ,
    σ* = √MSE (Rybkin et al. 2021, "optimal σ"; the paper's Appendix D, Eq. 26), detached.

    Example:
        >>> round(float(sigma_vae_sigma(torch.tensor(0.04))), 6)
        0.2
    """
    return mse.detach().clamp_min(torch.finfo(mse.dtype).tiny).sqrt()


def control_vae_beta(error: float, integral: float, kp: float, ki: float,
                     beta_min: float) -> float:
    """ControlVAE's PI controller (Shao et al. 2020, Eq. 5):

        β(t) = K_p / (1 + exp(e(t))) − K_i · Σ_{j ≤ t} e(j) + β_min,   e = KL_set − KL(t),

    ``integral`` = Σ e(j). A KL above its set-point (e < 0) raises β (more weight on the KL).

    Example:
        >>> control_vae_beta(0.0, 0.0, kp=0.02, ki=0.001, beta_min=0.0)  # K_p/2
        0.01
    """
    # K_p/(1 + e^e) = K_p·sigmoid(−e), written so that a large |e| cannot overflow.
    return kp * (1.0 / (1.0 + math.exp(error)) if error < 30 else 0.0) - ki * integral + beta_min


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rate):
        ctx.rate = rate
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.rate * grad, None


def reverse_gradient(x: Tensor, rate: float = 1.0) -> Tensor:
    """Identity forward; the backward multiplies the gradient by ``−rate`` (Sonnet 1's
    ``scale_gradient(·, −rate)``): a descent step of the optimiser is an ascent step on x.

    Example:
        >>> u = torch.tensor(2.0, requires_grad=True)
        >>> (3.0 * reverse_gradient(u, rate=0.5)).backward()
        >>> float(u.grad)
        -1.5
    """
    return _ReverseGradient.apply(x, float(rate))


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------
class SigmaVAE(Objective):
    """The optimal σ-VAE (Rybkin et al. 2021): negative ELBO (Eq. 1) with σ = √(batch MSE).

    Loss = batch mean of ‖x − g(z)‖²/(2σ²) + D ln σ + (D/2) ln 2π + KL, σ = √MSE detached
    (:func:`sigma_vae_sigma`), i.e. D/2 + (D/2) ln(2π·MSE) + KL: the ELBO with σ at its
    per-batch maximum-likelihood value instead of a learned parameter. Its implied
    multiplier λ = D/(2σ²) = D/(2·MSE) grows as the fit improves, like GECO's λ, but there is
    no tolerance to aim at: the run lands where the likelihood puts it.
    """

    name = "sigma_vae"
    takes_objective_kwargs = True

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        sse, kl, n_dims = batch_stats(out, x)
        sigma = sigma_vae_sigma(sse.mean() / n_dims)
        loss = negative_elbo(gaussian_nll(sse, n_dims, sigma), kl).mean()
        return loss, self._gaussian_metrics(sse, kl, n_dims, sigma, loss)


#: ControlVAE's default range of β, ``(beta_min, beta_max)``: λ = 1/β within [10³, 10⁶].
CONTROL_VAE_BETA_RANGE: tuple[float, float] = (1e-6, 1e-3)


class ControlVAE(Objective):
    """ControlVAE (Shao et al. 2020): loss = KL + MSE/β with β set by a PI controller so that
    the batch KL tracks ``kl_target`` (:func:`control_vae_beta`).

    β is clipped to ``[beta_min, beta_max]`` and the integral stops accumulating while it is
    clipped (the paper's anti-windup). On the scale of :mod:`geco_core.objectives` (β = 1/λ on
    the per-pixel MSE) β is tiny (10⁻⁶–10⁻³ for 28×28 images), so the gains are given in that
    unit: ``kp`` is the P-term's range, ``ki`` the change of β per nat of accumulated error.

    Args:
        kl_target: the KL set-point (nats per example). ControlVAE controls the KL, not the
            reconstruction: to aim at a reconstruction error one must know which KL gives it.
        kp, ki: the controller's gains (> 0). beta_min, beta_max: β's range (0 < min < max).
    """

    name = "control_vae"
    takes_objective_kwargs = True

    def __init__(self, kl_target: float = 50.0, kp: float = 1e-4, ki: float = 1e-7,
                 beta_min: float = CONTROL_VAE_BETA_RANGE[0],
                 beta_max: float = CONTROL_VAE_BETA_RANGE[1]) -> None:
        self.kl_target = check_float32(kl_target, "kl_target")
        self.kp = check_float32(kp, "kp")
        self.ki = check_float32(ki, "ki")
        self.beta_min = check_float32(beta_min, "beta_min")
        self.beta_max = check_float32(beta_max, "beta_max")
        if not beta_max > beta_min:
            raise ValueError(f"beta_max must be > beta_min, got {beta_min}, {beta_max}")
        self.integral = 0.0
        self.beta = beta_max  # the first step weights the KL most (no error seen yet)

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        sse, kl, n_dims = batch_stats(out, x)
        beta = self.beta
        loss = (kl + sse / (n_dims * beta)).mean()
        sigma = torch.tensor(math.sqrt(beta * n_dims / 2.0), device=sse.device)
        metrics = self._gaussian_metrics(sse, kl, n_dims, sigma, loss)
        kl_mean = float(kl.detach().mean())
        if torch.is_grad_enabled() and not math.isfinite(kl_mean):
            warnings.warn(f"ControlVAE: non-finite KL ({kl_mean}); β and the integral left "
                          "unchanged — skip this optimizer step", RuntimeWarning, stacklevel=2)
        elif torch.is_grad_enabled():  # the controller acts in training only
            error = self.kl_target - kl_mean
            integral = self.integral + error
            raw = control_vae_beta(error, integral, self.kp, self.ki, self.beta_min)
            new = min(max(raw, self.beta_min), self.beta_max)
            if new == raw:  # anti-windup: integrate only while β is inside its range
                self.integral = integral
            self.beta = new
        return loss, metrics

    def state_dict(self):
        return {"integral": torch.tensor(self.integral, dtype=torch.float64),
                "beta": torch.tensor(self.beta, dtype=torch.float64)}

    def load_state_dict(self, state):
        self.integral = float(state["integral"])
        self.beta = float(state["beta"])


class _ConstrainedObjective(Objective):
    """Shared by the Lagrangian objectives: the constraint modules and Ĉ (the batch mean)."""

    takes_constraints = True
    takes_objective_kwargs = True

    def __init__(self, constraints: nn.Module | Sequence[nn.Module]) -> None:
        if isinstance(constraints, nn.Module):
            constraints = [constraints]
        self.constraints = list(constraints)
        if len(self.constraints) != 1:
            raise ValueError(f"{self.name} takes one constraint, got {len(self.constraints)}")
        self._takes_labels = accepted_kwargs(self.constraints[0])("labels")

    def _c_hat(self, out, x, labels) -> Tensor:
        c = self.constraints[0]
        v = c(x, out.x_mean, labels=labels) if self._takes_labels else c(x, out.x_mean)
        if v.dim() != 1:
            raise ValueError(f"{self.name} needs a constraint with one value per example")
        return v.mean()

    @staticmethod
    def _metrics(loss, kl, x, out, c_hat, lam) -> dict[str, Tensor]:
        with torch.no_grad():
            mse = (x - out.x_mean.detach()).pow(2).mean()
            s = mse.clamp_min(torch.finfo(mse.dtype).tiny).sqrt()
            lam = lam.detach().reshape(())
            return {"loss": loss.detach(), "kl": kl.detach(), "mse": mse,
                    "nll": gaussian_nll(mse, 1, s), "sigma": s, "lambda": lam,
                    "beta": 1.0 / lam, "c_hat": c_hat.detach()}

    def to(self, device):
        for c in self.constraints:
            c.to(device)
        return self


class SoftplusLagrangian(_ConstrainedObjective):
    """Eq. 2's Lagrangian ``KL + λ·Ĉ`` with λ = softplus(u)², u trained by the model's own
    optimiser through :func:`reverse_gradient` (Sonnet 1's ``OptimizationConstraints``).

    The gradient of the loss in u is ``−rate · Ĉ · ∂λ/∂u``: a descent step of the shared
    optimiser raises λ while the constraint is violated. No moving average (Sonnet has none).
    With SGD the step in u is ∝ rate·Ĉ; with Adam it is ≈ lr·sign(Ĉ) whatever the rate, so λ
    can grow by at most ≈ (1 + steps·lr)² from λ⁰ = 1 — far below the 10⁴–10⁸ a sharp image
    model's per-pixel RE needs within a short run (chapter 05 measures it).

    Args:
        constraints: one constraint module (e.g. :class:`geco_core.constraints.RE`).
        lambda_init: λ at step 0 (> 0; Sonnet's default 1). rate: the gradient scale (> 0).
    """

    name = "softplus_lagrangian"

    def __init__(self, constraints, lambda_init: float = 1.0, rate: float = 1.0) -> None:
        super().__init__(constraints)
        check_float32(lambda_init, "lambda_init")
        self.rate = check_float32(rate, "rate")
        u0 = math.log(math.expm1(math.sqrt(lambda_init)))  # softplus⁻¹(√λ⁰)
        self.u = nn.Parameter(torch.tensor(u0))

    @property
    def lam(self) -> Tensor:
        """The current λ = softplus(u)², detached (a reading; the loss builds its own)."""
        return nn.functional.softplus(self.u.detach()) ** 2

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        c_hat = self._c_hat(out, x, labels)
        kl = out.kl.mean()
        lam = nn.functional.softplus(reverse_gradient(self.u, self.rate)) ** 2
        loss = kl + lam * c_hat
        return loss, self._metrics(loss, kl, x, out, c_hat, lam)

    def parameters(self):
        return iter([self.u])

    def to(self, device):
        super().to(device)
        self.u.data = self.u.data.to(device)
        return self

    def state_dict(self):
        return {"u": self.u.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.u.copy_(state["u"])


class CooperLagrangian(_ConstrainedObjective):
    """Eq. 2's Lagrangian solved by cooper-optim: λ ≥ 0 a ``cooper.multipliers.DenseMultiplier``
    moved by a dual optimiser — plain gradient ascent (``torch.optim.SGD``, ``maximize=True``)
    or cooper's νPI controller (``cooper.optim.nuPI``).

    Each call returns cooper's primal Lagrangian ``KL + λ·Ĉ`` (the engine back-propagates it
    and steps the model) and, in training, takes one dual step with cooper's dual Lagrangian
    of the same batch (λ's gradient is Ĉ; cooper then projects λ onto λ ≥ 0): simultaneous
    gradient descent–ascent. The update is additive, λ ← λ + η·Ĉ, so η carries the units of
    λ per unit of constraint: reaching a λ of 10⁵ from Ĉ ≈ 10⁻² needs η ≈ 10⁴–10⁵ per step,
    where GECO's multiplicative update is scale-free in λ.

    Args:
        constraints: one constraint module.
        dual_lr: η (> 0). dual_optimizer: ``"sgd"`` or ``"nupi"``.
        kp, ema_nu: νPI's proportional gain and its EMA of the error (``"nupi"`` only).
        lambda_init: λ at step 0 (≥ 0).
    """

    name = "cooper"

    def __init__(self, constraints, dual_lr: float = 1e4, dual_optimizer: str = "sgd",
                 kp: float = 0.0, ema_nu: float = 0.0, lambda_init: float = 1.0) -> None:
        import cooper

        super().__init__(constraints)
        self.dual_lr = check_float32(dual_lr, "dual_lr")
        if dual_optimizer not in ("sgd", "nupi"):
            raise ValueError(f"dual_optimizer must be 'sgd' or 'nupi', got {dual_optimizer!r}")
        if not (isinstance(kp, (int, float)) and kp >= 0):
            raise ValueError(f"kp must be >= 0, got {kp!r}")
        check_fraction(ema_nu, "ema_nu")
        if not (isinstance(lambda_init, (int, float)) and lambda_init >= 0):
            raise ValueError(f"lambda_init must be >= 0, got {lambda_init!r}")
        self.dual_optimizer_name, self.kp, self.ema_nu = dual_optimizer, float(kp), ema_nu
        self.multiplier = cooper.multipliers.DenseMultiplier(
            init=torch.tensor([float(lambda_init)]))
        self.constraint = cooper.Constraint(
            constraint_type=cooper.ConstraintType.INEQUALITY,
            formulation_type=cooper.formulations.Lagrangian,
            multiplier=self.multiplier,
        )
        self._build_dual()

    def _build_dual(self) -> None:
        import cooper

        params = list(self.multiplier.parameters())
        if self.dual_optimizer_name == "sgd":
            self.dual = torch.optim.SGD(params, lr=self.dual_lr, maximize=True)
        else:
            self.dual = cooper.optim.nuPI(params, lr=self.dual_lr, Kp=self.kp, Ki=1.0,
                                          ema_nu=self.ema_nu, maximize=True)

    @property
    def lam(self) -> Tensor:
        return self.multiplier.weight.detach().reshape(())

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        import cooper

        c_hat = self._c_hat(out, x, labels)
        kl = out.kl.mean()
        state = cooper.CMPState(
            loss=kl, observed_constraints={
                self.constraint: cooper.ConstraintState(violation=c_hat.reshape(1))})
        lam = self.lam.clone()
        loss = state.compute_primal_lagrangian().lagrangian
        finite = bool(torch.isfinite(c_hat.detach()).all()) and bool(torch.isfinite(kl.detach()))
        if torch.is_grad_enabled() and not finite:
            warnings.warn("cooper: non-finite constraint or KL; λ and the dual state left "
                          "unchanged — skip this optimizer step", RuntimeWarning, stacklevel=2)
        elif torch.is_grad_enabled():
            self.dual.zero_grad(set_to_none=True)
            state.compute_dual_lagrangian().lagrangian.backward()
            self.dual.step()
            self.multiplier.post_step_()  # projection onto λ ≥ 0
        return loss, self._metrics(loss, kl, x, out, c_hat, lam)

    def to(self, device):
        super().to(device)
        self.multiplier.to(device)
        self._build_dual()  # a fresh dual state on the new device (before the first step)
        return self

    def state_dict(self):
        """λ and the dual optimiser's per-parameter tensors (νPI's ξ), as plain tensors: the
        optimiser's own ``state_dict`` holds an enum that ``weights_only`` loading refuses;
        its hyper-parameters come from the constructor."""
        (p,) = self.multiplier.parameters()
        return {"lambda": p.detach().clone(),
                "dual_state": {k: v.detach().clone() for k, v in self.dual.state[p].items()}}

    def load_state_dict(self, state):
        (p,) = self.multiplier.parameters()
        with torch.no_grad():
            p.copy_(state["lambda"])
        self.dual.state[p] = {k: v.detach().clone().to(p.device)
                              for k, v in state["dual_state"].items()}


#: The later methods by name (:data:`geco_core.objectives.OBJECTIVES` registers them).
ALTERNATIVE_OBJECTIVES: dict[str, type[Objective]] = {
    c.name: c for c in (SigmaVAE, ControlVAE, SoftplusLagrangian, CooperLagrangian)}

