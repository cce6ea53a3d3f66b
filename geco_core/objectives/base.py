"""The objectives' common ground: the equations every objective uses, one function each
(:func:`gaussian_nll`, :func:`negative_elbo` of Eq. 1, :func:`gqn_sigma`, :func:`sigma_to_lambda`
of §3.2's λ = 1/β), the per-batch statistics (:func:`batch_stats`), which keyword arguments a
constraint takes (:func:`accepted_kwargs`) and the :class:`Objective` base class. The
objectives themselves are in :mod:`geco_core.objectives.paper` (the paper's) and
:mod:`geco_core.objectives.alternatives` (the later methods); :mod:`geco_core.objectives`
registers both (one registry, :data:`geco_core.objectives.OBJECTIVES`).

Example:
    >>> import torch
    >>> round(float(sigma_to_lambda(0.5, 784)), 1)
    1568.0
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from geco_base.checks import check_positive

__all__ = ["Objective", "accepted_kwargs", "batch_stats", "gaussian_nll", "gqn_sigma",
           "negative_elbo", "sigma_to_lambda"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Equations, one function each
# --------------------------------------------------------------------------------------------


def gaussian_nll(sse: Tensor, n_dims: int, sigma: Tensor | float) -> Tensor:
    """−ln N(x | g(z), σ²I) from the squared error, the likelihood term of Eq. (1).

    ``sse`` is ‖x − g(z)‖² summed over ``n_dims`` dimensions (any shape, e.g. ``[B]``):

        −ln N = sse / (2σ²) + n_dims · (ln σ + ½ ln 2π).

    With ``sse = MSE`` and ``n_dims = 1`` this is the NLL per pixel.

    Example:
        >>> round(float(gaussian_nll(torch.tensor(0.0), 1, 1.0)), 4)  # ½ ln 2π
        0.9189
    """
    sigma = torch.as_tensor(sigma, dtype=sse.dtype, device=sse.device)
    return sse / (2.0 * sigma**2) + n_dims * (torch.log(sigma) + _HALF_LOG_2PI)


def negative_elbo(nll: Tensor, kl: Tensor) -> Tensor:
    """−F of Eq. (1) per example: E_q[−ln p(x|z)] + KL[q(z|x); π(z)] (one-sample estimate)."""
    return nll + kl


def gqn_sigma(
    step: int, sigma_start: float = 2.0, sigma_end: float = 0.7, n_steps: int = 200_000
) -> float:
    """The GQN pixel-σ schedule (Eslami et al. 2018, supplementary), used by the paper's
    "hand-crafted β ∈ [2.0, 0.7]" baseline (Figs. 4, 9–11, "the same annealing scheme reported
    in [16]"):

        σ_t = max(σ_end + (σ_start − σ_end)(1 − t/n), σ_end),

    linear from ``sigma_start`` at t = 0 to ``sigma_end`` at t = n, constant afterwards.

    Example:
        >>> [round(gqn_sigma(t, 2.0, 0.7, 100), 3) for t in (0, 50, 100, 500)]
        [2.0, 1.35, 0.7, 0.7]
    """
    check_positive(n_steps, "n_steps")
    frac = min(max(step, 0) / n_steps, 1.0)
    return sigma_end + (sigma_start - sigma_end) * (1.0 - frac)


def sigma_to_lambda(sigma: Tensor | float, n_dims: int) -> Tensor | float:
    """λ = D/(2σ²): the weight a Gaussian likelihood N(x|g(z), σ²I) puts on the per-pixel MSE
    relative to the KL (see the module docstring); β = 1/λ = 2σ²/D (§3.2: λ = 1/β).

    Example:
        >>> sigma_to_lambda(0.5, 2)
        4.0
    """
    return n_dims / (2.0 * sigma**2)


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


def batch_stats(out: Any, x: Tensor) -> tuple[Tensor, Tensor, int]:
    """Per-example squared error ``[B]``, per-example KL ``[B]`` and D (pixels per example)."""
    if out.x_mean.shape != x.shape:
        raise ValueError(f"x_mean has shape {tuple(out.x_mean.shape)}, x has {tuple(x.shape)}")
    n_dims = x[0].numel()
    sse = (x - out.x_mean).pow(2).flatten(1).sum(1)
    return sse, out.kl, n_dims


class Objective:
    """Base class: a loss with (possibly) trainable parameters and a resumable state.

    Class attributes tell the engine how to build it from a config: ``takes_constraints`` (its
    first argument is the list of constraint modules of ``constraint``/``kappa``) and
    ``takes_objective_kwargs`` (its other arguments come from ``objective_kwargs``; the
    paper's objectives take theirs from fields of their own).
    """

    name: str = "objective"
    takes_constraints: bool = False
    takes_objective_kwargs: bool = False

    def __call__(
        self,
        out: Any,
        x: Tensor,
        *,
        context: Tensor | None = None,
        labels: Tensor | None = None,
        step: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimizer updates together with the model's (e.g. a learned σ)."""
        return iter(())

    def to(self, device: torch.device | str) -> Objective:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} has no state, got keys {sorted(state)}")

    @staticmethod
    def _gaussian_metrics(
        sse: Tensor, kl: Tensor, n_dims: int, sigma: Tensor, loss: Tensor
    ) -> dict[str, Tensor]:
        with torch.no_grad():
            mse = sse.detach().mean() / n_dims
            sigma = sigma.detach()
            lam = sigma_to_lambda(sigma, n_dims)
            return {
                "loss": loss.detach(),
                "kl": kl.detach().mean(),
                "mse": mse,
                "nll": gaussian_nll(mse, 1, sigma),
                "sigma": sigma,
                "lambda": lam,
                "beta": 1.0 / lam,
            }


def accepted_kwargs(module: nn.Module):
    """Which optional keyword arguments (``labels``, ``context``) a constraint's forward takes."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return lambda name: False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return lambda name: True
    names = {p.name for p in params}
    return lambda name: name in names
