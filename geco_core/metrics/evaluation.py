"""The paper's evaluation metrics of a trained model: σ_opt, NLL, average and marginal KL.

- :func:`sigma_opt` — Eq. 26 (Appendix D; Eq. 3 of the workshop paper): the optimal global
  per-pixel standard deviation recomputed after training.
- :func:`nll_per_pixel` — the β-independent negative reconstruction log-likelihood of
  Appendix D with the "quantized normal" likelihood of Rosca et al. (2018), in nats per pixel
  and bits per dimension (Fig. 4's x-axis).
- :func:`average_kl` — (1/n) Σᵢ KL[q(z|xᵢ) ‖ π(z)] (§4.1.1, Fig. 5) with a standard error.
- :func:`marginal_kl` — KL[q(z) ‖ π(z)] with q(z) = (1/N) Σᵢ q(z|xᵢ) (§4.1.1, Table 2) and the
  mutual information I(n; z) = avgKL − marginal KL.

The tensor-level estimators behind them are in :mod:`geco_core.metrics.estimators` and
:mod:`geco_core.metrics.marginal`. Which fast path a model gets is what its
:attr:`~geco_core.models.base.LatentVariableModel.posterior_kind` declares.

Every function takes a :class:`~geco_core.models.base.LatentVariableModel` and data tensors
``x`` ``[N, C, H, W]`` in [0, 1] (plus ``context`` for conditional models), runs the model in
eval mode without gradients (restoring its mode afterwards), and is deterministic given its
``seed`` (the global RNG is forked, not disturbed).

References:
    Rezende & Viola, "Taming VAEs", 2018: §4.1.1, Table 2, Appendix D (Eq. 26).
    Rezende & Viola, "Generalized ELBO with constrained optimization, GECO", NeurIPS Bayesian
    Deep Learning workshop 2018, Eq. 3.
    Rosca, Lakshminarayanan & Mohamed, "Distribution matching in variational inference", 2018
    (ref. [28]): the quantized normal.

Example:
    >>> from geco_core.models import build_model
    >>> m = build_model("conv_vae", (1, 28, 28), latent_dim=4, channels=(4, 8), hidden=16)
    >>> x = torch.rand(20, 1, 28, 28)
    >>> s = sigma_opt(m, x, n=10)
    >>> nll = nll_per_pixel(m, x, s)
    >>> abs(nll.bits_per_dim - nll.nats_per_pixel / math.log(2)) < 1e-12
    True
    >>> r = marginal_kl(m, x, S=200, progress=False)
    >>> r.n, r.S, r.mutual_info_in_range()
    (20, 200, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geco_base.checks import check_choice, check_int
from geco_core.metrics.estimators import (
    gaussian_kl,
    mean_stderr,
    optimal_sigma,
    quantized_normal_log_prob,
)
from geco_core.metrics.marginal import (
    SAMPLINGS,
    MarginalKL,
    draw_sources,
    gaussian_log_q_pairs_fn,
    marginal_kl_from_log_q,
    marginal_kl_gaussian,
    marginal_kl_subsampled_from_log_q,
)
from geco_core.models.base import LatentVariableModel

__all__ = [
    "METHODS",
    "AverageKL",
    "QuantizedNLL",
    "average_kl",
    "log_q_pairs_fn",
    "marginal_kl",
    "nll_per_pixel",
    "sigma_opt",
]

METHODS = ("auto", "gaussian", "context", "pairs", "subsampled")
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------
@dataclass
class QuantizedNLL:
    """Negative reconstruction log-likelihood under the quantized normal (Appendix D).

    Attributes:
        nats_per_pixel: E_q[−log p(x|z)] / D, with D = C·H·W pixel values (channels count as
            dimensions), averaged over the n data points.
        bits_per_dim: the same in bits: ``nats_per_pixel / ln 2``. The quantized normal is a
            probability mass on the 256 levels, so no log(256) offset is needed to compare
            with discrete models.
        stderr: standard error of ``nats_per_pixel`` over the data points.
        n: number of data points; n_samples: z samples per point; sigma: the σ used.
    """

    nats_per_pixel: float
    bits_per_dim: float
    stderr: float
    n: int
    n_samples: int
    sigma: float


@dataclass
class AverageKL:
    """Average KL (1/n) Σᵢ KL[q(z|xᵢ) ‖ π(z)] in nats (§4.1.1, Fig. 5).

    Attributes:
        value: the average KL.
        stderr: standard error over the n data points (including Monte Carlo noise when
            ``method == "monte_carlo"``).
        n: number of data points; n_samples: samples per point (1 for the closed form).
        method: ``"closed_form"`` (diagonal Gaussian, π = N(0, I)) or ``"monte_carlo"``.
    """

    value: float
    stderr: float
    n: int
    n_samples: int
    method: str


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _evaluating(model: LatentVariableModel, seed: int, device: torch.device) -> Iterator[None]:
    """Eval mode, no gradients and a forked global RNG seeded with ``seed``; all restored."""
    was_training = model.training
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            model.eval()
            yield
    finally:
        model.train(was_training)


def _check_data(model: LatentVariableModel, x: Tensor, context: Tensor | None) -> int:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected a non-empty batch [N, C, H, W], got {shape}")
    if context is not None and context.shape[0] != x.shape[0]:
        raise ValueError(f"context: expected {x.shape[0]} rows like x, got {context.shape[0]}")
    if model.conditional and context is None:
        raise ValueError("context: the model is conditional, pass the context images")
    return x.shape[0]


def _rows(t: Tensor | None, idx: Tensor | slice) -> Tensor | None:
    return None if t is None else t[idx]


# --------------------------------------------------------------------------------------------
# σ_opt — Eq. 26 (Appendix D), Eq. 3 of the workshop paper
# --------------------------------------------------------------------------------------------
def sigma_opt(
    model: LatentVariableModel,
    x: Tensor,
    context: Tensor | None = None,
    n: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> float:
    """σ_opt (Eq. 26, Appendix D) of a trained model on a random subset of ``n`` points.

    The paper recomputes σ_opt "on a random subset of 1000 training datapoints" keeping all
    other parameters fixed; one z ~ q(z|xᵢ) per point (``model(x).x_mean`` = g(z)). The subset
    is the first ``n`` entries of ``torch.randperm(len(x))`` drawn from a generator seeded with
    ``seed`` (all points when ``n ≥ len(x)``); the samples z are seeded by ``seed`` too.

    Returns:
        σ_opt per pixel (same units as x, i.e. on the [0, 1] scale).

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("conv_vae", (1, 28, 28), latent_dim=2, channels=(4, 4), hidden=8)
        >>> 0 < sigma_opt(m, torch.rand(8, 1, 28, 28), n=4) < 1
        True
    """
    N = _check_data(model, x, context)
    check_int(n, "n")
    check_int(batch_size, "batch_size")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(N, generator=g)[: min(n, N)].sort().values.to(x.device)
    xs, cs = x[idx], _rows(context, idx)
    means = []
    with _evaluating(model, seed, x.device):
        for b in range(0, len(xs), batch_size):
            means.append(model(xs[b : b + batch_size], _rows(cs, slice(b, b + batch_size))).x_mean)
    return optimal_sigma(xs, torch.cat(means))


# --------------------------------------------------------------------------------------------
# Quantized-normal NLL — Appendix D, Rosca et al. (2018)
# --------------------------------------------------------------------------------------------
def nll_per_pixel(
    model: LatentVariableModel,
    x: Tensor,
    sigma: float,
    context: Tensor | None = None,
    n_samples: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    n_bins: int = 256,
) -> QuantizedNLL:
    """β-independent negative reconstruction log-likelihood per pixel (Appendix D, Fig. 4).

    E_{z~q(z|x)}[−log p(x|z)] with p(x|z) the quantized normal N(g(z), σ²) on ``n_bins``
    levels (:func:`quantized_normal_log_prob`), divided by the D = C·H·W pixel values of an
    image and averaged over the data points; ``sigma`` is normally :func:`sigma_opt`.

    Units: nats per pixel (``nats_per_pixel``) and bits per dimension (``bits_per_dim``,
    nats / ln 2). This is the distortion axis of the information plane, not a bound on
    −log p(x) (that would add the KL).

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("conv_vae", (1, 28, 28), latent_dim=2, channels=(4, 4), hidden=8)
        >>> r = nll_per_pixel(m, torch.rand(6, 1, 28, 28), sigma=0.3)
        >>> r.n, r.nats_per_pixel > 0
        (6, True)
    """
    N = _check_data(model, x, context)
    check_int(n_samples, "n_samples")
    check_int(batch_size, "batch_size")
    per_point = torch.zeros(N, dtype=torch.float64)
    D = x[0].numel()
    with _evaluating(model, seed, x.device):
        for _ in range(n_samples):
            for b in range(0, N, batch_size):
                xb = x[b : b + batch_size]
                x_mean = model(xb, _rows(context, slice(b, b + batch_size))).x_mean
                lp = quantized_normal_log_prob(xb, x_mean.double(), sigma, n_bins)
                per_point[b : b + len(xb)] += -lp.reshape(len(xb), -1).sum(1).cpu() / D
    value, stderr = mean_stderr(per_point / n_samples)
    return QuantizedNLL(value, value / _LN2, stderr, N, n_samples, float(sigma))


# --------------------------------------------------------------------------------------------
# Average KL — §4.1.1, Fig. 5
# --------------------------------------------------------------------------------------------
def average_kl(
    model: LatentVariableModel,
    x: Tensor,
    context: Tensor | None = None,
    n_samples: int = 16,
    seed: int = 0,
    batch_size: int = 256,
) -> AverageKL:
    """Average KL (1/n) Σᵢ KL[q(z|xᵢ) ‖ π(z)] (paper §4.1.1, Fig. 5) with a standard error.

    Closed form (:func:`~geco_core.metrics.estimators.gaussian_kl`, π = N(0, I)) when the
    model declares diagonal-Gaussian posteriors (``posterior_kind == "gaussian"``, through
    ``posterior_params``); otherwise Monte Carlo: the mean over
    ``n_samples`` draws of the model's own per-example KL estimate (``model(x).kl`` =
    log q − log π for the VAE + NVP, the per-step closed-form KLs along a sampled trajectory
    for ConvDRAW). The standard error is over data points.

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("conv_vae", (1, 28, 28), latent_dim=2, channels=(4, 4), hidden=8)
        >>> average_kl(m, torch.rand(5, 1, 28, 28)).method
        'closed_form'
    """
    N = _check_data(model, x, context)
    check_int(n_samples, "n_samples")
    check_int(batch_size, "batch_size")
    per_point = torch.zeros(N, dtype=torch.float64)
    closed = model.posterior_kind == "gaussian"
    with _evaluating(model, seed, x.device):
        for b in range(0, N, batch_size):
            xb, cb = x[b : b + batch_size], _rows(context, slice(b, b + batch_size))
            if closed:
                mu, log_sigma = model.posterior_params(xb, cb)
                per_point[b : b + len(xb)] = gaussian_kl(mu.double(), log_sigma.double()).cpu()
            else:
                for _ in range(n_samples):
                    per_point[b : b + len(xb)] += model(xb, cb).kl.double().cpu() / n_samples
    value, stderr = mean_stderr(per_point)
    if closed:
        return AverageKL(value, stderr, N, 1, "closed_form")
    return AverageKL(value, stderr, N, n_samples, "monte_carlo")


# --------------------------------------------------------------------------------------------
# Marginal KL — §4.1.1, Table 2
# --------------------------------------------------------------------------------------------
def _draw_model_samples(
    model: LatentVariableModel,
    x: Tensor,
    context: Tensor | None,
    src: Tensor,
    batch_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """z_s ~ q(z|x_{src_s}) through ``model.forward``: (z, log q(z_s|x_{n_s}), log π(z_s))."""
    zs, lqs, lps = [], [], []
    for b in range(0, len(src), batch_size):
        ib = src[b : b + batch_size]
        out = model(x[ib], _rows(context, ib))
        zs.append(out.z)
        lqs.append(out.log_q)
        lps.append(out.log_prior)
    return torch.cat(zs), torch.cat(lqs), torch.cat(lps)


def _context_pairs_fn(
    model: LatentVariableModel, x: Tensor, context: Tensor | None, batch_size: int
) -> Callable[[Tensor, int, int], Tensor]:
    """log q(z_s|x_i) blocks from the encoder context h(x_i), computed once per x_i."""
    N = x.shape[0]
    H = torch.cat(
        [
            model.posterior_context(x[b : b + batch_size], _rows(context, slice(b, b + batch_size)))
            for b in range(0, N, batch_size)
        ]
    )
    # Models whose log_q_from_context broadcasts leading dims (VAENVP: context_broadcasts) get
    # all pairs of a block as z[:, None] × h[None]; others get the pairs repeated into rows.
    broadcast = model.context_broadcasts

    def fn(z: Tensor, i0: int, i1: int) -> Tensor:
        h = H[i0:i1]
        if broadcast:
            return model.log_q_from_context(z[:, None, :], h[None]).double()
        cs, cn = z.shape[0], h.shape[0]
        zz = z.repeat_interleave(cn, dim=0)
        hh = h.repeat(cs, *([1] * (h.dim() - 1)))
        return model.log_q_from_context(zz, hh).reshape(cs, cn).double()

    return fn


def _pairs_fn(
    model: LatentVariableModel, x: Tensor, context: Tensor | None
) -> Callable[[Tensor, int, int], Tensor]:
    """log q(z_s|x_i) blocks through ``model.log_q`` on matched rows (any model, e.g. ConvDRAW)."""

    def fn(z: Tensor, i0: int, i1: int) -> Tensor:
        cs, cn = z.shape[0], i1 - i0
        zz = z.repeat_interleave(cn, dim=0)
        xx = x[i0:i1].repeat(cs, *([1] * (x.dim() - 1)))
        cc = None
        if context is not None:
            cc = context[i0:i1].repeat(cs, *([1] * (context.dim() - 1)))
        return model.log_q(zz, xx, cc).reshape(cs, cn).double()

    return fn


def log_q_pairs_fn(
    model: LatentVariableModel, x: Tensor, context: Tensor | None = None, batch_size: int = 256
) -> Callable[[Tensor, int, int], Tensor]:
    """The block function ``(z [cs, d], i0, i1) -> [cs, i1 - i0]`` of log q(z_s|xᵢ) for a model
    and its data points, by the model's ``posterior_kind``: the closed-form diagonal Gaussian
    (``"gaussian"``), the encoder context h(xᵢ) computed once per point and the inverse flow per
    pair (``"context"``), else ``model.log_q`` on matched rows (any model). Call it under
    ``torch.no_grad()`` with the model in eval mode.

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("conv_vae", (1, 28, 28), latent_dim=2).eval()
        >>> x = torch.rand(3, 1, 28, 28)
        >>> with torch.no_grad():
        ...     fn = log_q_pairs_fn(m, x)
        ...     z = m.sample_posterior(x, n=1)[0][0]
        ...     fn(z, 0, 3).shape
        torch.Size([3, 3])
    """
    N = _check_data(model, x, context)
    check_int(batch_size, "batch_size")
    kind = model.posterior_kind
    if kind == "gaussian":
        mus, lss = [], []
        for b in range(0, N, batch_size):
            mu, ls = model.posterior_params(x[b : b + batch_size],
                                            _rows(context, slice(b, b + batch_size)))
            mus.append(mu.double())
            lss.append(ls.double())
        return gaussian_log_q_pairs_fn(torch.cat(mus), torch.cat(lss))
    if kind == "context":
        return _context_pairs_fn(model, x, context, batch_size)
    return _pairs_fn(model, x, context)


def _with_progress(
    fn: Callable[[Tensor, int, int], Tensor], total: int, enabled: bool, desc: str
) -> tuple[Callable[[Tensor, int, int], Tensor], tqdm]:
    bar = tqdm(total=total, disable=not enabled, desc=desc, unit="pair", unit_scale=True)

    def wrapped(z: Tensor, i0: int, i1: int) -> Tensor:
        out = fn(z, i0, i1)
        bar.update(z.shape[0] * (i1 - i0))
        return out

    return wrapped, bar


def marginal_kl(
    model: LatentVariableModel,
    x: Tensor,
    context: Tensor | None = None,
    S: int = 10_000,
    seed: int = 0,
    sampling: str = "uniform",
    method: str = "auto",
    M: int | None = None,
    chunk_s: int | None = None,
    chunk_n: int | None = None,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
    warn: bool = True,
) -> MarginalKL:
    """Marginal KL KL[q(z) ‖ π(z)], q(z) = (1/N) Σᵢ q(z|xᵢ), and I(n; z) (§4.1.1, Table 2).

    estimate = (1/S) Σ_s [logsumexp_i log q(z_s|xᵢ) − log N − log π(z_s)], z_s ~ q(z|x_{n_s}),
    with the mixture over all N rows of ``x`` (the paper's Table 2 reports this quantity for
    the VAE + NVP on CIFAR10 and Color-MNIST: 725.2 / 182.5 nats for ELBO, 45.3 / 10.3 for
    GECO). The only error is Monte Carlo over s (``stderr``); see
    :mod:`geco_core.metrics.marginal` for the estimator and the ``"uniform"`` / ``"stratified"``
    source sampling.

    Methods (``"auto"`` picks ``"subsampled"`` when ``M`` is given, else the one the model's
    ``posterior_kind`` declares, else ``"pairs"``):

    - ``"subsampled"`` (when ``M`` is given): each z_s sees its source plus M−1 random other
      components; cost S·M. Biased upwards by at most log(N/M)
      (:func:`~geco_core.metrics.marginal.marginal_kl_subsampled_from_log_q`). Meant for
      ConvDRAW, whose full sum costs S·N·T conv-LSTM steps.
    - ``"gaussian"`` (``posterior_kind == "gaussian"``, the conv VAE): ``model.posterior_params``
      in the closed-form matmul formulation, computed in ``dtype``; π = N(0, I). Also fills
      ``value_cv``.
    - ``"context"`` (``posterior_kind == "context"``, the VAE + NVP): h(xᵢ) from
      ``model.posterior_context`` once per point, then all (z_s, xᵢ) pairs through
      ``model.log_q_from_context`` (the inverse flow) in [chunk_s, chunk_n] blocks.
    - ``"pairs"``: ``model.log_q`` on matched (z_s, xᵢ) rows: any model, S·N encoder passes.

    For the model-based methods the samples, log q(z_s|x_{n_s}) and log π(z_s) come from
    ``model.forward`` (so a learned prior such as ConvDRAW's is used as π). For conditional
    models the mixture runs over the (xᵢ, cᵢ) pairs of the data set.

    Args:
        model: a :class:`~geco_core.models.base.LatentVariableModel`.
        x: the N data points ``[N, C, H, W]``; context: ``[N, ...]`` or None.
        S: Monte Carlo samples; seed: fixes sources, samples and subsets.
        sampling: ``"uniform"`` or ``"stratified"`` source indices.
        method: one of :data:`METHODS`; M: mixture components per sample for ``"subsampled"``.
        chunk_s, chunk_n: block sizes (defaults: gaussian
            :func:`~geco_core.metrics.marginal.gaussian_blocks` of the thread count, context
            32 × 512, pairs 4 × 64; subsampled chunk_s = 16).
        batch_size: batch size of the encoder passes over x.
        dtype: compute dtype of the gaussian method.
        progress: tqdm bar over the pair evaluations (model-based methods).
        warn: warn when I(n; z) is outside [0, log N] beyond Monte Carlo error.

    Returns:
        A :class:`~geco_core.metrics.marginal.MarginalKL` (nats).

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("vae_nvp", (1, 28, 28), latent_dim=2, channels=(4, 4),
        ...                 context_dim=8, flow_hidden=8, n_flows=2)
        >>> r = marginal_kl(m, torch.rand(10, 1, 28, 28), S=50, progress=False)
        >>> r.n, r.M, r.S
        (10, 10, 50)
    """
    N = _check_data(model, x, context)
    check_int(S, "S")
    check_int(batch_size, "batch_size")
    check_choice(method, "method", METHODS)
    check_choice(sampling, "sampling", SAMPLINGS)
    kind = model.posterior_kind
    if method == "auto":
        if M is not None:
            method = "subsampled"
        else:
            method = {"gaussian": "gaussian", "context": "context"}.get(kind, "pairs")
    if method == "subsampled":
        if M is None:
            raise ValueError("M: the subsampled method needs the number of components M")
        if isinstance(M, bool) or not isinstance(M, int) or not 1 <= M <= N:
            raise ValueError(f"M: need an integer 1 ≤ M ≤ N = {N}, got {M!r}")
    elif method in ("gaussian", "context") and kind != method:
        raise ValueError(
            f"method: {method!r} needs a model with posterior_kind={method!r}, this "
            f"{type(model).__name__} has {kind!r}"
        )

    with _evaluating(model, seed, x.device):
        if method == "gaussian":
            mus, lss = [], []
            for b in range(0, N, batch_size):
                mu, ls = model.posterior_params(
                    x[b : b + batch_size], _rows(context, slice(b, b + batch_size))
                )
                mus.append(mu.to(dtype))
                lss.append(ls.to(dtype))
            return marginal_kl_gaussian(
                torch.cat(mus),
                torch.cat(lss),
                S,
                seed=seed,
                sampling=sampling,
                chunk_s=chunk_s,
                chunk_n=chunk_n,
                warn=warn,
            )

        g = torch.Generator().manual_seed(seed)
        src = draw_sources(N, S, sampling, g).to(x.device)
        z, log_q_src, log_prior = _draw_model_samples(model, x, context, src, batch_size)

        if method == "subsampled":
            cs = chunk_s or 16
            bar = tqdm(total=S * M, disable=not progress, desc="marginal KL", unit="pair")

            def log_q_fn(zz: Tensor, idx: Tensor) -> Tensor:
                bar.update(len(idx))
                return model.log_q(zz, x[idx], _rows(context, idx)).double()

            try:
                return marginal_kl_subsampled_from_log_q(
                    z,
                    log_q_fn,
                    src,
                    N,
                    M,
                    log_prior_fn=log_prior,
                    log_q_source=log_q_src,
                    chunk_s=cs,
                    seed=seed + 1,
                    sampling=sampling,
                    warn=warn,
                )
            finally:
                bar.close()

        if method == "context":
            fn = _context_pairs_fn(model, x, context, batch_size)
            cs, cn = chunk_s or 32, chunk_n or 512
        else:
            fn = _pairs_fn(model, x, context)
            cs, cn = chunk_s or 4, chunk_n or 64
        fn, bar = _with_progress(fn, S * N, progress, "marginal KL")
        try:
            return marginal_kl_from_log_q(
                z,
                fn,
                N,
                log_prior,
                chunk_s=cs,
                chunk_n=cn,
                log_q_source=log_q_src,
                sampling=sampling,
                warn=warn,
            )
        finally:
            bar.close()
