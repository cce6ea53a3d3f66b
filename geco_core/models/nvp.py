"""VAE with a fully connected conditional RealNVP posterior (paper §4.1, Table 2, Fig. 8).

The encoder is a conv net that maps x (and, for conditional data, the context image) to a
context vector h(x) ``[B, context_dim]``. The posterior is a conditional normalizing flow:

    u ~ N(μ(h), diag σ(h)²),   z = f_K ∘ … ∘ f_1(u; h),

where each f_k is an affine coupling layer (Dinh et al. 2016) whose shift and log-scale are
an MLP of the untouched half of the coordinates *and* h; consecutive layers alternate masks.
The density of any z under any context h follows from the exact inverse and the
change-of-variables formula (:func:`VAENVP.log_q_from_context`):

    log q(z|x) = log N(f⁻¹(z; h); μ(h), σ(h)²) + log |det ∂f⁻¹/∂z|.

There is no closed-form KL; :class:`VAENVP` returns the single-sample Monte Carlo estimate
log q(z|x) − log π(z) with π = N(0, I) (unbiased and reparameterised).

Why a hand-written coupling layer rather than :mod:`zuko` (checked against zuko 1.6):

- The marginal-KL estimator of Table 2 evaluates log q(z_j | x_i) for *all* (i, j) pairs. Here
  the first layer of every conditioner is split, ``W_z z_a + (W_h h + b)``, so the h-part is
  computed once per x and broadcast over the z's: ``log_q_from_context(z[:, None], h[None])``
  returns the ``[N, M]`` matrix without materialising ``[N·M, dim(h)]`` inputs.
  ``zuko.flows.GeneralCouplingTransform.meta`` concatenates ``(x_a, c)`` after broadcasting, so
  every pair pays the full h-projection (dim(h) = 256 dominates the first layer).
- zuko's affine soft-clip is fine — ``MonotonicAffineTransform`` maps the raw scale a to
  ``a / (1 + |a / log(slope)|)``, a symmetric bound of ±6.9 nats for the default slope 1e-3, so
  it can expand as well as contract (unlike nflows' default ``sigmoid(a + 2)`` scale, which
  only contracts). We use the same rational soft-clip (:func:`soft_clip_log_scale`) with a
  configurable bound.
- The inverse pass, the log-det bookkeeping and the alternating masks are each a few lines,
  and are part of what the book explains.

References:
    Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP" (2016), ref. [58].
    Rezende & Viola, "Taming VAEs" (2018), §4.1 ("a fully connected conditional NVP model as the
    encoder density"), Table 2 (marginal KL), Appendix E.1 / Fig. 8 (2-D latent, Micro-MNIST).

Example:
    >>> import torch
    >>> m = VAENVP((1, 28, 28), latent_dim=2, channels=(8, 8), context_dim=16, flow_hidden=16)
    >>> x = torch.rand(3, 1, 28, 28)
    >>> out = m(x)
    >>> h = m.posterior_context(x)
    >>> torch.allclose(m.log_q_from_context(out.z, h), out.log_q, atol=1e-5)
    True
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
    diag_normal_log_prob,
    to_float32,
)


def soft_clip_log_scale(a: Tensor, bound: float) -> Tensor:
    """Rational soft-clip of a raw log-scale to (−bound, bound): ``a / (1 + |a| / bound)``.

    Symmetric, so a coupling layer can expand as well as contract; identity near 0. The same
    form as zuko's ``MonotonicAffineTransform`` (there ``bound = −log(slope)``).

    Example:
        >>> soft_clip_log_scale(torch.tensor([0.0, 1e6, -1e6]), 3.0).round().tolist()
        [0.0, 3.0, -3.0]
    """
    return a / (1.0 + a.abs() / bound)


class ConditionalAffineCoupling(nn.Module):
    """One conditional affine coupling layer y = f(z; h) (affine coupling, Dinh et al. 2016).

    Coordinates with ``mask=True`` (z_a) pass through unchanged and, with h, parameterise the
    others: ``y_b = z_b · exp(s(z_a, h)) + t(z_a, h)``, ``log |det ∂y/∂z| = Σ s``. The conditioner's
    first layer is split into ``W_z z_a`` and ``context_term(h) = W_h h + b`` so that leading
    dimensions of z and h broadcast (all-pairs evaluation without copying h). The last layer is
    zero-initialised, so the layer starts as the identity.

    Example:
        >>> layer = ConditionalAffineCoupling(3, 4, 8, torch.tensor([True, False, True]))
        >>> z, h = torch.randn(5, 3), torch.randn(5, 4)
        >>> y, ld = layer(z, layer.context_term(h))
        >>> z2, ld_inv = layer.inverse(y, layer.context_term(h))
        >>> torch.allclose(z, z2), torch.allclose(ld, -ld_inv)
        (True, True)
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        hidden: int,
        mask: Tensor,
        log_scale_bound: float = 4.0,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool, device="cpu")
        if mask.shape != (dim,) or mask.all() or not mask.any():
            raise ValueError(f"mask must be a [dim] bool vector with both values, got {mask}")
        idx_a, idx_b = mask.nonzero().squeeze(-1), (~mask).nonzero().squeeze(-1)
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)
        # position of each original coordinate inside cat([z_a, z_b])
        self.register_buffer("inv_perm", torch.argsort(torch.cat([idx_a, idx_b])), persistent=False)
        self.log_scale_bound = float(log_scale_bound)
        n_a, n_b = len(idx_a), len(idx_b)
        self.lin_z = nn.Linear(n_a, hidden, bias=False)
        self.lin_h = nn.Linear(context_dim, hidden)
        self.mlp = nn.Sequential(nn.ELU(), nn.Linear(hidden, hidden), nn.ELU())
        self.out = nn.Linear(hidden, 2 * n_b)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def context_term(self, h: Tensor) -> Tensor:
        """W_h h + b, the conditioner's context contribution (compute once per h)."""
        return self.lin_h(h)

    def _shift_log_scale(self, z_a: Tensor, hc: Tensor) -> tuple[Tensor, Tensor]:
        a = self.lin_z(z_a) + hc
        if torch.is_grad_enabled():
            a = self.mlp(a)
        else:  # evaluation over many pairs: the same values, without two [..., hidden] copies
            a = self.mlp[1](nn.functional.elu(a, inplace=True))
            a = nn.functional.elu(a, inplace=True)
        shift, raw = to_float32(self.out(a)).chunk(2, dim=-1)
        return shift, soft_clip_log_scale(raw, self.log_scale_bound)

    def _merge(self, z_a: Tensor, y_b: Tensor) -> Tensor:
        z_a = z_a.expand(*y_b.shape[:-1], z_a.shape[-1])
        return torch.cat([z_a, y_b], dim=-1)[..., self.inv_perm]

    def forward(self, z: Tensor, hc: Tensor) -> tuple[Tensor, Tensor]:
        """y = f(z; h) and log |det ∂y/∂z|; ``hc = context_term(h)``."""
        z_a, z_b = z[..., self.idx_a], z[..., self.idx_b]
        shift, log_scale = self._shift_log_scale(z_a, hc)
        y_b = z_b * torch.exp(log_scale) + shift
        return self._merge(z_a, y_b), log_scale.sum(-1)

    def inverse(self, y: Tensor, hc: Tensor) -> tuple[Tensor, Tensor]:
        """z = f⁻¹(y; h) and log |det ∂z/∂y| (= −log |det ∂y/∂z|)."""
        y_a, y_b = y[..., self.idx_a], y[..., self.idx_b]
        shift, log_scale = self._shift_log_scale(y_a, hc)
        z_b = (y_b - shift) * torch.exp(-log_scale)
        return self._merge(y_a, z_b), -log_scale.sum(-1)


