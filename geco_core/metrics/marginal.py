"""Marginal KL KL[q(z) ‖ π(z)] and the mutual information I(n; z) on tensors.

The paper's §4.1.1 (Table 2) compares models through the *marginal KL* between the aggregate
posterior q(z) = (1/N) Σᵢ q(z|xᵢ) and the prior π(z): it is zero when the encoders tile the
latent space exactly as the prior does (Propositions 2 and 5) and large when they leave "holes".
With n uniform over the N data points and z ~ q(z|x_n),

    avgKL = (1/N) Σᵢ KL[q(z|xᵢ) ‖ π(z)] = I(n; z) + KL[q(z) ‖ π(z)],

so the marginal KL is the average KL minus the mutual information between the data index and
the code, and 0 ≤ I(n; z) ≤ log N.

This module works on raw tensors and callables, independent of any network;
:func:`geco_core.metrics.evaluation.marginal_kl` wraps it for a
:class:`~geco_core.models.base.LatentVariableModel`.

Estimator (:func:`marginal_kl_from_log_q`)::

    KL̂ = (1/S) Σ_s [ logsumexp_i log q(z_s|x_i) − log N − log π(z_s) ],  z_s ~ q(z|x_{n_s})

The mixture is summed over *all* N components, so the only error is Monte Carlo over the S
samples; the standard error is the sample standard deviation of the S terms over √S. Source
indices n_s are drawn either

- ``"uniform"``: i.i.d. uniform over {0, …, N−1} (the terms are i.i.d.; the standard error is
  exact), or
- ``"stratified"``: every point is used ⌊S/N⌋ times and the S mod N remaining sources are a
  uniform subset without replacement. Every point has the same expected weight, so the estimate
  is unbiased for the same expectation; the reported i.i.d. standard error is then conservative
  (stratification removes the between-point part of the variance).

Memory is bounded whatever N and S are: the [S, N] matrix of log q(z_s|x_i) is produced in
[chunk_s, chunk_n] blocks and reduced on the fly with a running logsumexp over i.

References:
    Rezende & Viola, "Taming VAEs", 2018, §4.1.1 and Table 2.
    Hoffman & Johnson, "ELBO surgery", NIPS AABI workshop 2016 (avgKL = I(n; z) + marginal KL).
    Poole et al., "On variational bounds of mutual information", ICML 2019 (the subsampled
    mixture is the InfoNCE bound, which gives the sign of the bias of
    :func:`marginal_kl_subsampled_from_log_q`).

Example:
    >>> import torch
    >>> mu = log_sigma = torch.zeros(5, 3, dtype=torch.float64)
    >>> r = marginal_kl_gaussian(mu, log_sigma, S=100, seed=0)  # every encoder equals the prior
    >>> abs(r.value) < 1e-12 and abs(r.mutual_info) < 1e-12
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from geco_base.checks import check_choice, check_int
from geco_core.metrics.estimators import gaussian_kl, mean_stderr, standard_normal_log_prob

__all__ = [
    "SAMPLINGS",
    "LogQPairsFn",
    "MarginalKL",
    "draw_sources",
    "gaussian_blocks",
    "gaussian_log_q_pairs",
    "gaussian_log_q_pairs_fn",
    "logsumexp_chunked",
    "marginal_kl_from_log_q",
    "marginal_kl_gaussian",
    "marginal_kl_subsampled_from_log_q",
]

#: How the sources n_s of the Monte Carlo samples are drawn (see the module docstring).
SAMPLINGS = ("uniform", "stratified")
_LOG_2PI = math.log(2.0 * math.pi)

#: log q(z_s | x_i) for a block: (z [cs, d], i0, i1) -> [cs, i1 - i0].
LogQPairsFn = Callable[[Tensor, int, int], Tensor]


@dataclass
class MarginalKL:
    """Result of a marginal-KL estimate (all values in nats).

    Attributes:
        value: estimate of KL[q(z) ‖ π(z)].
        stderr: Monte Carlo standard error of ``value`` (over the S samples).
        mutual_info: I(n; z) estimated from the same samples, ``avg_kl - value``.
        mutual_info_stderr: its standard error (the paired terms, much smaller than
            ``stderr`` because the per-point KL variation cancels).
        avg_kl: the average KL (1/N) Σᵢ KL[q(z|xᵢ) ‖ π(z)] estimated from the same samples
            (``nan`` when no source log-density was given).
        n: N, the number of data points whose posteriors form q(z).
        S: the number of Monte Carlo samples z_s.
        M: the number of mixture components evaluated per sample (``n`` for the exact
            mixture, fewer for the subsampled estimator).
        bias_bound: 0 for the full mixture; log(N/M) for the subsampled one, whose expected
            value lies in [true, true + log(N/M)].
        sampling: how the sources n_s were drawn (``"uniform"`` or ``"stratified"``).
        value_cv: optional lower-variance estimate ``avg_kl_exact - mutual_info`` when the
            average KL is known in closed form (diagonal Gaussians), else ``None``.
        stderr_cv: standard error of ``value_cv`` (``mutual_info_stderr``; conservative for
            stratified sampling), else ``None``.
        numerical_tol: rounding allowance of the range check on I(n; z) (a few hundred ulps
            of the log-densities in the compute dtype).
    """

    value: float
    stderr: float
    mutual_info: float
    mutual_info_stderr: float
    avg_kl: float
    n: int
    S: int
    M: int
    bias_bound: float = 0.0
    sampling: str = "uniform"
    value_cv: float | None = None
    stderr_cv: float | None = None
    numerical_tol: float = 0.0

    @property
    def mutual_info_upper(self) -> float:
        """The largest possible I(n; z): log M (log N for the exact mixture)."""
        return math.log(self.M)

    def mutual_info_in_range(self, n_sigma: float = 4.0) -> bool:
        """Whether I(n; z) lies in [0, log M] up to ``n_sigma`` standard errors.

        The upper end holds term by term (the source is one of the mixture components), so only
        the lower end is a statistical statement. Returns ``True`` when no MI was estimated.
        """
        if math.isnan(self.mutual_info):
            return True
        se = 0.0 if math.isnan(self.mutual_info_stderr) else self.mutual_info_stderr
        tol = n_sigma * se + self.numerical_tol
        return -tol <= self.mutual_info <= self.mutual_info_upper + tol


def draw_sources(
    N: int, S: int, sampling: str = "uniform", generator: torch.Generator | None = None
) -> Tensor:
    """Source indices n_s ∈ {0, …, N−1} for the S Monte Carlo samples (``[S]``, int64).

    ``"uniform"``: i.i.d. uniform. ``"stratified"``: each index ⌊S/N⌋ times plus a uniform
    subset (without replacement) of size S mod N, in random order.

    Example:
        >>> draw_sources(3, 6, "stratified", torch.Generator().manual_seed(0)).bincount().tolist()
        [2, 2, 2]
    """
    check_int(N, "N")
    check_int(S, "S")
    check_choice(sampling, "sampling", SAMPLINGS)
    if sampling == "uniform":
        return torch.randint(N, (S,), generator=generator)
    reps, rest = divmod(S, N)  # stratified
    idx = torch.cat([torch.arange(N).repeat(reps), torch.randperm(N, generator=generator)[:rest]])
    return idx[torch.randperm(S, generator=generator)]


def logsumexp_chunked(
    z: Tensor, log_q_pairs_fn: LogQPairsFn, N: int, chunk_n: int = 2048
) -> Tensor:
    """logsumexp_i log q(z_s|x_i) over i = 0…N−1 with a running reduction over i-blocks.

    ``log_q_pairs_fn(z, i0, i1)`` returns the ``[len(z), i1 - i0]`` block; it may return a
    fresh tensor which this function then overwrites in place (so only one block is alive).

    Example:
        >>> fn = lambda z, i0, i1: torch.zeros(len(z), i1 - i0, dtype=torch.float64)
        >>> lse = logsumexp_chunked(torch.zeros(1, 1), fn, N=4, chunk_n=3)  # blocks of 3 and 1
        >>> abs(float(lse[0]) - math.log(4)) < 1e-15
        True
    """
    check_int(chunk_n, "chunk_n")
    lse: Tensor | None = None
    for i0 in range(0, N, chunk_n):
        i1 = min(N, i0 + chunk_n)
        block = log_q_pairs_fn(z, i0, i1)
        if block.shape != (len(z), i1 - i0):
            raise ValueError(
                f"log_q_pairs_fn: returned shape {tuple(block.shape)}, expected {(len(z), i1 - i0)}"
            )
        m = block.amax(dim=1)
        # An all −inf row would give (−inf) − (−inf) = NaN; shift such rows by 0 instead.
        finite = torch.isfinite(m)
        m_safe = torch.where(finite, m, torch.zeros_like(m))
        # Clamping at log(tiny) keeps exp out of its (up to 10× slower) underflow/denormal
        # path; each clamped entry adds < 1e-37 (float32) relative to the row maximum.
        floor = math.log(torch.finfo(block.dtype).tiny) + 1.0
        block.sub_(m_safe[:, None]).clamp_(min=floor).exp_()
        block_lse = block.sum(dim=1).log_().add_(m_safe)
        block_lse = torch.where(finite, block_lse, m)  # all −inf rows stay −inf
        lse = block_lse if lse is None else torch.logaddexp(lse, block_lse)
    assert lse is not None
    return lse


def marginal_kl_from_log_q(
    z: Tensor,
    log_q_pairs_fn: LogQPairsFn,
    N: int,
    log_prior_fn: Callable[[Tensor], Tensor] | Tensor = standard_normal_log_prob,
    chunk_s: int = 512,
    chunk_n: int = 2048,
    log_q_source: Tensor | None = None,
    sampling: str = "uniform",
    warn: bool = True,
    numerical_tol: float = 0.0,
) -> MarginalKL:
    """Marginal KL KL[q(z) ‖ π(z)] with the full N-component mixture (paper §4.1.1, Table 2).

    estimate = (1/S) Σ_s [logsumexp_i log q(z_s|xᵢ) − log N − log π(z_s)], with the samples
    ``z`` already drawn as z_s ~ q(z|x_{n_s}) (see :func:`draw_sources`). The [S, N] matrix of
    log-densities is never held: it is produced in [chunk_s, chunk_n] blocks by
    ``log_q_pairs_fn`` and reduced with a running logsumexp, so the extra memory is
    O(chunk_s·chunk_n), whatever N and S are.

    Args:
        z: samples ``[S, d]``.
        log_q_pairs_fn: ``(z_block [cs, d], i0, i1) -> [cs, i1 - i0]`` log q(z_s|xᵢ) for
            i ∈ [i0, i1).
        N: number of mixture components (data points).
        log_prior_fn: log π(z) as a callable on ``[cs, d]`` blocks, or the precomputed ``[S]``
            values (models whose prior is not N(0, I), e.g. ConvDRAW's learned prior).
        chunk_s, chunk_n: block sizes over samples and components.
        log_q_source: optional ``[S]`` log q(z_s|x_{n_s}) of each sample under its own source;
            with it the result also carries the average KL and I(n; z) from the same samples.
        sampling: how the sources were drawn (recorded in the result).
        warn: warn when I(n; z) falls outside [0, log N] by more than 4 standard errors.
        numerical_tol: extra rounding allowance (nats) for that check, for block functions
            whose rounding error exceeds a few ulps of the result (the matmul formulation).

    Returns:
        A :class:`MarginalKL` (nats).

    Example:
        >>> z = torch.randn(50, 2, dtype=torch.float64)
        >>> fn = lambda zb, i0, i1: standard_normal_log_prob(zb)[:, None].repeat(1, i1 - i0)
        >>> abs(marginal_kl_from_log_q(z, fn, N=10).value) < 1e-12  # q(z|x_i) = π for all i
        True
    """
    if z.dim() != 2:
        raise ValueError(f"z: expected [S, d], got shape {tuple(z.shape)}")
    check_int(N, "N")
    check_int(chunk_s, "chunk_s")
    check_choice(sampling, "sampling", SAMPLINGS)
    S = z.shape[0]
    if log_q_source is not None and log_q_source.shape != (S,):
        raise ValueError(f"log_q_source: expected shape {(S,)}, got {tuple(log_q_source.shape)}")
    if isinstance(log_prior_fn, Tensor) and log_prior_fn.shape != (S,):
        raise ValueError(f"log_prior_fn: expected shape {(S,)}, got {tuple(log_prior_fn.shape)}")

    log_mix = torch.empty(S, dtype=torch.float64, device=z.device)
    log_prior = torch.empty(S, dtype=torch.float64, device=z.device)
    with torch.no_grad():
        for s0 in range(0, S, chunk_s):
            zb = z[s0 : s0 + chunk_s]
            lse = logsumexp_chunked(zb, log_q_pairs_fn, N, chunk_n)
            log_mix[s0 : s0 + len(zb)] = lse.double() - math.log(N)
            if isinstance(log_prior_fn, Tensor):
                log_prior[s0 : s0 + len(zb)] = log_prior_fn[s0 : s0 + len(zb)].double()
            else:
                log_prior[s0 : s0 + len(zb)] = log_prior_fn(zb).double()
    eps = torch.finfo(z.dtype).eps if z.is_floating_point() else 0.0
    return _summarise(
        log_mix, log_prior, log_q_source, N, N, 0.0, sampling, warn, eps, numerical_tol
    )


def marginal_kl_subsampled_from_log_q(
    z: Tensor,
    log_q_fn: Callable[[Tensor, Tensor], Tensor],
    sources: Tensor,
    N: int,
    M: int,
    log_prior_fn: Callable[[Tensor], Tensor] | Tensor = standard_normal_log_prob,
    log_q_source: Tensor | None = None,
    chunk_s: int = 64,
    seed: int = 0,
    sampling: str = "uniform",
    warn: bool = True,
) -> MarginalKL:
    """Subsampled-mixture marginal KL: each z_s sees only M < N components (ConvDRAW).

    For every sample the mixture is its own source n_s plus M−1 other points drawn uniformly
    without replacement, q̂(z_s) = (1/M) Σ_{j ∈ A_s} q(z_s|x_j), and
    estimate = (1/S) Σ_s [log q̂(z_s) − log π(z_s)]. The cost is S·M density evaluations instead
    of S·N (for ConvDRAW each is a full T-step conv-LSTM pass).

    Bias (stated and measured in the tests and the benchmark): the pair (A_s, n_s) is a uniform
    M-subset with a uniform member, so the estimated I(n; z) is the InfoNCE lower bound
    (Poole et al. 2019) and the expected estimate is an *upper* bound of the true marginal KL;
    by Jensen it exceeds it by at most log(N/M):

        KL ≤ E[estimate] ≤ KL + log(N/M).

    The upper end is reached when the posteriors do not overlap (I(n; z) = log N); the bias
    vanishes when they all coincide.

    Args:
        z: samples ``[S, d]``, z_s ~ q(z|x_{sources[s]}).
        log_q_fn: ``(z [B, d], idx [B]) -> [B]`` log q(z_b | x_{idx_b}) for matched pairs.
        sources: ``[S]`` source index of each sample.
        N: number of data points; M: components per sample (1 ≤ M ≤ N).
        log_prior_fn, log_q_source, sampling, warn: as in :func:`marginal_kl_from_log_q`.
        chunk_s: samples per call of ``log_q_fn`` (a call sees chunk_s·M pairs).
        seed: seed for the M−1 extra components of each sample.

    Returns:
        A :class:`MarginalKL` with ``M`` and ``bias_bound = log(N/M)``.

    Example:
        >>> z = torch.randn(20, 2, dtype=torch.float64)
        >>> fn = lambda zb, idx: standard_normal_log_prob(zb)
        >>> r = marginal_kl_subsampled_from_log_q(z, fn, torch.zeros(20, dtype=torch.long), 100, 5)
        >>> abs(r.value) < 1e-12, round(r.bias_bound, 4)
        (True, 2.9957)
    """
    if z.dim() != 2:
        raise ValueError(f"z: expected [S, d], got shape {tuple(z.shape)}")
    S = z.shape[0]
    if not 1 <= M <= N:
        raise ValueError(f"M: need 1 ≤ M ≤ N = {N}, got {M}")
    if sources.shape != (S,):
        raise ValueError(f"sources: expected shape {(S,)}, got {tuple(sources.shape)}")
    check_int(chunk_s, "chunk_s")
    g = torch.Generator().manual_seed(seed)
    src = sources.detach().cpu().long()
    log_mix = torch.empty(S, dtype=torch.float64, device=z.device)
    log_prior = torch.empty(S, dtype=torch.float64, device=z.device)
    with torch.no_grad():
        for s0 in range(0, S, chunk_s):
            zb = z[s0 : s0 + chunk_s]
            cs = len(zb)
            cb = src[s0 : s0 + cs, None]
            if M > 1:
                # M−1 distinct indices of {0..N−1} \ {n_s}: a uniform (M−1)-subset of
                # {0..N−2} (top-k of i.i.d. uniforms), shifted past n_s.
                others = torch.rand(cs, N - 1, generator=g).topk(M - 1, dim=1).indices
                cb = torch.cat([cb, others + (others >= cb).long()], dim=1)  # col 0 = source
            cb = cb.to(z.device)
            lq = log_q_fn(zb.repeat_interleave(M, dim=0), cb.reshape(-1)).reshape(cs, M)
            log_mix[s0 : s0 + cs] = torch.logsumexp(lq.double(), dim=1) - math.log(M)
            if isinstance(log_prior_fn, Tensor):
                log_prior[s0 : s0 + cs] = log_prior_fn[s0 : s0 + cs].double()
            else:
                log_prior[s0 : s0 + cs] = log_prior_fn(zb).double()
    eps = torch.finfo(z.dtype).eps if z.is_floating_point() else 0.0
    bias_bound = math.log(N / M)
    return _summarise(log_mix, log_prior, log_q_source, N, M, bias_bound, sampling, warn, eps)


def gaussian_log_q_pairs(z: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(z_s; μᵢ, diag σᵢ²) for every pair (s, i) in a matmul formulation.

    Σ_d log N(z; μ, σ²) = −½ Σ z²/σ² + Σ zμ/σ² − ½ Σ μ²/σ² − Σ log σ − (d/2) log 2π; the first
    two sums are the two ``[S, d] × [d, N]`` products z² @ (−½/σ²)ᵀ + z @ (μ/σ²)ᵀ and the rest
    is a per-component constant c; all three are the one product [z², z, 1] @ [−½/σ², μ/σ², c]ᵀ.
    Rounding: the first two terms cancel, so the absolute error is about
    eps·Σ_d (z² + |zμ|)/σ²; use float64 for very narrow posteriors.

    Example:
        >>> z, mu, ls = torch.randn(4, 3), torch.randn(5, 3), 0.1 * torch.randn(5, 3)
        >>> ref = torch.distributions.Normal(mu, ls.exp()).log_prob(z[:, None]).sum(-1)
        >>> torch.allclose(gaussian_log_q_pairs(z, mu, ls), ref, atol=1e-4)
        True
    """
    if z.dim() != 2 or mu.dim() != 2 or z.shape[1] != mu.shape[1]:
        raise ValueError(f"z: expected [S, d] with the d of mu [N, d] = {tuple(mu.shape)}, got "
                         f"{tuple(z.shape)}")
    return gaussian_log_q_pairs_fn(mu, log_sigma)(z, 0, mu.shape[0])


def gaussian_log_q_pairs_fn(mu: Tensor, log_sigma: Tensor) -> LogQPairsFn:
    """A ``log_q_pairs_fn`` for diagonal-Gaussian posteriors ``mu``, ``log_sigma`` ``[N, d]``.

    Precomputes W = [−½/σ², μ/σ², c] ``[N, 2d + 1]`` with the per-component constant
    c = −½ Σ μ²/σ² − Σ log σ − (d/2) log 2π; each block is then one matmul
    [z², z, 1] @ W[i0:i1]ᵀ (folding c into the product avoids a broadcast pass over the block).
    """
    if mu.shape != log_sigma.shape or mu.dim() != 2:
        raise ValueError(
            f"mu, log_sigma: expected equal shapes [N, d], got {tuple(mu.shape)} and "
            f"{tuple(log_sigma.shape)}"
        )
    d = mu.shape[1]
    prec = torch.exp(-2.0 * log_sigma)
    c = -0.5 * (mu * mu * prec).sum(1) - log_sigma.sum(1) - 0.5 * d * _LOG_2PI
    W = torch.cat([-0.5 * prec, mu * prec, c[:, None]], dim=1)

    def fn(z: Tensor, i0: int, i1: int) -> Tensor:
        z = z.to(W.dtype)
        zz = torch.cat([z * z, z, torch.ones_like(z[:, :1])], dim=1)
        return zz @ W[i0:i1].T

    return fn


def gaussian_blocks(threads: int | None = None) -> tuple[int, int]:
    """The [chunk_s, chunk_n] blocks of :func:`marginal_kl_gaussian` for ``threads`` torch
    threads (default: torch's current count): cache-sized 512 × 2048 blocks with one thread
    (≈ 1.0× a same-flop matmul, 32 MiB of float64 per block), 2048 × 16384 with several
    (fewer, larger ops: each op pays a thread barrier). Measured by
    ``benchmarks/bench_speed.py``.

    Example:
        >>> gaussian_blocks(1), gaussian_blocks(8)
        ((512, 2048), (2048, 16384))
    """
    threads = torch.get_num_threads() if threads is None else check_int(threads, "threads")
    return (512, 2048) if threads == 1 else (2048, 16384)


def marginal_kl_gaussian(
    mu: Tensor,
    log_sigma: Tensor,
    S: int,
    seed: int = 0,
    sampling: str = "uniform",
    chunk_s: int | None = None,
    chunk_n: int | None = None,
    log_prior_fn: Callable[[Tensor], Tensor] = standard_normal_log_prob,
    warn: bool = True,
) -> MarginalKL:
    """Exact-mixture marginal KL for diagonal-Gaussian posteriors (paper §4.1.1).

    q(z|xᵢ) = N(μᵢ, diag σᵢ²) and π = N(0, I) by default. Samples z_s = μ_{n_s} + σ_{n_s} ε_s
    with ε_s ~ N(0, I) drawn in float64 from ``seed`` (so float32 and float64 runs share the
    noise), the mixture in the matmul formulation of :func:`gaussian_log_q_pairs_fn`. The
    computation runs in ``mu.dtype``. Cost: 2·S·N·(2d + 1) flops of matmul plus one exp and
    a few elementwise passes per pair. Memory: one [chunk_s, min(N, chunk_n)] block (at most
    256 MiB in float64 with the defaults, 156 MiB for N = 10,000) besides the O((N + S)·d)
    inputs. Block sizes (``benchmarks/bench_marginal_kl.py``, N = S = 10⁴, d = 32): with one
    thread, cache-sized 512 × 2048 blocks run at ≈ 1.0× the time of one matmul of the same
    flops and the default ≈ 1.3–1.8×; with several threads on a loaded machine every op pays a
    barrier, and the default's few large ops (≈ 2–3×) beat small blocks (5–15×). So the
    default (``chunk_s``/``chunk_n`` None) is :func:`gaussian_blocks` of torch's thread count.

    The result also carries ``value_cv`` = closed-form average KL − I(n; z): the same
    expectation with much lower variance, because the per-point KL spread cancels in the
    paired I(n; z) terms (which lie in (−∞, log N]).

    Example:
        >>> mu, log_sigma = torch.zeros(1, 1), torch.full((1, 1), math.log(0.5))
        >>> r = marginal_kl_gaussian(mu, log_sigma, S=4000)  # N = 1: the KL of one Gaussian
        >>> abs(r.value - gaussian_kl(mu, log_sigma).item()) < 4 * r.stderr
        True
    """
    if mu.shape != log_sigma.shape or mu.dim() != 2:
        raise ValueError(
            f"mu, log_sigma: expected equal shapes [N, d], got {tuple(mu.shape)} and "
            f"{tuple(log_sigma.shape)}"
        )
    default_s, default_n = gaussian_blocks()
    chunk_s = default_s if chunk_s is None else chunk_s
    chunk_n = default_n if chunk_n is None else chunk_n
    if not (torch.isfinite(mu).all() and torch.isfinite(log_sigma).all()):
        raise ValueError("mu, log_sigma: contain NaN or inf")
    N, d = mu.shape
    g = torch.Generator().manual_seed(seed)
    src = draw_sources(N, S, sampling, g).to(mu.device)
    eps = torch.randn(S, d, generator=g, dtype=torch.float64).to(mu.device)
    mu_s, ls_s = mu[src], log_sigma[src]
    z = mu_s + ls_s.exp() * eps.to(mu.dtype)
    log_q_src = (-0.5 * eps * eps - ls_s.double()).sum(1) - 0.5 * d * _LOG_2PI
    # The matmul formulation cancels terms of size Σ_d (z² + |zμ|)/σ²: allow their rounding.
    cancel = ((z * z + (z * mu_s).abs()) * torch.exp(-2.0 * ls_s)).sum(1).double()
    tol = 64 * torch.finfo(mu.dtype).eps * float(cancel.mean())
    r = marginal_kl_from_log_q(
        z,
        gaussian_log_q_pairs_fn(mu, log_sigma),
        N,
        log_prior_fn,
        chunk_s=chunk_s,
        chunk_n=chunk_n,
        log_q_source=log_q_src,
        sampling=sampling,
        warn=warn,
        numerical_tol=tol,
    )
    if log_prior_fn is standard_normal_log_prob:
        avg_exact = float(gaussian_kl(mu.double(), log_sigma.double()).mean())
        r.value_cv = avg_exact - r.mutual_info
        r.stderr_cv = r.mutual_info_stderr
    return r


def _summarise(
    log_mix: Tensor,
    log_prior: Tensor,
    log_q_source: Tensor | None,
    N: int,
    M: int,
    bias_bound: float,
    sampling: str,
    warn: bool,
    dtype_eps: float,
    numerical_tol: float = 0.0,
) -> MarginalKL:
    S = log_mix.numel()
    value, stderr = mean_stderr(log_mix - log_prior)
    mi = mi_se = avg = float("nan")
    if log_q_source is not None:
        lqs = log_q_source.detach().double().to(log_mix.device)
        avg, _ = mean_stderr(lqs - log_prior)
        mi, mi_se = mean_stderr(lqs - log_mix)
    r = MarginalKL(value, stderr, mi, mi_se, avg, N, S, M, bias_bound, sampling)
    r.numerical_tol = numerical_tol + 256 * dtype_eps * (1.0 + float(log_mix.abs().mean()))
    if warn and not r.mutual_info_in_range():
        warnings.warn(
            f"I(n; z) = {mi:.4g} ± {mi_se:.2g} nats lies outside [0, log M = {math.log(M):.4g}] "
            "by more than 4 standard errors: check the posterior densities",
            RuntimeWarning,
            stacklevel=3,
        )
    return r
