"""Micro-MNIST posteriors (Appendix E.1, Fig. 8): the book's first end-to-end experiment.

A VAE whose posterior is a conditional RealNVP flow over a **2-D latent space** is trained on
*Micro-MNIST*, seven MNIST digits, with three objectives (Fig. 8, left to right):

1. the ELBO, β = 1 (Eq. 1; Gaussian likelihood with a learned global σ);
2. GECO + RE, κ = 0.05: min KL s.t. E[MSE] ≤ κ² (Eq. 2, Algorithm 1, Table 1);
3. GECO + CLA, κ = 0.9: min KL s.t. E[p_c(label | g(z))] ≥ κ with the project's MNIST classifier.

and a κ sweep of the two constraints (Appendix E.1: "as we make the constraints weaker (larger κ
for the RE constraint or smaller κ for the CLA constraint), we encourage the posterior density
to collapse the modes of the data").

What theory predicts (§3.1). For n data points, a high-capacity VAE's optimal posteriors are
the prior restricted to the tiles Ω_i of an equiprobable partition of the latent space
(Prop. 2): then KL[q(z|x_i) ‖ π] = ln n for every i (ln 7 ≈ 1.946 here), the marginal
q(z) = (1/n) Σ_i q(z|x_i) equals π (marginal KL 0, §4.1.1) and the tiles do not overlap.
Overlapping tiles blur reconstructions (Prop. 3); tiles that do not cover the prior leave
"holes". The numbers this module reports measure exactly these properties:

- :func:`self_classification_rate` — how often a posterior sample is most probable under its
  own data point (1 for disjoint tiles, ≈ 1/n for identical posteriors), from log q(z|x_j)
  for all pairs; :func:`own_weight` — the mean decoder weight w_i(z) of Eq. (4) on the own
  data point (the soft version, Prop. 3's blurring weight);
- :func:`posterior_spread` — √det of each posterior's sample covariance (1 for the prior);
- average KL vs ln 7, the marginal KL and I(n; z) = avgKL − marginal KL ≤ ln 7, whose
  exponential :func:`effective_tiles` counts distinguishable posteriors (1 … 7);
- :func:`count_modes` — clusters of posterior means (modes that merged), and the number of
  distinct digits the classifier reads in the reconstructions.

Profiles (:data:`SETTINGS`): ``smoke`` (seconds, CI), ``cpu`` (the rendered book; minutes on
two cores, results cached under ``book/_cache/micro_mnist/cpu``) and ``gpu`` (the paper's Adam
learning rate 1e-6 for the VAE+NVP and many more steps). Training goes through
:func:`geco_core.train.fit`; results are cached as small ``.npz``/``.json`` files with their
provenance (:func:`save_cache`, :func:`cache_status`) and recomputed when absent or stale.

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.1 (Props. 2–3), Eq. (4), §4.1.1 (average and
    marginal KL), Table 1 (RE, CLA), Algorithm 1, Appendix E.1 and Fig. 8.

Example:
    >>> import torch
    >>> log_q = torch.tensor([[0.0, -5.0], [-5.0, 0.0], [0.0, 1.0]])  # 3 samples, 2 points
    >>> self_classification_rate(log_q, torch.tensor([0, 1, 0]))
    0.6666666666666666
    >>> sorted(SETTINGS)
    ['cpu', 'gpu', 'smoke']
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CACHE_FORMAT",
    "CODE_MODULES",
    "DEFAULT_CACHE_ROOT",
    "FIG8_RUNS",
    "LN7",
    "PRESENTATION_NAMES",
    "SETTINGS",
    "CacheStatus",
    "MicroMNISTResult",
    "RunResult",
    "RunSpec",
    "cache_status",
    "code_fingerprints",
    "code_version",
    "config_hash",
    "count_modes",
    "effective_tiles",
    "evaluate_model",
    "experiment_config",
    "fig8_table",
    "load_cache",
    "own_weight",
    "paper_comparison",
    "pairwise_log_q",
    "posterior_spread",
    "run_experiment",
    "run_specs",
    "save_cache",
    "self_classification_rate",
    "settings_for",
    "sweep_table",
    "train_run",
]

#: ln 7: the KL[q(z|x_i) ‖ π] of every point, and I(n; z), for a perfect tiling (Prop. 2).
LN7 = math.log(7.0)

#: Version of the cache layout; a cache written with another one is stale.
CACHE_FORMAT = 1

_REPO = Path(__file__).resolve().parents[1]
#: Where the book keeps its cached results (one sub-folder per profile).
DEFAULT_CACHE_ROOT = _REPO / "book" / "_cache" / "micro_mnist"

#: Modules whose code determines the cached numbers (see :func:`code_version`).
CODE_MODULES: tuple[str, ...] = (
    "geco_core.micro_mnist",
    "geco_core.geco",
    "geco_core.constraints",
    "geco_core.objectives",
    "geco_core.train",
    "geco_core.metrics",
    "geco_core.marginal_kl",
    "geco_core.models.nvp",
    "geco_core.models.layers",
    "geco_core.models.classifier",
    "data_builders.variants",
    "data_builders.mnist",
    "data_builders.batching",
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
# GECO options shared by every profile. Algorithm 1 fixes α (0.99, §4.1) and λ⁰ = 1 but gives no
# rate ν. Our RE and CLA constraints are O(0.1–1) at initialisation, so the plain update
# λ ← λ·exp(ν·C_ma) with ν = 1 multiplies λ by up to e^0.9 per step for CLA, and the α = 0.99
# average lags ~100 steps behind the batch constraint: λ overshoots by many orders of magnitude
# before the average notices the constraint is met (we saw λ ≈ 2·10¹² after 200 steps of
# GECO+RE). The factor clamp limits λ's change to 2 % per step (an e-fold in 50 steps, about
# the memory of the moving average), and the bounds stop an unsatisfiable constraint from
# overflowing λ. The same options are used for every constraint and κ.
#
# λ⁰ (``lambda_init``) per constraint. RE: Algorithm 1's λ⁰ = 1. CLA: λ⁰ = 100. With λ⁰ = 1 the
# KL dominates the first ~200 steps: the posteriors collapse onto the prior and the decoder
# commits to one image for all seven digits; for CLA the classifier's softmax then saturates on
# it (true-label probability ~1e-8 for the digits it does not show), and the gradient cannot
# bring those digits back even at λ = 10⁷ (RE's squared error does not saturate). Starting CLA
# at λ⁰ = 100 keeps the digits apart from the start. The ablations show both choices the other
# way round: CLA with λ⁰ = 1, and RE with λ⁰ = 100, whose λ overshoots to the 10⁷ bound and,
# since an over-satisfied RE constraint lowers log λ by at most ν·κ² per step, needs thousands
# of steps to come back.
_GECO = {
    "nu": 1.0,
    "alpha": 0.99,
    "lambda_init": {"re": 1.0, "cla": 100.0},
    "geco_kwargs": {"factor_clamp": [0.98, 1.02], "lambda_bounds": [1e-3, 1e7]},
    "ablations": [
        {"objective": "geco", "constraint": "cla", "kappa": 0.9, "lambda_init": 1.0},
        {"objective": "geco", "constraint": "re", "kappa": 0.05, "lambda_init": 100.0},
    ],
}
_ELBO = {"sigma": 0.1, "learn_sigma": True}

#: Per-profile settings (:func:`settings_for`). ``model_kwargs`` go to
#: :func:`geco_core.models.build_model` (``"vae_nvp"``); ``lr`` None = the engine's default.
#: ``threads``: torch intra-op threads while training (restored afterwards; None = unchanged).
#: One thread for the CPU profiles: a batch of 7 images is too small for intra-op parallelism
#: to pay, and on a shared machine two spinning OpenMP threads per process made a step ~10×
#: slower than one thread did (measured: 0.42 s vs 0.03 s per step under load ≈ 11).
#: ``workers``: runs trained in parallel processes (each run is seeded by itself, so the
#: numbers do not depend on it); the cpu profile uses both cores of a 2-core machine.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "steps": 30,
        "lr": 3e-4,
        "model_profile": "cpu",
        "model_kwargs": {
            "latent_dim": 2,
            "channels": [4, 8],
            "context_dim": 16,
            "n_flows": 2,
            "flow_hidden": 16,
        },
        "re_kappas": [0.05, 0.3],
        "cla_kappas": [0.9, 0.2],
        "n_posterior": 20,
        "n_recon": 2,
        "marginal_kl_samples": 140,
        "avg_kl_samples": 4,
        "log_every": 5,
        "threads": 1,
        "workers": 1,
        **_GECO,
        **_ELBO,
    },
    "cpu": {
        "steps": 2000,
        "lr": 3e-4,
        "model_profile": "cpu",
        "model_kwargs": {
            "latent_dim": 2,
            "channels": [16, 32],
            "context_dim": 64,
            "n_flows": 4,
            "flow_hidden": 64,
        },
        "re_kappas": [0.05, 0.1, 0.15, 0.2, 0.3],
        "cla_kappas": [0.99, 0.9, 0.5, 0.2],
        "n_posterior": 100,
        "n_recon": 4,
        "marginal_kl_samples": 7000,
        "avg_kl_samples": 100,
        "log_every": 20,
        "threads": 1,
        "workers": 2,
        **_GECO,
        **_ELBO,
    },
    "gpu": {
        # The paper's optimiser for the VAE+NVP (§4.1: Adam, learning rate 1e-6) and the
        # engine's larger gpu model sizes, with a 2-D latent; many more steps.
        "steps": 300_000,
        "lr": 1e-6,
        "model_profile": "gpu",
        "model_kwargs": {"latent_dim": 2},
        "re_kappas": [0.05, 0.1, 0.15, 0.2, 0.3],
        "cla_kappas": [0.99, 0.9, 0.5, 0.2],
        "n_posterior": 100,
        "n_recon": 4,
        "marginal_kl_samples": 20_000,
        "avg_kl_samples": 1000,
        "log_every": 500,
        "threads": None,
        "workers": 1,
        **_GECO,
        **_ELBO,
    },
}


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (a deep copy of :data:`SETTINGS`), with ``overrides`` applied.

    Raises:
        ValueError: unknown profile (listing the valid ones) or an unknown override key.

    Example:
        >>> settings_for("smoke", steps=3)["steps"]
        3
    """
    try:
        from geco_core.profiles import resolve_profile
    except ImportError:  # pragma: no cover - profiles.py is part of the package
        resolve_profile = None
    if resolve_profile is not None:
        base = resolve_profile(profile, SETTINGS)
    elif profile in SETTINGS:
        base = SETTINGS[profile]
    else:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {sorted(SETTINGS)}")
    out = json.loads(json.dumps(base))
    unknown = sorted(set(overrides) - set(out))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings: {sorted(out)}")
    out.update(json.loads(json.dumps(overrides)))
    return out


