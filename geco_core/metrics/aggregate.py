"""Estimators of the marginal KL from one matrix of posterior log-densities (§4.1.1, Table 2).

Every estimator of KL[q(z) ‖ π(z)], q(z) = (1/N) Σᵢ q(z|xᵢ), scores samples z_s under a mixture
of posteriors. Holding the matrix L[s, i] = log q(z_s | xᵢ) once (``[S, N]``, float32: 324 MB
for S = N = 9,000) lets one compare them on the *same* samples, which is how chapter 04 studies
their biases:

- :func:`exact_estimate` — the full N-component mixture of the training points,
  (1/S) Σ_s [logsumexp_i L[s, i] − log N − log π(z_s)]: unbiased for KL[q_N ‖ π] of the
  empirical aggregate q_N (Monte Carlo error only). Its expectation over training sets is an
  *upper* bound of the population marginal KL KL[q ‖ π] (KL is convex in its first argument).
  With rows z_s drawn from *held-out* posteriors it is the held-out estimate: the test codes
  scored under the training aggregate.
- :func:`leave_one_out_estimate` — the own component dropped, mixture over the N − 1 others:
  the sample is independent of its mixture, so by Jensen its expectation is a *lower* bound of
  KL[q ‖ π]. Exact and leave-one-out bracket the population value; their gap closes only once
  the posteriors overlap, i.e. for N of the order of e^{I(n; z)} or more (with sharp posteriors,
  far beyond any data set). Both bounds take the encoder as independent of the N points; a
  trained encoder is not, so the bracket is a heuristic.
- :func:`minibatch_weighted_estimate` and :func:`minibatch_stratified_estimate` — the
  minibatch-weighted (MWS) and minibatch-stratified (MSS) estimators of Chen et al. (2018),
  which score each sample under the B points of its minibatch only (its own included).
- :func:`aggregate_log_density` — log q_N(z) = logsumexp_i L[·, i] − log N for any z (e.g.
  prior samples, to find the holes: regions where q(z) ≪ π(z)).

:func:`log_q_matrix` fills L for a model in blocks (the inverse flow of the VAE + NVP for every
pair, or ``model.log_q`` on matched rows for any model).

References:
    Rezende & Viola, "Taming VAEs", 2018, §4.1.1 and Table 2.
    Chen, Li, Grosse & Duvenaud, "Isolating sources of disentanglement in variational
    autoencoders", NeurIPS 2018 (β-TCVAE): minibatch weighted and stratified sampling.
    Hoffman & Johnson, "ELBO surgery", NIPS AABI workshop 2016 (avgKL = I(n; z) + marginal KL).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> L = torch.zeros(6, 6)  # every posterior equals the prior: q(z) = π(z) ...
    >>> lp = torch.zeros(6)    # ... so with log π(z_s) = 0 the marginal KL is 0
    >>> src = torch.arange(6)
    >>> exact_estimate(L, lp).value, leave_one_out_estimate(L, lp, src).value
    (0.0, 0.0)
    >>> round(minibatch_stratified_estimate(L, lp, src, 3, generator=g).value, 12)
    0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geco_base.checks import check_int
from geco_core.metrics.estimators import mean_stderr

__all__ = [
    "Estimate",
    "aggregate_log_density",
    "exact_estimate",
    "leave_one_out_estimate",
    "log_q_matrix",
    "minibatch_stratified_estimate",
    "minibatch_weighted_estimate",
    "mss_log_weights",
]


@dataclass(frozen=True)
class Estimate:
    """A marginal-KL estimate in nats: the mean of ``n_terms`` per-sample terms and its standard
    error (sample standard deviation / √n_terms; NaN for one term)."""

    value: float
    stderr: float
    n_terms: int


def _check_matrix(log_q: Tensor, log_prior: Tensor, source: Tensor | None = None) -> None:
    if not isinstance(log_q, Tensor) or log_q.dim() != 2 or min(log_q.shape) < 1:
        raise ValueError(f"log_q: expected a non-empty [S, N] tensor, got "
                         f"{getattr(log_q, 'shape', type(log_q).__name__)}")
    S, N = log_q.shape
    if not isinstance(log_prior, Tensor) or log_prior.shape != (S,):
        raise ValueError(f"log_prior: expected shape {(S,)}, got "
                         f"{getattr(log_prior, 'shape', type(log_prior).__name__)}")
    if source is not None:
        if not isinstance(source, Tensor) or source.shape != (S,) or source.is_floating_point():
            raise ValueError(f"source: expected an integer tensor of shape {(S,)}, got "
                             f"{getattr(source, 'shape', type(source).__name__)}")
        if len(source) and (int(source.min()) < 0 or int(source.max()) >= N):
            raise ValueError(f"source: indices must lie in [0, N = {N})")


def _estimate(terms: Tensor) -> Estimate:
    value, se = mean_stderr(terms)
    return Estimate(value, se, int(terms.numel()))


def aggregate_log_density(log_q: Tensor) -> Tensor:
    """log q_N(z_s) = logsumexp_i log q(z_s|xᵢ) − log N, the log-density of the aggregate
    posterior of the N points at each row's z (float64, ``[S]``).

    Example:
        >>> L = torch.log(torch.tensor([[0.2, 0.6]]))
        >>> round(float(aggregate_log_density(L).exp()), 6)  # (0.2 + 0.6) / 2
        0.4
    """
    if not isinstance(log_q, Tensor) or log_q.dim() != 2:
        raise ValueError("log_q: expected an [S, N] tensor")
    return torch.logsumexp(log_q.double(), dim=1) - math.log(log_q.shape[1])


def exact_estimate(log_q: Tensor, log_prior: Tensor) -> Estimate:
    """The exact-mixture estimate (§4.1.1, Table 2): mean of log q_N(z_s) − log π(z_s).

    With z_s drawn from the training posteriors it estimates KL[q_N ‖ π] without bias; with
    z_s from held-out posteriors it is the held-out estimate (see the module docstring).

    Example:
        >>> L = torch.tensor([[0.0, -50.0], [-50.0, 0.0]])  # two disjoint posteriors
        >>> round(exact_estimate(L, torch.zeros(2)).value, 6)  # log q_N ≈ −log 2, log π = 0
        -0.693147
    """
    _check_matrix(log_q, log_prior)
    return _estimate(aggregate_log_density(log_q) - log_prior.double())


def leave_one_out_estimate(log_q: Tensor, log_prior: Tensor, source: Tensor) -> Estimate:
    """The leave-one-out estimate: each z_s ~ q(z|x_{source[s]}) scored under the mixture of
    the other N − 1 posteriors, mean of logsumexp_{i ≠ source[s]} L[s, i] − log(N − 1) −
    log π(z_s). A lower bound in expectation of the population marginal KL.

    Example:
        >>> L = torch.tensor([[0.0, -2.0, -4.0]])
        >>> e = leave_one_out_estimate(L, torch.zeros(1), torch.tensor([0]))
        >>> round(e.value, 6) == round(math.log((math.exp(-2) + math.exp(-4)) / 2), 6)
        True
    """
    _check_matrix(log_q, log_prior, source)
    S, N = log_q.shape
    if N < 2:
        raise ValueError("log_q: leave-one-out needs N >= 2 components")
    masked = log_q.double().clone()
    masked[torch.arange(S), source] = -math.inf
    terms = torch.logsumexp(masked, dim=1) - math.log(N - 1) - log_prior.double()
    return _estimate(terms)


def _minibatches(source: Tensor, batch_size: int, generator: torch.Generator | None):
    """Rows grouped into batches of ``batch_size`` distinct sources, as in training: the rows
    are shuffled, then split; a batch whose sources repeat is skipped, as is the remainder."""
    check_int(batch_size, "batch_size", minimum=2)
    perm = torch.randperm(len(source), generator=generator)
    for b0 in range(0, len(perm) - batch_size + 1, batch_size):
        rows = perm[b0 : b0 + batch_size]
        if len(torch.unique(source[rows])) == batch_size:
            yield rows


def minibatch_weighted_estimate(log_q: Tensor, log_prior: Tensor, source: Tensor,
                                batch_size: int, *, generator: torch.Generator | None = None
                                ) -> Estimate:
    """Minibatch weighted sampling (MWS) of Chen et al. (2018): each z_i of a minibatch of B
    points scored as log q̂(z_i) = logsumexp_{j ∈ batch} log q(z_i|x_j) − log(N·B).

    The estimator weighs every batch member 1/(N·B), so the weights sum to 1/N rather than 1:
    where the posteriors overlap completely its log q̂ is log q(z) − log N, where they are
    disjoint it is log q(z) − log B. Its bias therefore depends on the overlap itself, the
    quantity the marginal KL measures (chapter 04 shows it). The rows are batched by
    :func:`_minibatches` (shuffled, B distinct sources per batch).

    Example:
        >>> L, lp = torch.zeros(4, 4), torch.zeros(4)  # complete overlap
        >>> e = minibatch_weighted_estimate(L, lp, torch.arange(4), 2)
        >>> round(e.value, 6) == round(-math.log(4), 6)  # log q̂ − log π = −log N
        True
    """
    _check_matrix(log_q, log_prior, source)
    S, N = log_q.shape
    terms = []
    for rows in _minibatches(source, batch_size, generator):
        block = log_q[rows][:, source[rows]].double()
        terms.append(torch.logsumexp(block, dim=1) - math.log(N * batch_size)
                     - log_prior[rows].double())
    if not terms:
        raise ValueError("batch_size: no complete minibatch of distinct sources")
    return _estimate(torch.cat(terms))


def mss_log_weights(batch_size: int, n_points: int) -> Tensor:
    """log W of minibatch stratified sampling (Chen et al. 2018, App. C): for the B = M + 1
    members of a batch, row i (the sample z_i) weighs its own component 1/N, the next member
    (i + 1 mod B) (N − M)/(N·M) and the other B − 2 members 1/M each; every row sums to 1.

    Written with explicit indices (the "next member" of row B − 1 is member 0), which is the
    intended pattern of the public β-TCVAE code's weight matrix.

    Example:
        >>> W = mss_log_weights(4, 100).exp()
        >>> [round(float(v), 6) for v in W[0]], round(float(W.sum(1).max()), 12)
        ([0.01, 0.323333, 0.333333, 0.333333], 1.0)
    """
    check_int(batch_size, "batch_size", minimum=3)
    check_int(n_points, "n_points", minimum=batch_size)
    B, N, M = batch_size, n_points, batch_size - 1
    W = torch.full((B, B), 1.0 / M, dtype=torch.float64)
    i = torch.arange(B)
    W[i, i] = 1.0 / N
    W[i, (i + 1) % B] = (N - M) / (N * M)
    return W.log()


def minibatch_stratified_estimate(log_q: Tensor, log_prior: Tensor, source: Tensor,
                                  batch_size: int, *, generator: torch.Generator | None = None
                                  ) -> Estimate:
    """Minibatch stratified sampling (MSS) of Chen et al. (2018): each z_i of a minibatch of
    B points scored as log q̂(z_i) = logsumexp_j [log W_ij + log q(z_i|x_j)] with the weights of
    :func:`mss_log_weights` (own 1/N; they sum to 1, so complete overlap gives log q(z)).

    Example:
        >>> L, lp = torch.zeros(6, 6), torch.zeros(6)
        >>> abs(minibatch_stratified_estimate(L, lp, torch.arange(6), 3).value) < 1e-12
        True
    """
    _check_matrix(log_q, log_prior, source)
    S, N = log_q.shape
    W = mss_log_weights(batch_size, N)
    terms = []
    for rows in _minibatches(source, batch_size, generator):
        block = log_q[rows][:, source[rows]].double() + W
        terms.append(torch.logsumexp(block, dim=1) - log_prior[rows].double())
    if not terms:
        raise ValueError("batch_size: no complete minibatch of distinct sources")
    return _estimate(torch.cat(terms))


def log_q_matrix(model, z: Tensor, x: Tensor, context: Tensor | None = None, *,
                 chunk_s: int = 64, chunk_n: int = 1024, batch_size: int = 256,
                 progress: bool = False) -> Tensor:
    """L[s, i] = log q(z_s | xᵢ) for every sample ``z`` ``[S, d]`` and data point ``x``
    ``[N, C, H, W]`` (float32 ``[S, N]`` on the CPU), computed in ``[chunk_s, chunk_n]`` blocks
    without gradients, the model in eval mode.

    Uses the model's cheapest exact route: the posterior context h(xᵢ) once per point and the
    inverse flow for every pair (VAE + NVP, ``posterior_kind == "context"``), the closed-form
    Gaussian density (conv VAE), else ``model.log_q`` on matched rows (any model; ConvDRAW
    unrolls its encoder per pair, S·N passes, so keep S·N small there).

    Example:
        >>> from geco_core.models import build_model
        >>> m = build_model("vae_nvp", (1, 28, 28), latent_dim=2, channels=(4, 4),
        ...                 context_dim=8, flow_hidden=8, n_flows=2)
        >>> x = torch.rand(5, 1, 28, 28)
        >>> z, lq = m.sample_posterior(x, n=1)
        >>> L = log_q_matrix(m, z[0], x)
        >>> L.shape, bool(torch.allclose(L.diagonal(), lq[0], atol=1e-4))
        (torch.Size([5, 5]), True)
    """
    from geco_core.metrics.evaluation import log_q_pairs_fn

    check_int(chunk_s, "chunk_s")
    check_int(chunk_n, "chunk_n")
    if not isinstance(z, Tensor) or z.dim() != 2:
        raise ValueError(f"z: expected [S, d], got {getattr(z, 'shape', type(z).__name__)}")
    S, N = z.shape[0], x.shape[0]
    was_training = model.training
    model.eval()
    out = torch.empty(S, N, dtype=torch.float32)
    bar = tqdm(total=S * N, disable=not progress, desc="log q pairs", unit="pair",
               unit_scale=True)
    try:
        with torch.no_grad():
            fn = log_q_pairs_fn(model, x, context, batch_size)
            for s0 in range(0, S, chunk_s):
                zb = z[s0 : s0 + chunk_s]
                for i0 in range(0, N, chunk_n):
                    i1 = min(N, i0 + chunk_n)
                    out[s0 : s0 + len(zb), i0:i1] = fn(zb, i0, i1).float().cpu()
                    bar.update(len(zb) * (i1 - i0))
    finally:
        bar.close()
        model.train(was_training)
    return out
