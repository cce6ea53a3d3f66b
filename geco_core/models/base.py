"""The interface every latent-variable model of the book implements.

The engine (:mod:`geco_core.train`), metrics (:mod:`geco_core.metrics`) and the notebooks treat
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


#: Values of :attr:`LatentVariableModel.posterior_kind`.
POSTERIOR_KINDS: tuple[str, ...] = ("gaussian", "context", "generic")


class LatentVariableModel(nn.Module):
    """Base class. Subclasses set ``latent_dim`` and ``conditional`` and implement the methods.

    ``posterior_kind`` declares which fast path of :mod:`geco_core.metrics` the posterior
    supports (the metrics dispatch on it, never on which methods happen to exist):

    - ``"gaussian"``: q(z|x) = N(μ(x), diag σ(x)²) and π = N(0, I); implement
      :meth:`posterior_params`. Average KL in closed form, marginal KL in the matmul
      formulation (paper §4.1.1).
    - ``"context"``: an encoder context h(x), computed once per x, from which log q(z|x) is
      cheap to evaluate for many z (the conditional RealNVP); implement
      :meth:`posterior_context` and :meth:`log_q_from_context`, and set
      ``context_broadcasts = True`` when the latter broadcasts leading dimensions
      (``log_q_from_context(z[:, None], h[None])`` → all pairs).
    - ``"generic"`` (default): only :meth:`log_q` on matched rows (e.g. ConvDRAW).
    """

    latent_dim: int
    conditional: bool = False
    posterior_kind: str = "generic"
    context_broadcasts: bool = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        raise NotImplementedError

    def prepare(self, x: Tensor, context: Tensor | None = None) -> None:
        """Data-dependent initialisation from the first training batch, called by the training
        engine before its first step (outside ``torch.compile``). Default: nothing."""

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

    # -- fast paths, declared by posterior_kind ---------------------------------------------
    def posterior_params(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mu, log_sigma)``, each ``[B, latent_dim]`` (``posterior_kind == "gaussian"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no diagonal-Gaussian posterior")

    def posterior_context(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The encoder context h(x) ``[B, H]`` (``posterior_kind == "context"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no encoder-context posterior")

    def log_q_from_context(self, z: Tensor, h: Tensor) -> Tensor:
        """log q(z|x) from the context h(x) of :meth:`posterior_context`, ``[B]``."""
        raise NotImplementedError(f"{type(self).__name__} has no encoder-context posterior")