@dataclass(frozen=True)
class RunSpec:
    """One trained model: the ELBO, or GECO with one constraint and tolerance κ.

    Example:
        >>> RunSpec("geco", "re", 0.05).name, RunSpec("elbo").label
        ('re-0.05', 'ELBO (β = 1)')
    """

    objective: str
    constraint: str | None = None
    kappa: float | None = None
    lambda_init: float | None = None

    def __post_init__(self) -> None:
        if self.lambda_init is not None:
            if self.objective != "geco" or not self.lambda_init > 0:
                raise ValueError(f"lambda_init must be > 0 and GECO only, got {self.lambda_init!r}")
        if self.objective not in ("elbo", "geco"):
            raise ValueError(f"objective must be 'elbo' or 'geco', got {self.objective!r}")
        if self.objective == "geco":
            if self.constraint not in ("re", "cla"):
                raise ValueError(f"constraint must be 're' or 'cla', got {self.constraint!r}")
            if not (isinstance(self.kappa, (int, float)) and self.kappa > 0):
                raise ValueError(f"kappa must be > 0, got {self.kappa!r}")
            if self.constraint == "cla" and self.kappa > 1:
                raise ValueError(f"kappa of CLA is a probability (0, 1], got {self.kappa!r}")

    @property
    def name(self) -> str:
        if self.objective == "elbo":
            return "elbo"
        tail = "" if self.lambda_init is None else f"-lambda0-{self.lambda_init:g}"
        return f"{self.constraint}-{self.kappa:g}{tail}"

    @property
    def label(self) -> str:
        if self.objective == "elbo":
            return "ELBO (β = 1)"
        tail = "" if self.lambda_init is None else f", λ⁰ = {self.lambda_init:g}"
        return f"GECO + {self.constraint.upper()} (κ = {self.kappa:g}{tail})"


