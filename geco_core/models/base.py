"""The interface every latent-variable model of the book implements.

Objectives (:mod:`geco_core.train`), metrics (:mod:`geco_core.metrics`) and the notebooks treat
the conv VAE, the VAE + conditional RealNVP posterior and ConvDRAW alike through this surface.

Conventions
-----------
- Images are float tensors ``[B, C, H, W]`` with values in ``[0, 1]``; ``context`` (conditional
  models only) is a tensor ``[B, C_ctx, H, W]`` or ``None``.
- ``z`` is flat, ``[B, latent_dim]`` (ConvDRAW flattens its T per-step latents).
- Log-densities are summed over latent dimensions and returned per example, shape ``[B]``,
  in nats. The prior is π(z) = N(0, I) (paper §3) unless a model says otherwise (ConvDRAW's
  prior is learned and conditioned on the decoder state).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class VAEOutput:
    """What one forward pass ``model(x, context)`` returns (one reparameterised sample per x).

    Attributes:
        x_mean: g(z), the decoder mean, same shape as ``x``.
        z: the reparameterised posterior sample, ``[B, latent_dim]``.
        kl: per-example KL[q(z|x) ‖ π(z)], ``[B]``: closed form where it exists, otherwise the
            single-sample Monte Carlo estimate ``log_q - log_prior`` (unbiased, differentiable).
        log_q: log q(z|x) of the sample, ``[B]``.
        log_prior: log π(z) of the sample, ``[B]``.
    """

    x_mean: Tensor
    z: Tensor
    kl: Tensor
    log_q: Tensor
    log_prior: Tensor


class LatentVariableModel(nn.Module):
    """Base class. Subclasses set ``latent_dim`` and ``conditional`` and implement the methods.

    Optional fast paths used by :mod:`geco_core.metrics` (implement when they exist):

    - ``posterior_params(x, context=None) -> (mu, log_sigma)``, each ``[B, latent_dim]``, for
      diagonal-Gaussian posteriors (closed-form marginal KL in a matmul formulation).
    - ``posterior_context(x, context=None) -> h`` ``[B, H]`` and
      ``log_q_from_context(z, h) -> [B]``, for posteriors whose encoder network runs once per x
      and whose density is cheap to evaluate for many z (the conditional RealNVP).
    """

    latent_dim: int
    conditional: bool = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        raise NotImplementedError

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """g(z): decoder mean for latent ``z`` ``[B, latent_dim]``."""
        raise NotImplementedError

    def log_q(self, z: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log q(z|x) for matched pairs (row b of z with row b of x), ``[B]``."""
        raise NotImplementedError

    def sample_posterior(
        self, x: Tensor, n: int = 1, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``n`` reparameterised samples per x.

        Returns ``z`` ``[n, B, latent_dim]`` and log q(z|x) ``[n, B]``.
        """
        raise NotImplementedError

    def log_prior(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """log π(z), ``[B]``: N(0, I) by default; models with a learned prior override it."""
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Decoder means g(z) of ``n`` prior samples (``context`` has ``n`` rows if given)."""
        raise NotImplementedError
