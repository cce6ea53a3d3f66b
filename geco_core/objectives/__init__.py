"""Training objectives: ELBO (Eq. 1), GECO (Eq. 2, Algorithm 1), hand-annealed β, fixed-β β-VAE.

Each objective is a small callable ``objective(out, x, context=..., labels=..., step=...)`` that
takes a model's :class:`~geco_core.models.base.VAEOutput` for the batch ``x`` and returns
``(loss, metrics)``: the scalar to minimise (a batch mean of per-example terms, in nats) and a
dict of detached tensors for the log (what Figure 3 plots).

One scale for β and λ
---------------------
The paper relates GECO's Lagrange multiplier to the β of a β-VAE by λ = 1/β (§3.2), for the RE
constraint C = ‖x − g(z)‖² − κ². Our RE constraint (:mod:`geco_core.constraints`) is the
*per-pixel mean* of (x − g(z))² minus κ², so every objective here reports

    λ  = the weight of the per-pixel MSE in the loss, once the loss is scaled so that the KL
         has weight 1, and β = 1/λ,

which makes GECO+RE's λ (and ``geco.beta``) and the baselines' λ directly comparable on one
axis (Figure 3's β curve). A Gaussian likelihood N(x | g(z), σ²I) over D pixels contributes
‖x − g(z)‖²/(2σ²) = D·MSE/(2σ²), hence the map used throughout (:func:`sigma_to_lambda`):

    λ = D / (2σ²),   β = 2σ² / D.

Metrics (every objective)
-------------------------
``kl`` (nats per example), ``mse`` (per pixel), ``nll`` (Gaussian negative log-likelihood in
nats per pixel at the objective's current σ; for GECO, which has no likelihood, at the batch's
σ_opt of Appendix D), ``sigma``, ``beta``, ``lambda``, ``loss``; GECO adds ``c_hat`` (the batch
constraint) and ``c_ma`` (its moving average).

References:
    Rezende & Viola, "Taming VAEs", 2018: Eq. (1), Eq. (2), §3.2, §3.4, Algorithm 1, App. D.
    Eslami et al., "Neural scene representation and rendering" (GQN), Science 2018,
    supplementary: pixel σ annealed linearly from 2.0 to 0.7 over 2·10⁵ steps.
    Higgins et al., "β-VAE", ICLR 2017.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> x = torch.rand(4, 1, 8, 8)
    >>> out = SimpleNamespace(x_mean=torch.full_like(x, 0.5), kl=torch.ones(4))
    >>> loss, m = ELBO(sigma=0.5, learn_sigma=False)(out, x)
    >>> sorted(m)[:4]
    ['beta', 'kl', 'lambda', 'loss']
"""

from __future__ import annotations

from geco_core.objectives.alternatives import ALTERNATIVE_OBJECTIVES
from geco_core.objectives.base import (
    Objective,
    gaussian_nll,
    gqn_sigma,
    negative_elbo,
    sigma_to_lambda,
)
from geco_core.objectives.paper import ELBO, PAPER_OBJECTIVES, AnnealedBeta, BetaVAE, GECOObjective

__all__ = [
    "Objective",
    "ELBO",
    "GECOObjective",
    "AnnealedBeta",
    "BetaVAE",
    "OBJECTIVES",
    "gaussian_nll",
    "negative_elbo",
    "gqn_sigma",
    "sigma_to_lambda",
]

#: Every objective by name, the one registry: the paper's (:mod:`geco_core.objectives.paper`)
#: and the later methods (:mod:`geco_core.objectives.alternatives`: σ-VAE, ControlVAE, softplus
#: and cooper Lagrangians).
OBJECTIVES: dict[str, type[Objective]] = {**PAPER_OBJECTIVES, **ALTERNATIVE_OBJECTIVES}