#: The three models of Fig. 8, left to right.
FIG8_RUNS: tuple[RunSpec, ...] = (
    RunSpec("elbo"),
    RunSpec("geco", "re", 0.05),
    RunSpec("geco", "cla", 0.9),
)


def run_specs(settings: Mapping[str, Any]) -> list[RunSpec]:
    """Fig. 8's three runs, the κ sweep's runs not already among them, then the ablations."""
    specs = list(FIG8_RUNS)
    for constraint, key in (("re", "re_kappas"), ("cla", "cla_kappas")):
        for kappa in settings[key]:
            spec = RunSpec("geco", constraint, float(kappa))
            if spec not in specs:
                specs.append(spec)
    for ab in settings.get("ablations", []):
        spec = RunSpec(**ab)
        if spec not in specs:
            specs.append(spec)
    return specs


# --------------------------------------------------------------------------------------------
# Tiling measures (one function per quantity)
# --------------------------------------------------------------------------------------------
def _check_log_q(log_q: Tensor, source: Tensor) -> None:
    if log_q.dim() != 2 or source.dim() != 1 or source.shape[0] != log_q.shape[0]:
        raise ValueError(
            f"log_q must be [S, N] and source [S], got {list(log_q.shape)} and {list(source.shape)}"
        )
    if source.numel() and (int(source.min()) < 0 or int(source.max()) >= log_q.shape[1]):
        raise ValueError(f"source indices must lie in [0, {log_q.shape[1]})")


def self_classification_rate(log_q: Tensor, source: Tensor) -> float:
    """Fraction of posterior samples most probable under their own data point's posterior.

    ``log_q[s, j] = log q(z_s | x_j)`` for samples z_s ~ q(z | x_{source[s]}). A sample counts
    1 when its own point has the largest density, 1/m when it ties with m − 1 others: 1.0 for
    disjoint tiles (Prop. 2), exactly 1/N for N identical posteriors.

    Args:
        log_q: ``[S, N]`` log-densities of every sample under every point's posterior.
        source: ``[S]`` int, the point each sample was drawn from.

    Example:
        >>> self_classification_rate(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
        0.5
    """
    _check_log_q(log_q, source)
    best = log_q.max(dim=1, keepdim=True).values
    ties = (log_q == best).sum(1).double()
    own = log_q.gather(1, source.long()[:, None]).squeeze(1) == best.squeeze(1)
    return float((own.double() / ties).mean())


def own_weight(log_q: Tensor, source: Tensor) -> float:
    """Mean decoder weight of a sample's own point, E_i E_{z~q(z|x_i)}[w_i(z)] (Eq. 4).

    w_i(z) = q(z|x_i) / Σ_j q(z|x_j) is the weight of x_i in the optimal decoder
    g(z) = Σ_j w_j(z) x_j (Eq. 4, Prop. 1); where tiles overlap it is < 1 and the optimal
    reconstruction blurs (Prop. 3). 1 for disjoint tiles, 1/N for identical posteriors.

    Example:
        >>> own_weight(torch.zeros(3, 3), torch.tensor([0, 1, 2]))
        0.3333333333333333
    """
    _check_log_q(log_q, source)
    w = torch.softmax(log_q.double(), dim=1)
    return float(w.gather(1, source.long()[:, None]).mean())


def posterior_spread(z: Tensor | np.ndarray) -> np.ndarray:
    """√det of the sample covariance of each point's posterior samples, ``[N]``.

    ``z`` is ``[N, S, d]`` (S samples per point). For d = 2 this is σ₁σ₂ of the posterior, an
    area scale in latent units: 1 for the prior N(0, I), smaller for tighter posteriors.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(1, 20000, 2, generator=g) * torch.tensor([2.0, 0.5])
        >>> round(float(posterior_spread(z)[0]), 1)
        1.0
    """
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    if z.dim() != 3 or z.shape[1] < 2:
        raise ValueError(f"z must be [N, S >= 2, d], got {list(z.shape)}")
    zc = z - z.mean(1, keepdim=True)
    cov = zc.transpose(1, 2) @ zc / (z.shape[1] - 1)
    return torch.linalg.det(cov).clamp_min(0.0).sqrt().numpy()


