"""Gaussian conv VAE: diagonal-Gaussian posterior, N(0, I) prior, conv decoder with mean in [0, 1].

The simplest model of the book and the reference point of §3: q(z|x) = N(μ(x), diag σ(x)²),
π(z) = N(0, I), decoder mean g(z) ∈ [0, 1]. The KL term is in closed form, and the posterior
parameters are exposed through the ``posterior_params`` fast path for the marginal-KL metric.

Conditional use (MNIST-sum, -sum-hard, -rotate): with ``context_shape`` the context image is
concatenated to x along channels at the encoder input (so H and W must match), and a context
embedding (a small conv net) is concatenated to z at the decoder input.

References:
    Kingma & Welling, "Auto-encoding variational Bayes" (2014), ref. [1] of the paper.
    Rezende & Viola, "Taming VAEs" (2018), §3 (π(z) = N(0, I)) and §4.1.

Example:
    >>> import torch
    >>> m = ConvVAE((1, 28, 28), latent_dim=4, channels=(8, 16), hidden=32)
    >>> out = m(torch.rand(3, 1, 28, 28))
    >>> out.x_mean.shape, out.z.shape, out.kl.shape
    (torch.Size([3, 1, 28, 28]), torch.Size([3, 4]), torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geco_base.checks import check_int
from geco_core.models.base import LatentVariableModel, VAEOutput
from geco_core.models.layers import (
    ConvDecoder,
    ConvEncoder,
    check_context_shape,
    check_inputs,
    check_latents,
    check_shape,
    diag_normal_kl,
    diag_normal_log_prob,
    to_float32,
)


class ConvVAE(LatentVariableModel):
    """Conv VAE with a diagonal-Gaussian posterior and a standard-normal prior.

    Args:
        image_shape: (C, H, W) of x; H and W divisible by ``2 ** len(channels)``.
        latent_dim: dimension of z.
        context_shape: (C_ctx, H, W) of the context image for a conditional model, else None.
        channels: conv channels of the encoder (reversed in the decoder).
        hidden: width of the encoder's last linear layer.
        context_embed: size of the context embedding fed to the decoder (conditional only).

    Example:
        >>> m = ConvVAE((1, 28, 28), latent_dim=2, context_shape=(2, 28, 28), channels=(8, 8))
        >>> m.sample(5, context=torch.rand(5, 2, 28, 28)).shape
        torch.Size([5, 1, 28, 28])
    """

    posterior_kind = "gaussian"  # posterior_params: the closed-form marginal-KL path

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        context_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        context_embed: int = 64,
    ) -> None:
        super().__init__()
        self.image_shape = check_shape("image_shape", image_shape)
        self.context_shape = check_context_shape(self.image_shape, context_shape)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.conditional = self.context_shape is not None
        c, h, w = self.image_shape
        c_ctx = 0
        if self.conditional:
            c_ctx = self.context_shape[0]
            self.context_net = ConvEncoder(c_ctx, (h, w), channels, context_embed)
        self.encoder = ConvEncoder(c + c_ctx, (h, w), channels, hidden)
        self.head = nn.Linear(hidden, 2 * self.latent_dim)
        dec_in = self.latent_dim + (context_embed if self.conditional else 0)
        self.decoder = ConvDecoder(dec_in, c, (h, w), channels)

    def posterior_params(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, log σ) of q(z|x), each ``[B, latent_dim]`` (fast path for the marginal KL)."""
        check_inputs(self, x, context)
        inp = x if context is None else torch.cat([x, context], dim=1)
        mu, log_sigma = to_float32(self.head(self.encoder(inp))).chunk(2, dim=-1)
        return mu, log_sigma

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        check_latents(self, z, self.latent_dim)
        check_inputs(self, None, context, batch=z.shape[0])
        if context is not None:
            z = torch.cat([z, self.context_net(context)], dim=-1)
        return self.decoder(z)

    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        mu, log_sigma = self.posterior_params(x, context)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu)
        log_q = diag_normal_log_prob(z, mu, log_sigma)
        log_prior = diag_normal_log_prob(z)
        kl = diag_normal_kl(mu, log_sigma)
        return VAEOutput(self.decode(z, context), z, kl, log_q, log_prior)

    def log_q(self, z: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        mu, log_sigma = self.posterior_params(x, context)
        return diag_normal_log_prob(z, mu, log_sigma)

    def sample_posterior(
        self, x: Tensor, n: int = 1, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        n = check_int(n, "n")
        mu, log_sigma = self.posterior_params(x, context)
        eps = torch.randn((n, *mu.shape), dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(log_sigma) * eps
        return z, diag_normal_log_prob(z, mu, log_sigma)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        n = check_int(n, "n")
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, dtype=p.dtype, device=p.device)
        return self.decode(z, context)
