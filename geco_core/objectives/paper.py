"""The paper's objectives: the ELBO (Eq. 1), GECO (Eq. 2, Algorithm 1), the hand-annealed β of
§4.1 (GQN's σ schedule) and a fixed-β β-VAE, on the common scale of
:mod:`geco_core.objectives` (λ = 1/β on the per-pixel MSE).

References:
    Rezende & Viola, "Taming VAEs", 2018: Eq. (1), Eq. (2), §3.2, §3.4, Algorithm 1, App. D.
    Eslami et al., "Neural scene representation and rendering" (GQN), Science 2018,
    supplementary: pixel σ annealed linearly from 2.0 to 0.7 over 2·10⁵ steps.
    Higgins et al., "β-VAE", ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geco_base.checks import check_int, check_positive
from geco_core.geco import GECO
from geco_core.objectives.base import (
    Objective,
    accepted_kwargs,
    batch_stats,
    gaussian_nll,
    gqn_sigma,
    negative_elbo,
)

__all__ = ["AnnealedBeta", "BetaVAE", "ELBO", "GECOObjective", "PAPER_OBJECTIVES"]


class ELBO(Objective):
    """Negative ELBO, Eq. (1), with the Gaussian likelihood p(x|z) = N(x | g(z), σ²I).

    Loss = batch mean of ‖x − g(z)‖²/(2σ²) + D ln σ + (D/2) ln 2π + KL[q(z|x); π(z)].

    Args:
        sigma: the global pixel σ (fixed), or its initial value when ``learn_sigma``.
        learn_sigma: learn a global σ jointly with the model (parameterised as ln σ). §3.1:
            the ELBO drives it to σ_opt (→ 0 for a high-capacity model).

    Example:
        >>> from types import SimpleNamespace
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> out = SimpleNamespace(x_mean=torch.zeros_like(x), kl=torch.zeros(2))
        >>> loss, _ = ELBO(sigma=1.0, learn_sigma=False)(out, x)
        >>> round(float(loss), 4)  # 4 pixels · ½ ln 2π
        3.6758
    """

    name = "elbo"

    def __init__(self, sigma: float = 0.1, learn_sigma: bool = True) -> None:
        check_positive(sigma, "sigma")
        self.learn_sigma = bool(learn_sigma)
        log_sigma = torch.tensor(math.log(sigma))
        self.log_sigma = nn.Parameter(log_sigma) if self.learn_sigma else log_sigma

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        sse, kl, n_dims = batch_stats(out, x)
        sigma = self.sigma
        loss = negative_elbo(gaussian_nll(sse, n_dims, sigma), kl).mean()
        return loss, self._gaussian_metrics(sse, kl, n_dims, sigma, loss)

    def parameters(self):
        return iter([self.log_sigma] if self.learn_sigma else [])

    def to(self, device):
        if self.learn_sigma:
            self.log_sigma.data = self.log_sigma.data.to(device)
        else:
            self.log_sigma = self.log_sigma.to(device)
        return self

    def state_dict(self):
        return {"log_sigma": self.log_sigma.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.log_sigma.copy_(state["log_sigma"])


class AnnealedBeta(Objective):
    """The hand-annealed baseline: negative ELBO (Eq. 1) with the GQN σ schedule.

    The paper calls it "ELBO + hand crafted β ∈ [2.0, 0.7] annealing" (Figs. 9–11) and "the same
    annealing scheme reported in [16]" (GQN, Fig. 4). GQN anneals the *pixel standard deviation*
    σ of N(x | g(z), σ²I) linearly from 2.0 to 0.7 over 2·10⁵ steps (:func:`gqn_sigma`); the
    paper's numbers are these σ endpoints, not a KL weight. Annealing σ is annealing β:
    ‖x−g‖²/(2σ²) + KL has the minimisers of ‖x−g‖²/2 + σ²·KL (KL weight σ² relative to a unit-σ
    likelihood), i.e. β ∈ [4.0, 0.49] in that convention. On the scale of this module
    (λ = D/(2σ²) on the per-pixel MSE, β = 1/λ) we report β_t = 2σ_t²/D.

    Args:
        sigma_start, sigma_end: σ at step 0 and after ``n_steps`` (GQN: 2.0, 0.7).
        n_steps: length of the linear ramp (GQN: 200 000; scale it with your run length).
    """

    name = "annealed"

    def __init__(
        self, sigma_start: float = 2.0, sigma_end: float = 0.7, n_steps: int = 200_000
    ) -> None:
        check_positive(sigma_start, "sigma_start")
        check_positive(sigma_end, "sigma_end")
        check_int(n_steps, "n_steps")
        self.sigma_start, self.sigma_end, self.n_steps = sigma_start, sigma_end, n_steps

    def sigma_at(self, step: int) -> float:
        return gqn_sigma(step, self.sigma_start, self.sigma_end, self.n_steps)

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        sse, kl, n_dims = batch_stats(out, x)
        sigma = torch.tensor(self.sigma_at(step), dtype=sse.dtype, device=sse.device)
        loss = negative_elbo(gaussian_nll(sse, n_dims, sigma), kl).mean()
        return loss, self._gaussian_metrics(sse, kl, n_dims, sigma, loss)


class BetaVAE(Objective):
    """Fixed-β β-VAE (Higgins et al. 2017) on the λ = 1/β scale of the paper (§3.2, §3.4).

    Loss = batch mean of KL[q(z|x); π(z)] + MSE(x, g(z)) / β, MSE per pixel: GECO+RE's loss with
    λ frozen at 1/β (up to the constant κ²/β), so a sweep over β is the "many runs" that one
    GECO run replaces, and GECO's final ``geco.beta`` reads off which β it found. In the usual
    Gaussian form −ln N(x|g(z), σ²I) + β_H·KL this is σ² = βD/2 at β_H = 1, or any (σ, β_H)
    with β_H/σ² = 2/(βD); ``nll`` is reported at σ = sqrt(βD/2).

    Args:
        beta: the KL weight relative to the per-pixel MSE (> 0).
    """

    name = "beta_vae"

    def __init__(self, beta: float = 1e-3) -> None:
        check_positive(beta, "beta")
        self.beta = float(beta)

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        sse, kl, n_dims = batch_stats(out, x)
        loss = (kl + sse / (n_dims * self.beta)).mean()
        sigma = torch.tensor(math.sqrt(self.beta * n_dims / 2.0), device=sse.device)
        return loss, self._gaussian_metrics(sse, kl, n_dims, sigma, loss)


class GECOObjective(Objective):
    """GECO: minimise KL subject to E[C(x, g(z))] ≤ 0 via the Lagrangian of Eq. (2),

        L_λ = E[KL[q(z|x); π(z)]] + λᵀ E[C(x, g(z))],

    with λ updated by :class:`geco_core.GECO` (Algorithm 1: moving average C_ma of the batch
    constraint Ĉ, gradients through the last step only, λ ← λ·exp(ν·C_ma)).

    Args:
        constraints: one constraint module or a list; each returns per-example values ``[B]``
            (one constraint) or ``[B, L]`` (L constraints, e.g. per-channel RE). They are
            concatenated into Ĉ of length ``n_constraints`` (the batch mean).
        alpha, nu, lambda_init, **geco_kwargs: passed to :class:`geco_core.GECO`.
        n_constraints: total length of Ĉ; when ``None``, the sum of the constraints'
            ``n_constraints`` attributes, or inferred from the first batch.

    Metrics: ``lambda`` and ``c_ma`` (vectors when n_constraints > 1), ``c_hat``, ``beta`` (= 1/λ
    for a single constraint), ``nu`` (with ``nu="auto"``: the resolved ν), ``kl``, ``mse``, and
    ``nll`` per pixel at σ = σ_opt of the batch
    (Appendix D, Eq. 26; GECO itself has no likelihood and no σ).
    """

    name = "geco"
    takes_constraints = True

    def __init__(
        self,
        constraints: nn.Module | Sequence[nn.Module],
        alpha: float = 0.99,
        nu: float | str = 1.0,
        lambda_init: float = 1.0,
        n_constraints: int | None = None,
        **geco_kwargs: Any,
    ) -> None:
        if isinstance(constraints, nn.Module):
            constraints = [constraints]
        self.constraints = list(constraints)
        if not self.constraints:
            raise ValueError("constraints must hold at least one constraint module")
        self._geco_args = dict(alpha=alpha, nu=nu, lambda_init=lambda_init, **geco_kwargs)
        self._accepts = [accepted_kwargs(c) for c in self.constraints]
        self._device: torch.device | None = None
        self.geco: GECO | None = None
        if n_constraints is None and all(hasattr(c, "n_constraints") for c in self.constraints):
            n_constraints = sum(int(c.n_constraints) for c in self.constraints)
        if n_constraints is not None:
            self._build(n_constraints)

    def _build(self, n_constraints: int) -> None:
        self.geco = GECO(n_constraints=n_constraints, **self._geco_args)
        if self._device is not None:
            self.geco.to(self._device)

    def constraint_values(self, x: Tensor, x_hat: Tensor, **kw: Any) -> Tensor:
        """All constraints' per-example values, ``[B, n_constraints]``."""
        cols = []
        for c, accepts in zip(self.constraints, self._accepts):
            kwargs = {k: v for k, v in kw.items() if v is not None and accepts(k)}
            v = c(x, x_hat, **kwargs)
            if v.dim() == 1:
                v = v.unsqueeze(1)
            if v.dim() != 2 or v.shape[0] != x.shape[0]:
                raise ValueError(
                    f"constraint {type(c).__name__} returned shape {tuple(v.shape)}; "
                    f"expected [B] or [B, L] with B={x.shape[0]}"
                )
            cols.append(v)
        return torch.cat(cols, dim=1)

    def __call__(self, out, x, *, context=None, labels=None, step=0):
        values = self.constraint_values(x, out.x_mean, labels=labels, context=context)
        if self.geco is None:
            self._build(values.shape[1])
        c_hat = values.mean(0)
        kl = out.kl.mean()
        loss = self.geco.loss(kl, c_hat)
        with torch.no_grad():
            mse = (x - out.x_mean.detach()).pow(2).mean()
            # σ_opt of Appendix D (Eq. 26, geco_core.metrics.optimal_sigma) on this batch,
            # kept as a tensor: no host synchronisation inside a training step.
            s_opt = mse.clamp_min(torch.finfo(mse.dtype).tiny).sqrt()
            lam = self.geco.lambdas.detach()
            metrics = {
                "loss": loss.detach(),
                "kl": kl.detach(),
                "mse": mse,
                "nll": gaussian_nll(mse, 1, s_opt),
                "sigma": s_opt,
                "lambda": lam,
                "beta": 1.0 / lam if lam.numel() == 1 else torch.full_like(lam[:1], math.nan),
                "c_hat": c_hat.detach(),
                "c_ma": self.geco.c_ma.detach().clone(),
            }
            if self.geco.nu_auto:  # the ν the rule resolved (a float: no device sync)
                nu = self.geco.nu
                metrics["nu"] = torch.tensor(nu if isinstance(nu, list) else [nu])
        return loss, metrics

    def to(self, device):
        self._device = torch.device(device)
        for c in self.constraints:
            c.to(device)
        if self.geco is not None:
            self.geco.to(device)
        return self

    def state_dict(self):
        if self.geco is None:
            return {}
        return {"geco": self.geco.state_dict()}

    def load_state_dict(self, state):
        if not state:
            return
        sd = state["geco"]
        if self.geco is None:
            self._build(int(sd["lambdas"].numel()))
        self.geco.load_state_dict(sd)


#: The paper's objectives by name.
PAPER_OBJECTIVES: dict[str, type[Objective]] = {
    "elbo": ELBO,
    "geco": GECOObjective,
    "annealed": AnnealedBeta,
    "beta_vae": BetaVAE,
}