def count_modes(z: Tensor | np.ndarray, scale: float = 1.0) -> int:
    """Number of clusters of posterior means: points whose posteriors merged count once.

    Points i and j are linked when their posterior means are closer than
    ``scale · (r_i + r_j) / 2``, r = the RMS radius √(tr Σ / d) of a posterior's samples; the
    modes are the connected components (single linkage). ``z`` is ``[N, S, d]``.

    Example:
        >>> z = torch.randn(3, 50, 2) * 0.1 + torch.tensor([[[0.0, 0]], [[5, 0]], [[0, 5]]])
        >>> count_modes(z), count_modes(torch.randn(1, 50, 2).expand(3, 50, 2))
        (3, 1)
    """
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    if z.dim() != 3:
        raise ValueError(f"z must be [N, S, d], got {list(z.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    mu = z.mean(1)
    radius = ((z - mu[:, None]).pow(2).sum(-1).mean(1) / z.shape[-1]).sqrt()
    linked = torch.cdist(mu, mu) <= scale * (radius[:, None] + radius[None, :]) / 2
    n = z.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if linked[i, j]:
                parent[find(i)] = find(j)
    return len({find(i) for i in range(n)})


def effective_tiles(mutual_info: float) -> float:
    """exp(I(n; z)): the number of distinguishable posteriors, between 1 and n.

    I(n; z) = avgKL − marginal KL (§4.1.1) is the information the latent carries about the
    data index; it is ln n for disjoint tiles (Prop. 2) and 0 when all posteriors coincide.

    Example:
        >>> round(effective_tiles(LN7), 6)
        7.0
    """
    return float(math.exp(mutual_info))


# --------------------------------------------------------------------------------------------
# Evaluation of one trained model
# --------------------------------------------------------------------------------------------
def pairwise_log_q(model: torch.nn.Module, z: Tensor, x: Tensor) -> Tensor:
    """log q(z_s | x_j) for every sample and every point: ``z`` ``[..., d]`` → ``[..., N]``.

    Uses the encoder context h(x_j) once per point (``posterior_context`` /
    ``log_q_from_context``, the VAE+NVP fast path) when the model has it, else
    ``model.log_q`` on repeated rows.
    """
    n = x.shape[0]
    lead = z.shape[:-1]
    zf = z.reshape(-1, z.shape[-1])
    if hasattr(model, "posterior_context") and hasattr(model, "log_q_from_context"):
        h = model.posterior_context(x)
        out = model.log_q_from_context(zf[:, None, :], h[None])
    else:
        zz = zf.repeat_interleave(n, dim=0)
        xx = x.repeat(zf.shape[0], *([1] * (x.dim() - 1)))
        out = model.log_q(zz, xx).reshape(zf.shape[0], n)
    return out.reshape(*lead, n)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """No gradients and a forked global RNG (CPU, and ``device`` if CUDA) seeded with ``seed``."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        yield


def _to_uint8(img: Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def evaluate_model(
    model: torch.nn.Module,
    x: Tensor,
    labels: Tensor,
    classifier: torch.nn.Module | None,
    *,
    n_posterior: int,
    n_recon: int,
    marginal_kl_samples: int,
    avg_kl_samples: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The numbers and arrays of one trained model on the n data points ``x``.

    Returns ``(metrics, arrays)``. Metrics: ``mse`` (per pixel, over ``n_posterior`` posterior
    samples per point), ``avg_kl`` ± ``avg_kl_se`` (Monte Carlo, :func:`geco_core.metrics.
    average_kl`), ``marginal_kl`` ± ``marginal_kl_se``, ``mutual_info`` and
    ``effective_tiles`` (:func:`geco_core.metrics.marginal_kl`, exact mixture over the n
    points), ``self_class_rate``, ``own_weight``, ``spread`` (mean √det Σ), ``n_modes``
    (:func:`count_modes`), and with a classifier ``p_true`` (mean true-label probability of the
    reconstructions, the CLA quantity), ``recon_accuracy`` and ``distinct_digits`` (number of
    different majority labels the classifier reads in the n points' reconstructions).
    Arrays: ``z`` ``[n, n_posterior, d]`` float32, ``recon`` ``[n, n_recon, H, W]`` uint8.
    """
    from geco_core.metrics import average_kl, marginal_kl

    was_training = model.training
    model.eval()
    n = x.shape[0]
    try:
        with _seeded(seed, x.device):
            z, _ = model.sample_posterior(x, n=n_posterior)  # [S, n, d]
            z = z.transpose(0, 1).contiguous()  # [n, S, d]
            log_q = pairwise_log_q(model, z, x).reshape(n * n_posterior, n)
            source = torch.arange(n, device=x.device).repeat_interleave(n_posterior)
            x_hat = model.decode(z.reshape(n * n_posterior, -1))
            x_rep = x.repeat_interleave(n_posterior, dim=0)
            mse = float((x_hat - x_rep).pow(2).mean())
            metrics: dict[str, float] = {
                "mse": mse,
                "self_class_rate": self_classification_rate(log_q, source),
                "own_weight": own_weight(log_q, source),
            }
            zc = z.double().cpu()
            metrics["spread"] = float(posterior_spread(zc).mean())
            metrics["n_modes"] = float(count_modes(zc))
            if classifier is not None:
                probs = classifier.to(x.device)(x_hat).softmax(-1)
                lab = labels.to(x.device).long().repeat_interleave(n_posterior)
                metrics["p_true"] = float(probs.gather(1, lab[:, None]).mean())
                pred = probs.argmax(-1)
                metrics["recon_accuracy"] = float((pred == lab).double().mean())
                majority = pred.reshape(n, n_posterior).mode(dim=1).values
                metrics["distinct_digits"] = float(len(set(majority.tolist())))
            recon = x_hat.reshape(n, n_posterior, *x.shape[1:])[:, :n_recon, 0]
        akl = average_kl(model, x, n_samples=avg_kl_samples, seed=seed + 1)
        mkl = marginal_kl(
            model,
            x,
            S=marginal_kl_samples,
            seed=seed + 2,
            sampling="stratified",
            progress=False,
            warn=False,
        )
    finally:
        model.train(was_training)
    metrics.update(
        avg_kl=akl.value,
        avg_kl_se=akl.stderr,
        marginal_kl=mkl.value,
        marginal_kl_se=mkl.stderr,
        mutual_info=mkl.mutual_info,
        mutual_info_se=mkl.mutual_info_stderr,
        effective_tiles=effective_tiles(mkl.mutual_info),
    )
    arrays = {"z": z.float().cpu().numpy(), "recon": _to_uint8(recon)}
    return metrics, arrays


# --------------------------------------------------------------------------------------------
# Configuration, hashing, code version
# --------------------------------------------------------------------------------------------
def _classifier_sha256() -> str | None:
    meta = _REPO / "geco_core" / "assets" / "mnist_classifier.json"
    try:
        return json.loads(meta.read_text()).get("sha256")
    except (OSError, ValueError):
        return None


def _load_data(seed: int, n: int = 7):
    from data_builders import load_dataset

    with warnings.catch_warnings():
        # The fallback to the vendored 10k test split is reported in the provenance instead.
        warnings.simplefilter("ignore", UserWarning)
        return load_dataset("micro-mnist", split="train", seed=seed, n=n)


def _data_description(ds) -> dict[str, Any]:
    meta = getattr(ds, "meta", {}) or {}
    idx = meta.get("indices")
    pool = meta.get("pool_meta", {}) or {}
    return {
        "dataset": "micro-mnist",
        "source": getattr(ds, "source", None),
        "labels": [int(v) for v in ds.labels.tolist()],
        "pool_indices": None if idx is None else [int(v) for v in torch.as_tensor(idx).tolist()],
        "pool": meta.get("pool"),
        "pool_mode": pool.get("mode"),
    }


def experiment_config(
    profile: str = "cpu", seed: int = 0, data: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Everything the cached numbers depend on, as a JSON-able dict (hashed by
    :func:`config_hash`): profile, seed, the settings, the runs, the data (source and which
    images), the classifier's sha256 and the cache format.

    ``data`` is :func:`_data_description` of the loaded Micro-MNIST (loaded here when None).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    settings = settings_for(profile, **overrides)
    for key in ("threads", "workers"):  # speed only: not part of what the numbers depend on
        settings.pop(key, None)
    if data is None:
        data = _data_description(_load_data(seed))
    return {
        "experiment": "micro_mnist",
        "cache_format": CACHE_FORMAT,
        "profile": profile,
        "seed": seed,
        "settings": settings,
        "runs": [dataclasses.asdict(s) for s in run_specs(settings)],
        "data": dict(data),
        "classifier_sha256": _classifier_sha256(),
    }


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys): equal configs, equal hashes.

    Example:
        >>> config_hash({"a": 1, "b": [2]}) == config_hash({"b": [2], "a": 1})
        True
    """
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node):
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


#: Top-level names of this module that only present results (tables, verdicts, the CLI):
#: left out of :func:`code_version`, so editing them keeps a cache valid.
PRESENTATION_NAMES: frozenset[str] = frozenset(
    {"_TABLE_COLUMNS", "fig8_table", "sweep_table", "_monotone", "_verdict", "paper_comparison"}
    | {"main", "__all__"}
)


def _top_level_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None


def _module_fingerprint(name: str, skip: frozenset[str] | set[str] = frozenset()) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
        return "missing"
    source = Path(spec.origin).read_text(encoding="utf-8")
    tree = _StripDocstrings().visit(ast.parse(source))
    tree.body = [node for node in tree.body if _top_level_name(node) not in skip]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def code_version(
    modules: Sequence[str] = CODE_MODULES,
    skip: Mapping[str, set[str] | frozenset[str]] | None = None,
) -> str:
    """A fingerprint of the code that produces the numbers: sha256 over the syntax trees of
    ``modules`` (:data:`CODE_MODULES`) with docstrings removed, so edits to comments,
    docstrings or formatting keep a cache valid and any change of code makes it stale.

    ``skip`` maps a module to top-level names left out (default: this module's
    :data:`PRESENTATION_NAMES`: tables and the CLI do not change the cached numbers).

    Example:
        >>> len(code_version(["geco_core.profiles"]))
        16
    """
    parts = "\n".join(f"{m}:{h}" for m, h in code_fingerprints(modules, skip).items())
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def code_fingerprints(
    modules: Sequence[str] = CODE_MODULES,
    skip: Mapping[str, set[str] | frozenset[str]] | None = None,
) -> dict[str, str]:
    """Per-module fingerprints behind :func:`code_version` (saved in the provenance, so a
    stale cache can name the modules that changed)."""
    skip = {"geco_core.micro_mnist": PRESENTATION_NAMES} if skip is None else skip
    return {m: _module_fingerprint(m, skip.get(m, frozenset())) for m in modules}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _git_commit() -> str | None:
    """``git rev-parse HEAD`` of the repository, or None outside a git checkout."""
    out = _git("rev-parse", "HEAD")
    return (out or "").strip() or None


def _git_uncommitted() -> list[str] | None:
    """Files of :data:`CODE_MODULES` that differ from HEAD (modified or untracked): the commit
    alone does not identify the code then (the code fingerprints do). None outside git."""
    paths = []
    for name in CODE_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            paths.append(os.path.relpath(spec.origin, _REPO))
    out = _git("status", "--porcelain", "--", *paths)
    if out is None:
        return None
    return sorted(line[3:].strip() for line in out.splitlines() if line.strip())


def _versions() -> dict[str, str]:
    import geco_core

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "geco_core": getattr(geco_core, "__version__", "?"),
        "platform": platform.platform(),
    }
    for mod in ("pandas", "matplotlib", "zuko"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One trained and evaluated model.

    Attributes:
        spec: which objective / constraint / κ.
        metrics: the final training state (``lambda``, ``beta``, ``sigma``, ``c_ma``,
            ``train_kl``, ``train_mse``) and the evaluation of :func:`evaluate_model`.
        z: posterior samples ``[n, n_posterior, 2]``; recon: ``[n, n_recon, 28, 28]`` uint8.
        curves: training log columns (``step``, ``kl``, ``mse``, ``lambda``, ``beta``, …).
        wall_time: training seconds.
    """

    spec: RunSpec
    metrics: dict[str, float]
    z: np.ndarray
    recon: np.ndarray
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    wall_time: float = float("nan")


_CURVE_COLUMNS = ("step", "kl", "mse", "lambda", "beta", "c_ma", "sigma")


def _lambda_init(spec: RunSpec, settings: Mapping[str, Any]) -> float:
    """λ⁰ of a GECO run: the spec's own, else the settings' (a number or one per constraint)."""
    if spec.lambda_init is not None:
        return float(spec.lambda_init)
    li = settings["lambda_init"]
    return float(li[spec.constraint] if isinstance(li, Mapping) else li)


def _train_config(spec: RunSpec, settings: Mapping[str, Any], seed: int, out_dir: str):
    from geco_core.train import TrainConfig

    kw: dict[str, Any] = {}
    if spec.objective == "geco":
        kw.update(
            constraint=spec.constraint,
            kappa=float(spec.kappa),
            nu=settings["nu"],
            alpha=settings["alpha"],
            lambda_init=_lambda_init(spec, settings),
            geco_kwargs={
                k: (tuple(v) if isinstance(v, list) else v)
                for k, v in settings["geco_kwargs"].items()
            },
        )
    return TrainConfig(
        model="vae_nvp",
        dataset="micro-mnist",
        objective=spec.objective,
        steps=int(settings["steps"]),
        batch_size=7,
        lr=settings["lr"],
        sigma=settings["sigma"],
        learn_sigma=settings["learn_sigma"],
        seed=seed,
        log_every=int(settings["log_every"]),
        ckpt_every=int(settings["steps"]),
        out_dir=out_dir,
        device="auto",
        profile=settings["model_profile"],
        download=False,
        dataset_kwargs={"n": 7},
        model_kwargs=dict(settings["model_kwargs"]),
        progress=False,
        **kw,
    )


def train_run(
    spec: RunSpec,
    settings: Mapping[str, Any],
    seed: int,
    data,
    classifier: torch.nn.Module | None,
    run_dir: str | os.PathLike | None = None,
) -> RunResult:
    """Train one model with :func:`geco_core.train.fit` and evaluate it.

    Every run has the same architecture, initial weights (``seed``), batches (all 7 points
    each step) and number of steps. ``run_dir`` keeps the run's metrics log and checkpoint
    (default: a temporary folder, deleted afterwards).
    """
    from geco_core.train import fit, read_log

    with contextlib.ExitStack() as stack:
        if run_dir is None:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="micro_mnist_"))
        else:
            out = os.fspath(Path(run_dir) / spec.name)
        cfg = _train_config(spec, settings, seed, out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the data fallback (see provenance)
            res = fit(cfg, overwrite=True)
        log = read_log(res.log_path)
    last = res.metrics
    metrics = {
        "lambda": float(last.get("lambda", math.nan)),
        "beta": float(last.get("beta", math.nan)),
        "sigma": float(last.get("sigma", math.nan)),
        "c_ma": float(last.get("c_ma", math.nan)),
        "train_kl": float(last.get("kl", math.nan)),
        "train_mse": float(last.get("mse", math.nan)),
        "steps": float(res.step),
    }
    model = res.model
    x = data.x.to(next(model.parameters()).device)
    ev, arrays = evaluate_model(
        model,
        x,
        data.labels,
        classifier,
        n_posterior=int(settings["n_posterior"]),
        n_recon=int(settings["n_recon"]),
        marginal_kl_samples=int(settings["marginal_kl_samples"]),
        avg_kl_samples=int(settings["avg_kl_samples"]),
        seed=seed,
    )
    metrics.update(ev)
    curves = {c: log[c].to_numpy(dtype=np.float64) for c in _CURVE_COLUMNS if c in log}
    return RunResult(spec, metrics, arrays["z"], arrays["recon"], curves, float(res.wall_time))


# --------------------------------------------------------------------------------------------
# The experiment and its cache
# --------------------------------------------------------------------------------------------
@dataclass
class MicroMNISTResult:
    """Everything the chapter shows: data, one :class:`RunResult` per run, provenance.

    Attributes:
        x: the 7 digits ``[7, 28, 28]`` uint8; labels: ``[7]`` int.
        runs: run name (:attr:`RunSpec.name`) → result, Fig. 8's three first.
        config: :func:`experiment_config`; provenance: see :func:`save_cache`.
        from_cache: whether the runs were loaded from a valid cache.
    """

    x: np.ndarray
    labels: np.ndarray
    runs: dict[str, RunResult]
    config: dict[str, Any]
    provenance: dict[str, Any]
    from_cache: bool = False

    @property
    def fig8(self) -> list[RunResult]:
        """The three runs of Fig. 8, left to right."""
        return [self.runs[s.name] for s in FIG8_RUNS]

    @property
    def ablations(self) -> list[RunResult]:
        """The runs of ``settings["ablations"]`` (what we tried besides the chapter's setup)."""
        return [self.runs[RunSpec(**ab).name] for ab in self.config["settings"]["ablations"]]

    def sweep(self, constraint: str) -> list[RunResult]:
        """The κ sweep of ``"re"`` (κ ascending: constraint weakening) or ``"cla"`` (κ
        descending: weakening)."""
        key = {"re": "re_kappas", "cla": "cla_kappas"}.get(constraint)
        if key is None:
            raise ValueError(f"constraint must be 're' or 'cla', got {constraint!r}")
        kappas = sorted(self.config["settings"][key], reverse=constraint == "cla")
        return [self.runs[RunSpec("geco", constraint, float(k)).name] for k in kappas]


@dataclass
class CacheStatus:
    """Whether a cache folder holds valid results for a config; ``reason`` says why not."""

    valid: bool
    reason: str


_FILES = ("arrays.npz", "metrics.json", "provenance.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cache_status(cache_dir: str | os.PathLike, config: Mapping[str, Any]) -> CacheStatus:
    """Is ``cache_dir`` a valid cache of ``config``?

    Stale (or absent) when: a file is missing or unreadable; the files' sha256 differ from
    those recorded in ``provenance.json`` (a partial or edited cache); the cache format, the
    :func:`config_hash` (profile, seed, settings, runs, data, classifier) or the
    :func:`code_version` differ from the current ones.
    """
    d = Path(cache_dir)
    missing = [f for f in _FILES if not (d / f).is_file()]
    if missing:
        return CacheStatus(False, f"absent: no {', '.join(missing)} in {d}")
    try:
        prov = json.loads((d / "provenance.json").read_text())
    except (OSError, ValueError) as e:
        return CacheStatus(False, f"unreadable provenance.json ({e})")
    for name, digest in prov.get("files", {}).items():
        if not (d / name).is_file() or _sha256(d / name) != digest:
            return CacheStatus(False, f"stale: {name} does not match its recorded sha256")
    if prov.get("cache_format") != CACHE_FORMAT:
        return CacheStatus(False, f"stale: cache format {prov.get('cache_format')}")
    want = config_hash(config)
    if prov.get("config_hash") != want:
        return CacheStatus(
            False, f"stale: config hash {str(prov.get('config_hash'))[:12]} != {want[:12]}"
        )
    code = code_version()
    if prov.get("code_version") != code:
        old = prov.get("code_fingerprints", {})
        changed = [m for m, h in code_fingerprints().items() if old.get(m) != h]
        where = f" (changed: {', '.join(changed)})" if old and changed else ""
        return CacheStatus(
            False, f"stale: code version {prov.get('code_version')} != {code}{where}"
        )
    return CacheStatus(True, f"valid (config {want[:12]}, code {code})")


def save_cache(result: MicroMNISTResult, cache_dir: str | os.PathLike) -> Path:
    """Write ``result`` to ``cache_dir``: ``arrays.npz`` (digits, posterior samples,
    reconstructions, training curves), ``metrics.json`` and ``provenance.json`` (config and
    its hash, code version, git commit, command, seed, package versions, wall times, data
    source, and the files' sha256), each atomically, provenance last."""
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"x": result.x, "labels": result.labels}
    metrics: dict[str, Any] = {}
    for name, run in result.runs.items():
        arrays[f"{name}__z"] = run.z.astype(np.float32)
        arrays[f"{name}__recon"] = run.recon.astype(np.uint8)
        for c, v in run.curves.items():
            arrays[f"{name}__curve__{c}"] = np.asarray(v, dtype=np.float32)
        metrics[name] = {
            "spec": dataclasses.asdict(run.spec),
            "metrics": run.metrics,
            "wall_time": run.wall_time,
        }
    with tempfile.TemporaryFile() as buf:
        np.savez_compressed(buf, **arrays)
        buf.seek(0)
        _atomic_write(d / "arrays.npz", buf.read())
    _atomic_write(d / "metrics.json", (json.dumps(metrics, indent=1) + "\n").encode())
    prov = dict(result.provenance)
    prov["files"] = {f: _sha256(d / f) for f in ("arrays.npz", "metrics.json")}
    _atomic_write(d / "provenance.json", (json.dumps(prov, indent=1) + "\n").encode())
    result.provenance = prov
    return d


def load_cache(cache_dir: str | os.PathLike) -> MicroMNISTResult:
    """Read a cache written by :func:`save_cache` (check it with :func:`cache_status`)."""
    d = Path(cache_dir)
    prov = json.loads((d / "provenance.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    with np.load(d / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    runs: dict[str, RunResult] = {}
    for name, entry in metrics.items():
        prefix = f"{name}__curve__"
        curves = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        runs[name] = RunResult(
            RunSpec(**entry["spec"]),
            {k: float(v) for k, v in entry["metrics"].items()},
            arrays[f"{name}__z"],
            arrays[f"{name}__recon"],
            curves,
            float(entry["wall_time"]),
        )
    return MicroMNISTResult(
        arrays["x"], arrays["labels"], runs, prov["config"], prov, from_cache=True
    )


def _worker_init(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(int(threads))
    warnings.simplefilter("ignore", UserWarning)


def _train_parallel(specs, settings, seed, ds, classifier, run_dir, workers, threads, bar):
    """:func:`train_run` of every spec in ``workers`` spawned processes; name → result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    out: dict[str, RunResult] = {}
    with ProcessPoolExecutor(
        max_workers=min(workers, len(specs)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(threads,),
    ) as pool:
        futures = {
            pool.submit(train_run, spec, settings, seed, ds, classifier, run_dir): spec
            for spec in specs
        }
        for fut in as_completed(futures):
            spec = futures[fut]
            out[spec.name] = fut.result()
            bar.set_postfix_str(spec.name)
            bar.update(1)
    return out


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _profile_cache_dir(cache_dir: str | os.PathLike | None, profile: str) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / profile


def run_experiment(
    profile: str = "cpu",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_ROOT,
    *,
    use_cache: bool | None = None,
    force: bool = False,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    command: str | None = None,
    **overrides: Any,
) -> MicroMNISTResult:
    """Train (or load) every model of the chapter and evaluate it.

    Args:
        profile: ``"smoke"``, ``"cpu"`` or ``"gpu"`` (:data:`SETTINGS`).
        seed: data selection (which 7 digits), initial weights, batches and sampling noise.
        cache_dir: cache root; results live in ``cache_dir/<profile>/``. None: no cache.
        use_cache: read and write the cache; default: every profile but ``smoke`` (CI never
            reads the book's cache).
        force: retrain even when the cache is valid (and rewrite it).
        run_dir: keep each run's metrics log and checkpoint under ``run_dir/<run>``.
        progress: a text progress bar over the runs.
        command: how this was invoked, for the provenance (default: this call).
        **overrides: settings to change (:func:`settings_for`), e.g. ``steps=100``.

    Returns:
        A :class:`MicroMNISTResult`; ``from_cache`` says whether it was loaded.
    """
    from tqdm import tqdm

    speed = settings_for(profile, **overrides)
    threads, workers = speed["threads"], int(speed["workers"])
    ds = _load_data(seed)
    data_desc = _data_description(ds)
    config = experiment_config(profile, seed, data=data_desc, **overrides)
    settings = config["settings"]
    if use_cache is None:
        use_cache = profile != "smoke"
    cdir = _profile_cache_dir(cache_dir, profile) if use_cache else None
    if cdir is not None and not force:
        status = cache_status(cdir, config)
        if status.valid:
            return load_cache(cdir)
        print(f"micro_mnist: cache {cdir}: {status.reason}; training", file=sys.stderr)

    from geco_core.models import load_pretrained_classifier

    classifier = load_pretrained_classifier()
    specs = run_specs(settings)
    runs: dict[str, RunResult] = {}
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(specs), desc=f"micro-mnist [{profile}]", disable=not progress, file=sys.stderr
    )
    with _torch_threads(threads):
        used_threads = torch.get_num_threads()
        if workers <= 1 or len(specs) == 1:
            for spec in specs:
                bar.set_postfix_str(spec.name)
                runs[spec.name] = train_run(spec, settings, seed, ds, classifier, run_dir)
                bar.update(1)
        else:
            done = _train_parallel(
                specs, settings, seed, ds, classifier, run_dir, workers, threads, bar
            )
            runs = {spec.name: done[spec.name] for spec in specs}
    bar.close()
    wall = time.perf_counter() - t0
    if command is None:
        extra = "".join(f", {k}={v!r}" for k, v in overrides.items())
        command = f"geco_core.micro_mnist.run_experiment(profile={profile!r}, seed={seed}{extra})"
    provenance = {
        "experiment": "micro_mnist (Appendix E.1, Fig. 8)",
        "cache_format": CACHE_FORMAT,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "git_uncommitted": _git_uncommitted(),
        "command": command,
        "profile": profile,
        "seed": seed,
        "config": config,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "code_fingerprints": code_fingerprints(),
        "versions": _versions(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": used_threads,
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "wall_time_s": round(wall, 2),
        "run_wall_time_s": {k: round(r.wall_time, 2) for k, r in runs.items()},
        "data": data_desc,
    }
    result = MicroMNISTResult(
        _to_uint8(ds.x[:, 0]), ds.labels.numpy().astype(np.int64), runs, config, provenance
    )
    if cdir is not None:
        save_cache(result, cdir)
    return result


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
_TABLE_COLUMNS = {
    "λ (final)": "lambda",
    "β = 1/λ": "beta",
    "MSE": "mse",
    "avg KL": "avg_kl",
    "marginal KL": "marginal_kl",
    "I(n; z)": "mutual_info",
    "e^I (eff. tiles)": "effective_tiles",
    "self-class. rate": "self_class_rate",
    "E[w_own]": "own_weight",
    "spread √det Σ": "spread",
    "p_true (CLA)": "p_true",
}


def fig8_table(result: MicroMNISTResult, reference: bool = True, ablations: bool = False):
    """The numbers beside Fig. 8: one row per model, plus (``reference``) the values of a
    perfect tiling of the prior into 7 equiprobable tiles (Prop. 2) and (``ablations``) the
    ablation runs."""
    import pandas as pd

    rows = []
    for run in result.fig8 + (result.ablations if ablations else []):
        row = {"constraint": run.spec.constraint or "—", "κ": run.spec.kappa}
        row.update({col: run.metrics.get(key, math.nan) for col, key in _TABLE_COLUMNS.items()})
        rows.append(pd.Series(row, name=run.spec.label))
    df = pd.DataFrame(rows)
    if reference:
        ref = {col: math.nan for col in df.columns}
        ref.update(
            {
                "constraint": "—",
                "avg KL": LN7,
                "marginal KL": 0.0,
                "I(n; z)": LN7,
                "e^I (eff. tiles)": 7.0,
                "self-class. rate": 1.0,
                "E[w_own]": 1.0,
            }
        )
        df.loc["perfect tiling (Prop. 2)"] = pd.Series(ref)
    df.index.name = "model"
    return df


def sweep_table(result: MicroMNISTResult):
    """The κ sweep: one row per (constraint, κ), ordered from the strongest to the weakest
    constraint, with the mode counts and the marginal KL."""
    import pandas as pd

    rows = []
    for constraint in ("re", "cla"):
        for run in result.sweep(constraint):
            m = run.metrics
            rows.append(
                {
                    "constraint": constraint.upper(),
                    "κ": run.spec.kappa,
                    "λ (final)": m.get("lambda", math.nan),
                    "MSE": m.get("mse", math.nan),
                    "p_true": m.get("p_true", math.nan),
                    "avg KL": m.get("avg_kl", math.nan),
                    "marginal KL": m.get("marginal_kl", math.nan),
                    "e^I (eff. tiles)": m.get("effective_tiles", math.nan),
                    "modes (posterior means)": m.get("n_modes", math.nan),
                    "distinct digits": m.get("distinct_digits", math.nan),
                    "self-class. rate": m.get("self_class_rate", math.nan),
                }
            )
    return pd.DataFrame(rows).set_index(["constraint", "κ"])


def _monotone(values: Sequence[float], decreasing: bool = True) -> bool:
    v = [x for x in values if not math.isnan(x)]
    pairs = list(zip(v, v[1:]))
    return bool(pairs) and all((a >= b) if decreasing else (a <= b) for a, b in pairs)


def _verdict(holds: bool, tie: bool = False) -> str:
    return "no difference" if tie else ("yes" if holds else "no")


def paper_comparison(result: MicroMNISTResult, rel_tol: float = 0.05):
    """The paper's qualitative claims next to what our numbers say (a DataFrame).

    "holds here" is ``"yes"``, ``"no"``, or ``"no difference"`` when the compared values agree
    within ``rel_tol`` (relative) — e.g. self-classification rates that are all 1.
    """
    import pandas as pd

    elbo, re, cla = result.fig8
    e, r, c = elbo.metrics, re.metrics, cla.metrics

    def fmt(*vals: float) -> str:
        return " / ".join(f"{v:.3g}" for v in vals)

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= rel_tol * max(abs(a), abs(b), 1e-12)

    def geco_better(key: str, lower_is_better: bool, target: float = 0.0) -> str:
        def dist(m):
            return abs(m[key] - target)

        if lower_is_better:
            both = dist(r) < dist(e) and dist(c) < dist(e)
        else:
            both = r[key] > e[key] and c[key] > e[key]
        tie = close(dist(r), dist(e)) and close(dist(c), dist(e))
        return _verdict(both, tie and not both)

    rows = [
        {
            "claim (paper)": "ELBO posteriors do not form a tight tiling; GECO tightens the "
            "tiles (Fig. 8 caption)",
            "our measure": "marginal KL (holes; 0 for a tiling), ELBO / RE / CLA",
            "ours": fmt(e["marginal_kl"], r["marginal_kl"], c["marginal_kl"]),
            "holds here": geco_better("marginal_kl", lower_is_better=True),
        },
        {
            "claim (paper)": "… (same claim, tile overlap)",
            "our measure": "self-classification rate (1 = no overlap), ELBO / RE / CLA",
            "ours": fmt(e["self_class_rate"], r["self_class_rate"], c["self_class_rate"]),
            "holds here": geco_better("self_class_rate", lower_is_better=False),
        },
        {
            "claim (paper)": f"a tight tiling has average KL = ln 7 = {LN7:.3f} (Prop. 2); "
            "GECO's is closer to it",
            "our measure": "average KL − ln 7, ELBO / RE / CLA",
            "ours": fmt(e["avg_kl"] - LN7, r["avg_kl"] - LN7, c["avg_kl"] - LN7),
            "holds here": geco_better("avg_kl", lower_is_better=True, target=LN7),
        },
    ]
    for constraint, weaker in (("re", "larger κ"), ("cla", "smaller κ")):
        runs = result.sweep(constraint)
        tiles = [run.metrics["effective_tiles"] for run in runs]
        kappas = ", ".join(f"{run.spec.kappa:g}" for run in runs)
        rows.append(
            {
                "claim (paper)": f"weaker {constraint.upper()} constraint ({weaker}) collapses "
                "modes (App. E.1)",
                "our measure": f"e^I(n;z) for κ = {kappas}",
                "ours": fmt(*tiles),
                "holds here": _verdict(
                    _monotone(tiles, decreasing=True) and tiles[0] > tiles[-1],
                    close(tiles[0], tiles[-1]),
                ),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# CLI: python -m geco_core.micro_mnist --profile cpu
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> MicroMNISTResult:
    """Train (or load) the chapter's models at a profile and print the tables."""
    p = argparse.ArgumentParser(prog="python -m geco_core.micro_mnist", description=__doc__)
    p.add_argument("--profile", default="cpu", choices=sorted(SETTINGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_ROOT), help="'' for no cache")
    p.add_argument("--force", action="store_true", help="retrain even if the cache is valid")
    p.add_argument("--run-dir", default=None, help="keep each run's log and checkpoint here")
    p.add_argument("--workers", type=int, default=None, help="parallel training processes")
    args = p.parse_args(argv)
    speed = {} if args.workers is None else {"workers": args.workers}
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m geco_core.micro_mnist", *argv_list])
    result = run_experiment(
        args.profile,
        args.seed,
        args.cache_dir or None,
        use_cache=bool(args.cache_dir),
        force=args.force,
        run_dir=args.run_dir,
        command=command,
        **speed,
    )
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(fig8_table(result).round(4).to_string())
        print(sweep_table(result).round(4).to_string())
        print(paper_comparison(result).to_string())
    print(
        f"from_cache={result.from_cache} wall_time_s={result.provenance.get('wall_time_s')}",
        file=sys.stderr,
    )
    return result


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: worker processes and pickles
    # then see one set of classes named geco_core.micro_mnist.*.
    from geco_core.micro_mnist import main as _main

    _main()