class VAENVP(LatentVariableModel):
    """VAE whose posterior is a conditional RealNVP flow on a context-dependent Gaussian base.

    Args:
        image_shape: (C, H, W) of x; H and W divisible by ``2 ** len(channels)``.
        latent_dim: dimension of z, >= 2 (2 for Micro-MNIST, Fig. 8).
        context_shape: (C_ctx, H, W) of the context image for a conditional model, else None.
        channels: conv channels of the encoder (reversed in the decoder).
        context_dim: size of the encoder output h(x) that conditions the flow.
        n_flows: number of coupling layers K (masks alternate).
        flow_hidden: width of each coupling conditioner MLP.
        log_scale_bound: soft bound on each layer's log-scale, see :func:`soft_clip_log_scale`.
        context_embed: size of the context embedding fed to the decoder (conditional only).

    Example:
        >>> m = VAENVP((1, 28, 28), latent_dim=2, channels=(8, 8), context_dim=16, n_flows=2)
        >>> z, log_q = m.sample_posterior(torch.rand(4, 1, 28, 28), n=10)
        >>> z.shape, log_q.shape
        (torch.Size([10, 4, 2]), torch.Size([10, 4]))
    """

    posterior_kind = "context"  # h(x) once per x, then the inverse flow for many z
    context_broadcasts = True  # log_q_from_context(z[:, None], h[None]) gives all pairs

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        context_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (32, 64),
        context_dim: int = 256,
        n_flows: int = 4,
        flow_hidden: int = 128,
        log_scale_bound: float = 4.0,
        context_embed: int = 64,
    ) -> None:
        super().__init__()
        self.image_shape = check_shape("image_shape", image_shape)
        self.context_shape = check_context_shape(self.image_shape, context_shape)
        if latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for coupling layers, got {latent_dim}")
        if n_flows < 1:
            raise ValueError(f"n_flows must be >= 1, got {n_flows}")
        if log_scale_bound <= 0:
            raise ValueError(f"log_scale_bound must be > 0, got {log_scale_bound}")
        self.latent_dim = int(latent_dim)
        self.context_dim = int(context_dim)
        self.conditional = self.context_shape is not None
        c, h, w = self.image_shape
        c_ctx = 0
        if self.conditional:
            c_ctx = self.context_shape[0]
            self.context_net = ConvEncoder(c_ctx, (h, w), channels, context_embed)
        self.encoder = ConvEncoder(c + c_ctx, (h, w), channels, self.context_dim)
        self.base = nn.Linear(self.context_dim, 2 * self.latent_dim)
        # alternating masks, built on the CPU (a structure, not a weight: also under a meta
        # device context, where build_model counts parameters)
        self.flows = nn.ModuleList(
            ConditionalAffineCoupling(
                self.latent_dim, self.context_dim, flow_hidden,
                torch.tensor([i % 2 == k % 2 for i in range(self.latent_dim)], device="cpu"),
                log_scale_bound,
            )
            for k in range(n_flows)
        )
        dec_in = self.latent_dim + (context_embed if self.conditional else 0)
        self.decoder = ConvDecoder(dec_in, c, (h, w), channels)

    # -- posterior -------------------------------------------------------------------------
    def posterior_context(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """h(x) ``[B, context_dim]``: the encoder output that conditions the flow."""
        check_inputs(self, x, context)
        inp = x if context is None else torch.cat([x, context], dim=1)
        return self.encoder(inp)

    def base_params(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(μ(h), log σ(h)) of the Gaussian base density, each ``[..., latent_dim]``."""
        mu, log_sigma = to_float32(self.base(h)).chunk(2, dim=-1)
        return mu, log_sigma

    def flow_forward(self, u: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z = f_K ∘ … ∘ f_1(u; h) and Σ_k log |det ∂f_k| (leading dims of u, h broadcast)."""
        logdet = u.new_zeros(())
        for layer in self.flows:
            u, ld = layer(u, layer.context_term(h))
            logdet = logdet + ld
        return u, logdet

    def flow_inverse(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """u = f⁻¹(z; h) and log |det ∂f⁻¹/∂z| (leading dims of z, h broadcast)."""
        logdet = z.new_zeros(())
        for layer in reversed(self.flows):
            z, ld = layer.inverse(z, layer.context_term(h))
            logdet = logdet + ld
        return z, logdet

    def log_q_from_context(self, z: Tensor, h: Tensor) -> Tensor:
        """log q(z | h) for any z ``[..., latent_dim]`` and h ``[..., context_dim]`` whose
        leading dimensions broadcast: matched rows (``[B]``) or, e.g., all pairs
        ``log_q_from_context(z[:, None], h[None])`` → ``[N, M]``. Inverse pass + log-det.
        """
        if z.shape[-1] != self.latent_dim or h.shape[-1] != self.context_dim:
            raise ValueError(
                f"z must be [..., {self.latent_dim}] and h [..., {self.context_dim}], got "
                f"{list(z.shape)} and {list(h.shape)}"
            )
        u, logdet = self.flow_inverse(z, h)
        mu, log_sigma = self.base_params(h)
        return diag_normal_log_prob(u, mu, log_sigma) + logdet

    def rsample_from_context(self, h: Tensor, n: int | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised z ~ q(z|h) with its log q: ``[B, D]`` / ``[B]``, or ``[n, B, D]`` /
        ``[n, B]`` when ``n`` is given. Forward pass + log-det (no inverse needed)."""
        mu, log_sigma = self.base_params(h)
        shape = mu.shape if n is None else (n, *mu.shape)
        eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)
        u = mu + torch.exp(log_sigma) * eps
        z, logdet = self.flow_forward(u, h)
        return z, diag_normal_log_prob(u, mu, log_sigma) - logdet

    # -- LatentVariableModel interface -----------------------------------------------------
    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        check_latents(self, z, self.latent_dim)
        check_inputs(self, None, context, batch=z.shape[0])
        if context is not None:
            z = torch.cat([z, self.context_net(context)], dim=-1)
        return self.decoder(z)

    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        z, log_q = self.rsample_from_context(self.posterior_context(x, context))
        log_prior = diag_normal_log_prob(z)
        kl = log_q - log_prior  # single-sample Monte Carlo KL[q(z|x) ‖ π(z)]
        return VAEOutput(self.decode(z, context), z, kl, log_q, log_prior)

    def log_q(self, z: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.log_q_from_context(z, self.posterior_context(x, context))

    def sample_posterior(
        self, x: Tensor, n: int = 1, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        n = check_int(n, "n")
        return self.rsample_from_context(self.posterior_context(x, context), n=n)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        n = check_int(n, "n")
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, dtype=p.dtype, device=p.device)
        return self.decode(z, context)
