"""Shared building blocks of the book's models: diagonal-Gaussian densities and conv nets.

The three latent-variable models (:mod:`~geco_core.models.conv_vae`,
:mod:`~geco_core.models.nvp`, :mod:`~geco_core.models.convdraw`) share:

- :func:`diag_normal_log_prob` and :func:`diag_normal_kl`, the two closed forms every model
  needs (written out so that tests can check them against :mod:`torch.distributions`);
- :class:`ConvEncoder` / :class:`ConvDecoder`, stride-2 conv stacks that map an image to a
  vector and back (the "convolutional decoder similar to [28]" of the paper's §4.1);
- :func:`to_float32`, where each model's networks hand their outputs to the float32 rest of
  the model under mixed precision (``TrainConfig.precision="bfloat16"``);
- :func:`check_inputs`, the argument checks every public method runs on ``x``/``context``:
  a wrong shape → ValueError; an integer tensor (uint8 pixels) or a floating dtype other than
  the model's → TypeError; values outside [0, 1] (e.g. images left in 0..255) → ValueError.

References:
    Rezende & Viola, "Taming VAEs" (2018), §4.1.
    Kingma et al., "Improved variational inference with inverse autoregressive flow" (2016),
    ref. [28] of the paper, for the conv encoder/decoder shape.

Example:
    >>> import torch
    >>> mu, log_sigma = torch.zeros(2, 3), torch.zeros(2, 3)
    >>> diag_normal_kl(mu, log_sigma).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geco_base.checks import check_float_tensor, check_unit_interval

LOG_2PI = math.log(2.0 * math.pi)


def to_float32(t: Tensor) -> Tensor:
    """``t`` cast to float32 if autocast left it in a lower precision (bfloat16, float16);
    float32 and float64 tensors are returned as they are (the same object, no copy).

    The models call it on their networks' outputs — gate pre-activations, the heads'
    (μ, log σ), the flows' shifts and log-scales, the decoder's pre-sigmoid — so that under
    ``torch.autocast(..., dtype=torch.bfloat16)`` (``TrainConfig.precision="bfloat16"``) only
    the inside of the networks computes in bfloat16 (the convolutions and matmuls, which
    autocast lowers, and the activations between them, which follow their inputs), while the
    recurrent state, the canvas, the log-determinants, the densities and the losses stay
    float32. Outside autocast it changes nothing.

    Example:
        >>> x = torch.ones(2)
        >>> to_float32(x) is x, to_float32(x.bfloat16()).dtype
        (True, torch.float32)
    """
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def diag_normal_log_prob(
    z: Tensor, mu: Tensor | None = None, log_sigma: Tensor | None = None, dims: int = 1
) -> Tensor:
    """log N(z; μ, diag σ²), summed over the last ``dims`` dimensions (nats).

    ``mu`` / ``log_sigma`` default to 0 (the standard normal prior π(z) = N(0, I) of §3) and
    broadcast against ``z``.

    Example:
        >>> round(diag_normal_log_prob(torch.zeros(1, 2)).item(), 4)  # -log(2π)
        -1.8379
    """
    if mu is not None:
        z = z - mu
    if log_sigma is None:
        lp = -0.5 * (z.square() + LOG_2PI)
    else:
        lp = -0.5 * ((z * torch.exp(-log_sigma)).square() + LOG_2PI) - log_sigma
    return lp.sum(dim=tuple(range(-dims, 0))) if dims > 0 else lp


def diag_normal_kl(
    mu_q: Tensor,
    log_sigma_q: Tensor,
    mu_p: Tensor | None = None,
    log_sigma_p: Tensor | None = None,
    dims: int = 1,
) -> Tensor:
    """Closed-form KL[N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)] for diagonal Gaussians, summed over the last
    ``dims`` dimensions. ``mu_p``/``log_sigma_p`` default to the prior N(0, I).

    KL = log σ_p − log σ_q + (σ_q² + (μ_q − μ_p)²) / (2 σ_p²) − 1/2 per coordinate.

    Example:
        >>> round(diag_normal_kl(torch.ones(1, 1), torch.zeros(1, 1)).item(), 4)
        0.5
    """
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if log_sigma_p is None:
        log_sigma_p = torch.zeros_like(log_sigma_q)
    var_ratio = torch.exp(2.0 * (log_sigma_q - log_sigma_p))
    mean_term = ((mu_q - mu_p) * torch.exp(-log_sigma_p)).square()
    kl = 0.5 * (var_ratio + mean_term - 1.0) - (log_sigma_q - log_sigma_p)
    return kl.sum(dim=tuple(range(-dims, 0))) if dims > 0 else kl


def check_shape(name: str, shape: Sequence[int] | None, ndim: int = 3) -> tuple[int, ...] | None:
    """Validate an ``image_shape``/``context_shape`` argument: ``ndim`` positive ints."""
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or any(s <= 0 for s in shape):
        raise ValueError(f"{name} must be {ndim} positive ints (C, H, W), got {shape}")
    return shape


def check_context_shape(
    image_shape: tuple[int, ...], context_shape: Sequence[int] | None
) -> tuple[int, ...] | None:
    """Validate a conditional model's ``context_shape`` against its ``image_shape``.

    The context images must be ``(C_ctx, H, W)`` with the target's H and W (they are stacked
    with, or read beside, the target). Returns the normalised shape, or None when unconditional.
    """
    context_shape = check_shape("context_shape", context_shape)
    if context_shape is not None and context_shape[1:] != tuple(image_shape[1:]):
        raise ValueError(
            f"context_shape H, W must equal image_shape H, W, got {context_shape}"
            f" vs {tuple(image_shape)}"
        )
    return context_shape


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        return p.dtype
    return None


def check_images(model: nn.Module, t: Tensor, name: str) -> None:
    """``t`` (named ``name``) must be a floating tensor of the dtype of ``model``'s parameters
    with values in [0, 1] (TypeError / ValueError otherwise). The value check is skipped while
    ``torch.compile`` traces the model (a data-dependent check would break its graph); the
    compiled training engine reads data sets that are in [0, 1] by construction."""
    check_float_tensor(t, name, images=True)
    dtype = _model_dtype(model)
    if dtype is not None and t.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {t.dtype} but the model computes in {dtype}: pass "
            f"{name}.to({dtype}) (or convert the model with .to({t.dtype}))"
        )
    if not torch.compiler.is_compiling():
        check_unit_interval(t, name)


def check_inputs(
    model: nn.Module,
    x: Tensor | None,
    context: Tensor | None,
    batch: int | None = None,
) -> None:
    """Validate ``x``/``context`` against the model (every public method of the models runs it).

    - shapes: ``[B, *model.image_shape]`` / ``[B, *model.context_shape]`` (ValueError);
    - dtype: a floating tensor of the dtype of the model's parameters (TypeError: uint8 pixels
      or float64 data for a float32 model fail here, not deep inside a convolution);
    - values: within [0, 1], the images convention of the library (ValueError: images left in
      0..255 would otherwise train silently at 255² the intended squared error). A min/max pass
      over the tensor; on an accelerator one host synchronisation per call.

    ``model`` must have ``image_shape``, ``context_shape`` and ``conditional`` attributes.
    """
    if x is not None:
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != tuple(
            model.image_shape
        ):
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, model.image_shape))}], got {got}"
            )
        check_images(model, x, "x")
        batch = x.shape[0]
    if model.conditional:
        if context is None:
            raise ValueError("context is required: this model was built with context_shape")
        if (
            not isinstance(context, Tensor)
            or context.dim() != 4
            or tuple(context.shape[1:]) != tuple(model.context_shape)
        ):
            got = list(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(
                f"context must have shape [B, {', '.join(map(str, model.context_shape))}], "
                f"got {got}"
            )
        if batch is not None and context.shape[0] != batch:
            raise ValueError(f"context has {context.shape[0]} rows, expected {batch}")
        check_images(model, context, "context")
    elif context is not None:
        raise ValueError("context must be None: this model is unconditional (no context_shape)")


def check_latents(model: nn.Module, z: Tensor, latent_dim: int) -> Tensor:
    """``z`` if it is a floating tensor ``[B, latent_dim]`` of the model's dtype."""
    if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != latent_dim:
        got = list(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must have shape [B, {latent_dim}], got {got}")
    check_float_tensor(z, "z", _model_dtype(model))
    return z


def downsampled_hw(hw: tuple[int, int], n_down: int, name: str = "image_shape") -> tuple[int, int]:
    """Spatial size after ``n_down`` stride-2 convs; H and W must be divisible by 2**n_down."""
    f = 2**n_down
    if hw[0] % f or hw[1] % f:
        raise ValueError(f"{name} H and W must be divisible by 2**{n_down}={f}, got {hw}")
    return hw[0] // f, hw[1] // f


class ConvEncoder(nn.Module):
    """Image ``[B, C, H, W]`` → vector ``[B, out_dim]``: stride-2 4×4 convs with ELU, then a
    linear layer and ELU. ``len(channels)`` halvings; H and W must be divisible by
    ``2 ** len(channels)``.

    Example:
        >>> enc = ConvEncoder(1, (28, 28), channels=(8, 16), out_dim=32)
        >>> enc(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self, in_channels: int, hw: tuple[int, int], channels: Sequence[int], out_dim: int
    ) -> None:
        super().__init__()
        h, w = downsampled_hw(tuple(hw), len(channels))
        layers: list[nn.Module] = []
        c = in_channels
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.ELU()]
            c = c_out
        layers += [nn.Flatten(), nn.Linear(c * h * w, out_dim), nn.ELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Vector ``[B, in_dim]`` → image mean ``[B, C, H, W]`` in [0, 1]: linear to a
    ``channels[-1] × H/2^k × W/2^k`` map, k transposed 4×4 stride-2 convs with ELU, a 3×3 conv
    to C channels and a sigmoid (the decoder mean g(z) of the paper).

    The conv weights are kept in channels_last (NHWC) memory, so the decoder runs in that
    layout: oneDNN's CPU transposed convs and its few-output-channel 3×3 conv run it faster —
    a whole conv VAE / VAE+NVP training step 1.11–1.12× (medians of three
    ``benchmarks/bench_speed.py`` runs: one thread, batch 32, one- and three-channel images;
    benchmarks/README.md), the same function to float rounding (tested). The encoder gains
    nothing from it (measured) and stays NCHW. Measured on CPU only.

    Example:
        >>> dec = ConvDecoder(4, 1, (28, 28), channels=(8, 16))
        >>> y = dec(torch.randn(2, 4)); y.shape, bool((y >= 0).all() and (y <= 1).all())
        (torch.Size([2, 1, 28, 28]), True)
    """

    def __init__(
        self, in_dim: int, out_channels: int, hw: tuple[int, int], channels: Sequence[int]
    ) -> None:
        super().__init__()
        h, w = downsampled_hw(tuple(hw), len(channels))
        rev = list(channels)[::-1]
        layers: list[nn.Module] = [
            nn.Linear(in_dim, rev[0] * h * w),
            nn.ELU(),
            nn.Unflatten(1, (rev[0], h, w)),
        ]
        c = rev[0]
        for c_out in rev[1:] + [rev[-1]]:
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.ELU()]
            c = c_out
        layers += [nn.Conv2d(c, out_channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)  # the decoder's layout (see above)

    def forward(self, z: Tensor) -> Tensor:
        # the sigmoid in float32 under mixed precision; returned in the standard
        # (NCHW-contiguous) layout: callers may .view() it
        return self.net[-1](to_float32(self.net[:-1](z))).contiguous()
