"""The training engine: ``fit(config)`` and ``python -m geco_core.train``.

One loop trains any model of :mod:`geco_core.models` on any dataset of :mod:`data_builders`
with any objective of :mod:`geco_core.objectives` (ELBO, GECO, hand-annealed β, β-VAE):

- Adam (the paper's optimiser, §4.1) at :func:`default_lr`; GECO's α and ν from
  :func:`default_geco_settings` (gpu profile: the paper's lr and α = 0.99; cpu profile: larger
  lr and α = 0.9, so that runs of minutes move and λ does not run away — see both docstrings).
- Batches are a pure function of ``(seed, step, rank)`` (:func:`batch_indices`): a fresh
  permutation of the training set per epoch, each optimizer step takes the next
  ``batch_size · world_size`` indices and rank r its r-th slice. Resuming at step t therefore
  sees exactly the batches an uninterrupted run sees, and the ranks of a distributed run train
  on disjoint shards of every global batch.
- A JSONL metrics log (``metrics.jsonl``, one row every ``log_every`` steps; read it with
  :func:`read_log`): step, KL, MSE, NLL, β, λ, constraint moving average, wall time — the
  curves of Figure 3.
- An atomic checkpoint (``checkpoint.pt``) every ``ckpt_every`` steps and at the end, with the
  model, optimizer, objective (GECO's λ, C_ma, t) and every RNG state; ``resume=True``
  continues bit-for-bit (:mod:`geco_core.checkpoint`). A checkpoint of another model or of a
  different configuration is refused.
- ``torchrun --nproc_per_node=N -m geco_core.train ...`` trains with DistributedDataParallel
  (gloo on CPU, NCCL on CUDA); GECO all-reduces Ĉ so λ is identical on every rank; only rank 0
  writes logs and checkpoints.

CLI example (the paper's Figure 3 setting, scaled down)::

    python -m geco_core.train --model convdraw --dataset mnist-rotate --objective geco \\
        --constraint re --kappa 0.1 --steps 2000 --out runs/rotate-geco

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.4, Algorithm 1, §4.1 (Adam, lr 1e-5 ConvDraw,
    1e-6 VAE+NVP, α = 0.99), Figure 3.

Example:
    >>> cfg = TrainConfig(model="conv_vae", dataset="mnist", steps=2, batch_size=8,
    ...                   progress=False, model_kwargs={"latent_dim": 2})
    >>> cfg.objective, default_lr("convdraw", "gpu")
    ('geco', 1e-05)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from geco_core import checkpoint as ckpt
from geco_core.objectives import ELBO as ELBOObjective
from geco_core.objectives import (
    OBJECTIVES,
    AnnealedBeta,
    BetaVAE,
    GECOObjective,
    Objective,
)

__all__ = [
    "TrainConfig",
    "FitResult",
    "fit",
    "default_lr",
    "default_geco_settings",
    "resolve_device",
    "batch_indices",
    "build_objective",
    "read_log",
    "load_run",
    "main",
    "MODEL_NAMES",
    "TRAIN_PROFILES",
]

MODEL_NAMES: tuple[str, ...] = ("conv_vae", "vae_nvp", "convdraw")
TRAIN_PROFILES: tuple[str, ...] = ("auto", "smoke", "cpu", "gpu")
LOG_NAME = "metrics.jsonl"
CKPT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"

#: Config keys that may change when a run is resumed (they do not change the trajectory).
RESUME_MAY_DIFFER = (
    "steps",
    "out_dir",
    "progress",
    "log_every",
    "ckpt_every",
    "device",
    "data_root",
    "download",
)

# Learning rates (Adam). gpu: the paper's §4.1 values ("learning rate of 1e-5 for ConvDraw and
# 1e-6 for the VAE+NVP"); the plain conv VAE is not trained in §4.1 and gets ConvDraw's value.
# cpu/smoke: the paper's rates are tuned for ~10⁵–10⁶ steps of large models; a CPU run of the
# book has ~10³ steps of small models, where 1e-5 would leave the model at initialisation.
# Adam's standard 1e-3 trains the small conv VAE and ConvDRAW stably; the NVP posterior is
# less stable (its coupling layers amplify large updates), hence 3e-4.
_DEFAULT_LR: dict[str, dict[str, float]] = {
    "gpu": {"convdraw": 1e-5, "vae_nvp": 1e-6, "conv_vae": 1e-5},
    "cpu": {"convdraw": 1e-3, "vae_nvp": 3e-4, "conv_vae": 1e-3},
}


def default_lr(model: str, profile: str) -> float:
    """Adam learning rate for ``model`` under ``profile`` (``"gpu"``, ``"cpu"`` or ``"smoke"``).

    gpu follows the paper (§4.1): 1e-5 for ConvDRAW, 1e-6 for VAE+NVP (1e-5 for the plain conv
    VAE, which §4.1 does not train). cpu and smoke use 1e-3 (conv VAE, ConvDRAW) and 3e-4
    (VAE+NVP): CPU runs are ~1000× shorter than the paper's, so the step must be larger for the
    model to leave its initialisation in minutes.

    Example:
        >>> default_lr("vae_nvp", "gpu"), default_lr("conv_vae", "cpu")
        (1e-06, 0.001)
    """
    if profile not in ("smoke", "cpu", "gpu"):
        raise ValueError(f"unknown profile {profile!r}; valid choices: smoke, cpu, gpu")
    table = _DEFAULT_LR["cpu" if profile == "smoke" else profile]
    if model not in table:
        raise ValueError(f"unknown model {model!r}; valid choices: {', '.join(MODEL_NAMES)}")
    return table[model]


# GECO's moving-average slowness α and multiplier step ν. gpu: α = 0.99 (§4.1) and ν = 1.0
# (geco_core.GECO's default; the paper gives no ν). cpu/smoke: α = 0.9. Algorithm 1 needs the
# moving average to track E[C] faster than the model changes; at the paper's lr (1e-5) the
# model changes slowly and a ~100-step memory (α = 0.99) is fine, but at the CPU lr (1e-3) the
# reconstruction error of a fresh model halves within ~50 steps, so C_ma at α = 0.99 lags far
# behind Ĉ and keeps growing λ long after the constraint is met. Measured (conv VAE, MNIST,
# κ = 0.1, batch 32, ν = 1): α = 0.99 drove λ to 1e12 in 300 steps (a ConvDRAW measured before its
# canvas-initialisation fix overflowed to NaN); α = 0.9 let λ follow the constraint (≈ 3e5 at step
# 600 with MSE still above κ²).
_DEFAULT_GECO: dict[str, dict[str, float]] = {
    "gpu": {"alpha": 0.99, "nu": 1.0},
    "cpu": {"alpha": 0.9, "nu": 1.0},
}


def default_geco_settings(profile: str) -> dict[str, float]:
    """GECO's ``alpha`` and ``nu`` for ``profile``: the paper's α = 0.99 on gpu, α = 0.9 on
    cpu/smoke (the moving average must be faster than a model trained at the CPU lr; see the
    comment above ``_DEFAULT_GECO``); ν = 1.0 (GECO's default) on all.

    Example:
        >>> default_geco_settings("gpu")
        {'alpha': 0.99, 'nu': 1.0}
    """
    if profile not in ("smoke", "cpu", "gpu"):
        raise ValueError(f"unknown profile {profile!r}; valid choices: smoke, cpu, gpu")
    return dict(_DEFAULT_GECO["cpu" if profile == "smoke" else profile])


def _dataset_names() -> tuple[str, ...]:
    """Names :func:`data_builders.load_dataset` accepts."""
    from data_builders.registry import DATASETS

    return tuple(DATASETS)


def _constraint_names() -> tuple[str, ...] | None:
    try:
        import geco_core.constraints as C
    except ImportError:
        return None
    for attr in ("CONSTRAINTS", "CONSTRAINT_NAMES"):
        names = getattr(C, attr, None)
        if names:
            return tuple(names)
    return None


def _choice_error(arg: str, value: Any, valid: Sequence[str]) -> ValueError:
    return ValueError(f"unknown {arg} {value!r}; valid choices: {', '.join(valid)}")


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints as a plain dict).

    Attributes:
        model: ``"conv_vae"``, ``"vae_nvp"`` or ``"convdraw"``
            (:func:`geco_core.models.build_model`).
        dataset: a :func:`data_builders.load_dataset` name (``"mnist"``, ``"mnist-rotate"``, …).
        objective: ``"geco"``, ``"elbo"``, ``"annealed"`` (GQN σ schedule) or ``"beta_vae"``.
        constraint: GECO's constraint name(s), comma-separated for several (``"re"``,
            ``"re,pncc"``), built by :func:`geco_core.constraints.build_constraint`.
        kappa: tolerance κ > 0, one number or one per constraint.
        steps: optimizer steps in total (a resumed run continues up to ``steps``).
        batch_size: examples per step *per rank*.
        lr: Adam learning rate; ``None`` → :func:`default_lr` (model, profile).
        alpha, nu: GECO's moving-average slowness α and multiplier step ν; ``None`` →
            :func:`default_geco_settings` (profile): α = 0.99 (paper) on gpu, 0.9 on cpu.
        lambda_init: λ⁻¹ (Algorithm 1: 1). ``geco_kwargs`` holds GECO's options.
        sigma, learn_sigma: the ELBO's pixel σ (fixed, or initial value when learned).
        beta: the β-VAE's KL weight (on the per-pixel-MSE scale, see :mod:`geco_core.objectives`).
        anneal_sigma_start, anneal_sigma_end, anneal_steps: the GQN schedule (2.0 → 0.7 over
            200 000 steps in GQN; shorten ``anneal_steps`` for short runs).
        seed: seeds model initialisation, batches and sampling noise.
        log_every, ckpt_every: metrics-log and checkpoint periods in steps.
        out_dir: where ``metrics.jsonl``, ``checkpoint.pt`` and ``config.json`` go (None: no
            files).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
        profile: model sizes and default lr: ``"auto"`` (gpu on CUDA, else cpu), ``"smoke"``,
            ``"cpu"``, ``"gpu"``.
        split, data_root, download, dataset_kwargs: passed to ``load_dataset``.
        model_kwargs, constraint_kwargs, geco_kwargs: passed to the builders
            (``constraint_kwargs`` may be keyed by constraint name).
        max_grad_norm: clip the global gradient norm (None: no clipping; the paper clips none).
        max_bad_steps: raise after this many consecutive steps with a non-finite gradient
            (each such step is skipped with a warning).
        progress: show a tqdm progress bar (rank 0).
    """

    model: str = "conv_vae"
    dataset: str = "mnist"
    objective: str = "geco"
    constraint: str = "re"
    kappa: float | list[float] = 0.1
    steps: int = 1000
    batch_size: int = 64
    lr: float | None = None
    alpha: float | None = None
    nu: float | None = None
    lambda_init: float = 1.0
    sigma: float = 0.1
    learn_sigma: bool = True
    beta: float = 1e-3
    anneal_sigma_start: float = 2.0
    anneal_sigma_end: float = 0.7
    anneal_steps: int = 200_000
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 500
    out_dir: str | None = None
    device: str = "auto"
    profile: str = "auto"
    split: str = "train"
    data_root: str | None = None
    download: bool | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    constraint_kwargs: dict[str, Any] = field(default_factory=dict)
    geco_kwargs: dict[str, Any] = field(default_factory=dict)
    max_grad_norm: float | None = None
    max_bad_steps: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.kappa, (tuple, list)):
            self.kappa = [float(k) for k in self.kappa]
        if self.out_dir is not None:
            self.out_dir = os.fspath(self.out_dir)
        for name in ("dataset_kwargs", "model_kwargs", "constraint_kwargs", "geco_kwargs"):
            value = getattr(self, name)
            if isinstance(value, dict):
                # JSON-normalise (tuples → lists) so that a config equals its stored copy.
                try:
                    setattr(self, name, json.loads(json.dumps(value)))
                except TypeError as e:
                    raise ValueError(
                        f"{name} must hold JSON values only (numbers, strings, lists, dicts) "
                        f"so that checkpoints can store it: {e}"
                    ) from None
        self.validate()

    @property
    def constraints(self) -> list[str]:
        return [c.strip() for c in self.constraint.split(",") if c.strip()]

    @property
    def kappas(self) -> list[float]:
        ks = self.kappa if isinstance(self.kappa, list) else [self.kappa]
        if len(ks) == 1:
            ks = ks * len(self.constraints)
        return [float(k) for k in ks]

    def validate(self) -> None:
        """Raise ValueError naming the bad argument (unknown names list the valid choices)."""
        if self.model not in MODEL_NAMES:
            raise _choice_error("model", self.model, MODEL_NAMES)
        if self.objective not in OBJECTIVES:
            raise _choice_error("objective", self.objective, tuple(OBJECTIVES))
        names = _dataset_names()
        if self.dataset not in names:
            raise _choice_error("dataset", self.dataset, names)
        if self.profile not in TRAIN_PROFILES:
            raise _choice_error("profile", self.profile, TRAIN_PROFILES)
        if not self.constraints:
            raise ValueError("constraint must name at least one constraint")
        known = _constraint_names()
        for c in self.constraints:
            if known is not None and c not in known:
                raise _choice_error("constraint", c, known)
        ks = self.kappa if isinstance(self.kappa, list) else [self.kappa]
        if len(ks) not in (1, len(self.constraints)):
            raise ValueError(
                f"kappa must be one number or one per constraint ({len(self.constraints)}), "
                f"got {self.kappa!r}"
            )
        for k in ks:
            if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
                raise ValueError(f"kappa must be > 0 (a tolerance), got {self.kappa!r}")
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "max_bad_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        positive = ["lambda_init", "sigma", "beta", "anneal_sigma_start", "anneal_sigma_end"]
        for name in ("lr", "nu"):
            if getattr(self, name) is not None:
                positive.append(name)
        if self.max_grad_norm is not None:
            positive.append("max_grad_norm")
        for name in positive:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if self.alpha is not None and not (
            isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha < 1.0
        ):
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha!r}")
        if not isinstance(self.anneal_steps, int) or self.anneal_steps < 1:
            raise ValueError(f"anneal_steps must be an int >= 1, got {self.anneal_steps!r}")
        for name in ("dataset_kwargs", "model_kwargs", "constraint_kwargs", "geco_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (what checkpoints store)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(d))


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (unwrapped from DDP), on ``device``.
        objective: the objective with its final state (GECO's λ: ``objective.geco.lambdas``).
        config: the run's :class:`TrainConfig`.
        metrics: the last step's metrics (floats; averaged over ranks).
        step: optimizer steps completed.
        wall_time: seconds of training (summed over resumed segments).
        lr: the learning rate used; device: where it ran; profile: the resolved profile
            (GECO's resolved α and ν: ``objective.geco.alpha``, ``objective.geco.nu``).
        log_path, checkpoint_path: files written (None without ``out_dir``).
        rank, world_size: this process's place in a distributed run.
    """

    model: nn.Module
    objective: Objective
    config: TrainConfig
    metrics: dict[str, float]
    step: int
    wall_time: float
    lr: float
    device: str
    profile: str = "cpu"
    log_path: str | None = None
    checkpoint_path: str | None = None
    rank: int = 0
    world_size: int = 1


# --------------------------------------------------------------------------------------------
# Devices, seeds, batches
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    d = torch.device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if d.index is None:
            d = torch.device(f"cuda:{local_rank}")
    return d


def _derived_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    # The permutation of data_builders.iterate_minibatches: on one rank, batch_indices(t) is
    # exactly its t-th batch.
    from data_builders.batching import epoch_permutation

    return epoch_permutation(n, seed, epoch)


def batch_indices(
    n: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """Indices of rank ``rank``'s batch at optimizer step ``step``: a function of its arguments.

    Epoch e is a permutation of ``range(n)`` seeded by (seed, e) (that of
    :func:`data_builders.iterate_minibatches`, whose t-th batch this is on one rank); it is cut into
    ``n // (batch_size · world_size)`` global batches (the remainder is dropped), and rank r
    takes the r-th ``batch_size`` slice of global batch ``step mod that``. Ranks therefore see
    disjoint shards, and a run resumed at any step sees the batches of an uninterrupted one.

    Example:
        >>> a = batch_indices(10, 2, step=0, seed=0, rank=0, world_size=2)
        >>> b = batch_indices(10, 2, step=0, seed=0, rank=1, world_size=2)
        >>> len(set(a.tolist()) | set(b.tolist()))
        4
    """
    per_step = batch_size * world_size
    if per_step > n:
        raise ValueError(f"batch_size × world_size = {per_step} exceeds the dataset size n = {n}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    epoch, pos = divmod(int(step), n // per_step)
    start = pos * per_step + rank * batch_size
    return _epoch_permutation(n, seed, epoch)[start : start + batch_size].clone()


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _constraint_kwargs(cfg: TrainConfig, name: str) -> dict[str, Any]:
    kw = cfg.constraint_kwargs
    if kw and all(k in cfg.constraints and isinstance(v, dict) for k, v in kw.items()):
        return dict(kw.get(name, {}))
    return dict(kw)


class _ClassifierFeatures(nn.Module):
    """FRE features f(x): the first ``depth`` layers of the pretrained MNIST classifier."""

    def __init__(self, classifier: nn.Module, depth: int = 5) -> None:
        super().__init__()
        self.classifier, self.depth = classifier, int(depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x, depth=self.depth)


def _make_constraint(name: str, kappa: float, image_shape, kw: dict[str, Any]) -> nn.Module:
    """``build_constraint`` plus what the engine can supply: GroupedRE's ``data_shape``, the
    pretrained MNIST classifier for CLA and for ``FRE(features="classifier", depth=k)``."""
    from geco_core.constraints import build_constraint

    key = name.lower().replace("-", "_")
    if key == "grouped_re" and image_shape is not None:
        kw.setdefault("data_shape", tuple(image_shape))
    if key == "cla" and "classifier" not in kw:
        from geco_core.models import load_pretrained_classifier

        kw["classifier"] = load_pretrained_classifier()
    if key == "fre" and kw.get("features") == "classifier":
        from geco_core.models import load_pretrained_classifier

        kw["features"] = _ClassifierFeatures(load_pretrained_classifier(), kw.pop("depth", 5))
    return build_constraint(name, kappa, **kw)


def build_objective(
    cfg: TrainConfig, image_shape: Sequence[int] | None = None, profile: str = "cpu"
) -> Objective:
    """The objective named by ``cfg.objective`` with the config's hyper-parameters.

    ``image_shape`` (C, H, W) lets per-group RE constraints size themselves; ``profile``
    resolves GECO's α and ν when the config leaves them ``None``.
    """
    if cfg.objective == "elbo":
        return ELBOObjective(sigma=cfg.sigma, learn_sigma=cfg.learn_sigma)
    if cfg.objective == "annealed":
        return AnnealedBeta(cfg.anneal_sigma_start, cfg.anneal_sigma_end, cfg.anneal_steps)
    if cfg.objective == "beta_vae":
        return BetaVAE(cfg.beta)
    if cfg.objective == "geco":
        constraints = [
            _make_constraint(name, kappa, image_shape, _constraint_kwargs(cfg, name))
            for name, kappa in zip(cfg.constraints, cfg.kappas)
        ]
        hp = default_geco_settings(profile)
        return GECOObjective(
            constraints,
            alpha=hp["alpha"] if cfg.alpha is None else cfg.alpha,
            nu=hp["nu"] if cfg.nu is None else cfg.nu,
            lambda_init=cfg.lambda_init,
            **cfg.geco_kwargs,
        )
    raise _choice_error("objective", cfg.objective, tuple(OBJECTIVES))


def _target_labels(data) -> Tensor:
    """Labels of ``x`` (not of the context): the one ``x_label_columns`` column when there is
    one (MNIST-rotate, -sum: l₂), all columns otherwise."""
    labels = data.labels
    cols = (getattr(data, "meta", None) or {}).get("x_label_columns")
    if labels.dim() == 2 and cols is not None and len(cols) == 1:
        return labels[:, int(cols[0])]
    return labels


def _resolve_profile(profile: str, device: torch.device) -> str:
    if profile == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return profile


def _build_model(cfg: TrainConfig, image_shape, context_shape, profile: str) -> nn.Module:
    from geco_core.models import build_model

    return build_model(
        cfg.model,
        image_shape=tuple(image_shape),
        context_shape=None if context_shape is None else tuple(context_shape),
        profile="gpu" if profile == "gpu" else "cpu",
        **cfg.model_kwargs,
    )


def _load_data(cfg: TrainConfig):
    from data_builders.registry import load_dataset

    return load_dataset(
        cfg.dataset,
        cfg.split,
        cfg.seed,
        root=cfg.data_root,
        download=cfg.download,
        **cfg.dataset_kwargs,
    )


# --------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------


def _flatten_metrics(metrics: Mapping[str, Tensor | float]) -> dict[str, Tensor]:
    """0-d tensors stay; vectors of length 1 become scalars, longer ones ``key_0, key_1, …``."""
    flat: dict[str, Tensor] = {}
    for k, v in metrics.items():
        v = torch.as_tensor(v).detach().float().reshape(-1)
        if v.numel() == 1:
            flat[k] = v[0]
        else:
            for i in range(v.numel()):
                flat[f"{k}_{i}"] = v[i]
    return flat


def _metrics_to_floats(
    metrics: Mapping[str, Tensor | float], world_size: int, device: torch.device
) -> dict[str, float]:
    flat = _flatten_metrics(metrics)
    keys = list(flat)
    vec = torch.stack([flat[k].to(device) for k in keys])
    if world_size > 1:
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec = vec / world_size
    return dict(zip(keys, vec.cpu().double().tolist()))


_FIRST_COLS = ("step", "kl", "mse", "nll", "beta", "lambda", "c_ma", "wall_time")


def _order_row(row: dict[str, Any]) -> dict[str, Any]:
    first = [k for k in _FIRST_COLS if k in row]
    return {k: row[k] for k in first + [k for k in row if k not in first]}


def _json_default(v: Any) -> Any:
    return float(v)


def _truncate_log(path: Path, start_step: int) -> None:
    """Keep only rows of steps < ``start_step`` (rows a killed run wrote after its checkpoint
    are dropped, so the resumed log reads like an uninterrupted one)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            if json.loads(line)["step"] < start_step:
                keep.append(line)
        except (ValueError, KeyError):
            continue  # a line cut short by the kill
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def read_log(path: str | os.PathLike):
    """The metrics log of a run (its ``out_dir`` or the ``metrics.jsonl`` file) as a DataFrame.

    Columns: ``step``, ``kl``, ``mse``, ``nll``, ``beta``, ``lambda`` (``lambda_0``, … for
    several constraints), ``c_ma``, ``wall_time``, ``sigma``, ``loss``, ``grad_norm``, ``lr``…

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> _ = p.write_text('{"step": 0, "kl": 1.5}\\n{"step": 10, "kl": 1.0}\\n')
        >>> read_log(p)["kl"].tolist()
        [1.5, 1.0]
    """
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / LOG_NAME
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------------------------
# Distributed
# --------------------------------------------------------------------------------------------


def _init_distributed(device_arg: str) -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, created): join the torchrun process group if any."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1, 0, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not str(device_arg).startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank, True


def _all_reduce_grads(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Average gradients of parameters outside DDP (the ELBO's learned σ) over ranks."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world_size)


def _gather_rng(world_size: int) -> list[dict[str, Any]]:
    state = ckpt.capture_rng_state()
    if world_size == 1:
        return [state]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, state)
    return out


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(config: TrainConfig | Mapping[str, Any], *, resume: bool = False, overwrite: bool = False):
    """Train a model as ``config`` says; return a :class:`FitResult`.

    Args:
        config: a :class:`TrainConfig` (or a dict of its fields).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (exactly: same weights,
            λ and batches as an uninterrupted run on the same machine). A checkpoint of another
            model, or with a different configuration except :data:`RESUME_MAY_DIFFER`, is
            refused with a ValueError. Without a checkpoint the run starts from scratch.
        overwrite: allow a fresh run in an ``out_dir`` that already holds a checkpoint.

    Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) or with a process group already
    initialised, the model is wrapped in DistributedDataParallel, rank r trains on shard r of
    every global batch (``batch_size`` per rank), GECO's Ĉ is all-reduced (identical λ) and
    only rank 0 writes files.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    rank, world, local_rank, created_group = _init_distributed(cfg.device)
    try:
        return _fit(cfg, resume, overwrite, rank, world, local_rank)
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


def _fit(cfg: TrainConfig, resume: bool, overwrite: bool, rank: int, world: int, local_rank: int):
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device, local_rank)
    profile = _resolve_profile(cfg.profile, device)
    lr = cfg.lr if cfg.lr is not None else default_lr(cfg.model, profile)
    is_main = rank == 0

    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else None
    ckpt_path = out_dir / CKPT_NAME if out_dir is not None else None
    log_path = out_dir / LOG_NAME if out_dir is not None else None
    saved = None
    if ckpt_path is not None and ckpt_path.exists():
        if resume:
            saved = ckpt.load_checkpoint(ckpt_path)
            ckpt.check_config(
                saved["config"], cfg.to_dict(), RESUME_MAY_DIFFER, path=str(ckpt_path)
            )
            if saved.get("world_size", 1) != world:
                raise ValueError(
                    f"refusing to resume: {ckpt_path} was written by a run with world_size="
                    f"{saved.get('world_size', 1)}, this run has {world} (the batches and RNG "
                    "streams depend on it)"
                )
        elif not overwrite:
            raise ValueError(
                f"out_dir {str(out_dir)!r} already holds a checkpoint; pass resume=True "
                "(--resume) to continue it, overwrite=True (--overwrite) to start afresh, "
                "or use another out_dir"
            )

    data = _load_data(cfg)
    n = len(data)
    if cfg.batch_size * world > n:
        raise ValueError(
            f"batch_size={cfg.batch_size} × world_size={world} exceeds the {n} examples "
            f"of {cfg.dataset!r}"
        )
    # Same seed on every rank for the initial weights (DDP broadcasts rank 0's anyway).
    _seed_everything(cfg.seed)
    ctx_shape = None if data.context is None else tuple(data.context.shape[1:])
    model = _build_model(cfg, tuple(data.x.shape[1:]), ctx_shape, profile).to(device)
    objective = build_objective(cfg, tuple(data.x.shape[1:]), profile).to(device)
    params = list(model.parameters()) + list(objective.parameters())
    extra_params = list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    # Sampling noise: a different stream per rank.
    _seed_everything(_derived_seed(cfg.seed, rank, 0x5EED))

    start, wall_before = 0, 0.0
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as e:
            raise ValueError(
                f"refusing to resume: the model weights in {ckpt_path} do not fit this "
                f"{cfg.model!r} model ({e})"
            ) from None
        optimizer.load_state_dict(saved["optimizer"])
        objective.load_state_dict(saved["objective"])
        ckpt.restore_rng_state(saved["rng"][rank])
        start, wall_before = int(saved["step"]), float(saved["wall_time"])
        del saved

    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if start > 0:
            _truncate_log(log_path, start)
        else:
            if log_path.exists():
                log_path.unlink()
        (out_dir / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    x_all = data.x
    ctx_all = data.context
    labels_all = _target_labels(data)
    if device.type == "cuda":  # keep the (small) datasets on the GPU: no per-step copies
        x_all = x_all.to(device)
        ctx_all = None if ctx_all is None else ctx_all.to(device)
        labels_all = labels_all.to(device)

    if world > 1:
        ddp_model: nn.Module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp_model = model
    model.train()

    def save(step_done: int, wall: float) -> None:
        rng = _gather_rng(world)
        if not is_main or ckpt_path is None:
            return
        ckpt.save_checkpoint(
            ckpt_path,
            {
                "model_name": cfg.model,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict(),
                "rng": rng,
                "step": step_done,
                "wall_time": wall,
                "world_size": world,
                "config": cfg.to_dict(),
            },
        )

    last: dict[str, float] = {}
    bad = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=cfg.steps,
        initial=min(start, cfg.steps),
        disable=not (cfg.progress and is_main),
        desc=f"{cfg.model}/{cfg.objective}",
        dynamic_ncols=True,
    )
    log_file = open(log_path, "a") if (log_path is not None and is_main) else None
    try:
        for t in range(start, cfg.steps):
            idx = batch_indices(n, cfg.batch_size, t, cfg.seed, rank, world)
            idx = idx.to(x_all.device)
            x = x_all[idx]
            context = None if ctx_all is None else ctx_all[idx]
            labels = labels_all[idx]
            out = ddp_model(x, context)
            loss, metrics = objective(out, x, context=context, labels=labels, step=t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1 and extra_params:
                _all_reduce_grads(extra_params, world)
            grads = [p.grad for p in params if p.grad is not None]
            if cfg.max_grad_norm is not None:
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                gnorm = torch.nn.utils.get_total_norm(grads)
            if bool(torch.isfinite(gnorm)):
                optimizer.step()
                bad = 0
            else:
                bad += 1
                warnings.warn(
                    f"step {t}: non-finite gradient (loss={float(loss)}); optimizer step "
                    f"skipped ({bad} in a row)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                if bad >= cfg.max_bad_steps:
                    raise FloatingPointError(
                        f"{bad} consecutive non-finite gradients (max_bad_steps="
                        f"{cfg.max_bad_steps}); last loss {float(loss)}"
                    )
            done = t + 1
            if t == 0 or done % cfg.log_every == 0 or done == cfg.steps:
                metrics = dict(metrics, grad_norm=gnorm.detach())
                row = _metrics_to_floats(metrics, world, device)
                wall = wall_before + time.perf_counter() - t0
                row.update(step=t, epoch=(t * cfg.batch_size * world) / n, lr=lr, wall_time=wall)
                last = _order_row(row)
                if log_file is not None:
                    log_file.write(json.dumps(last, default=_json_default) + "\n")
                    log_file.flush()
                if is_main:
                    post = {"kl": f"{row['kl']:.3g}", "mse": f"{row['mse']:.3g}"}
                    if "lambda" in row:
                        post["λ"] = f"{row['lambda']:.3g}"
                    bar.set_postfix(post, refresh=False)
            if ckpt_path is not None and (done % cfg.ckpt_every == 0 or done == cfg.steps):
                save(done, wall_before + time.perf_counter() - t0)
            bar.update(1)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()

    wall = wall_before + time.perf_counter() - t0
    if not last and log_path is not None and log_path.exists() and is_main:
        # resumed a finished run: report its last logged step
        rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        last = rows[-1] if rows else {}
    model.eval()
    return FitResult(
        model=model,
        objective=objective,
        config=cfg,
        metrics=last,
        step=max(start, cfg.steps),
        wall_time=wall,
        lr=lr,
        device=str(device),
        profile=profile,
        log_path=None if log_path is None else str(log_path),
        checkpoint_path=None if ckpt_path is None else str(ckpt_path),
        rank=rank,
        world_size=world,
    )


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild a trained model and objective from a run's ``out_dir`` (or checkpoint file).

    Returns ``(model, objective, config, step)``; the model is in eval mode.
    """
    p = Path(path)
    if p.is_dir():
        p = p / CKPT_NAME
    state = ckpt.load_checkpoint(p)
    cfg = TrainConfig.from_dict(state["config"])
    device = resolve_device(device)
    data = _load_data(cfg)
    ctx_shape = None if data.context is None else tuple(data.context.shape[1:])
    profile = _resolve_profile(cfg.profile, device)
    model = _build_model(cfg, tuple(data.x.shape[1:]), ctx_shape, profile)
    model.load_state_dict(state["model"])
    objective = build_objective(cfg, tuple(data.x.shape[1:]), profile)
    objective.load_state_dict(state["objective"])
    return model.to(device).eval(), objective.to(device), cfg, int(state["step"])


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_bool(s: str) -> bool | None:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    if v in ("auto", "none"):
        return None
    raise argparse.ArgumentTypeError(f"expected true/false/auto, got {s!r}")


def _parse_mapping(s: str) -> dict[str, Any]:
    """JSON (``'{"latent_dim": 8}'``) or ``key=value,key=value`` with Python literals."""
    s = s.strip()
    if s.startswith("{"):
        return json.loads(s)
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m geco_core.train",
        description="Train a VAE with ELBO, GECO, the GQN-annealed β or a fixed-β β-VAE.",
    )
    defaults = TrainConfig.__dataclass_fields__
    helps = {
        "model": f"one of {', '.join(MODEL_NAMES)}",
        "objective": f"one of {', '.join(OBJECTIVES)}",
        "constraint": "GECO constraint name(s), comma-separated",
        "kappa": "tolerance(s) κ > 0, one per constraint",
        "lr": "Adam learning rate (default: default_lr(model, profile))",
    }
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name].default
        if isinstance(default, dataclasses._MISSING_TYPE):
            default = defaults[f.name].default_factory()
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": helps.get(f.name)}
        if f.name == "kappa":
            p.add_argument(flag, type=float, nargs="+", **kw)
        elif f.name == "download":
            p.add_argument(flag, type=_parse_bool, **kw)
        elif f.name.endswith("_kwargs"):
            p.add_argument(flag, type=_parse_mapping, **kw)
        elif f.name == "out_dir":
            p.add_argument(flag, "--out", type=str, **kw)
        elif str(f.type).startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif str(f.type).startswith("float"):  # "float" and "float | None"
            p.add_argument(flag, type=float, **kw)
        elif str(f.type).startswith("int"):
            p.add_argument(flag, type=int, **kw)
        else:
            p.add_argument(flag, type=str, **kw)
    p.add_argument("--resume", action="store_true", help="continue out_dir/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an old run")
    return p


def main(argv: Sequence[str] | None = None) -> FitResult:
    """CLI entry point: parse ``argv`` into a :class:`TrainConfig`, :func:`fit`, print a summary."""
    args = vars(_arg_parser().parse_args(argv))
    resume, overwrite = args.pop("resume"), args.pop("overwrite")
    if isinstance(args["kappa"], list) and len(args["kappa"]) == 1:
        args["kappa"] = args["kappa"][0]
    cfg = TrainConfig(**args)
    result = fit(cfg, resume=resume, overwrite=overwrite)
    if result.rank == 0:
        m = result.metrics
        lam = " ".join(f"{k}={m[k]:.4g}" for k in m if k.startswith("lambda"))
        print(
            f"done: step={result.step} kl={m.get('kl', float('nan')):.4g} "
            f"mse={m.get('mse', float('nan')):.4g} {lam} wall={result.wall_time:.1f}s",
            file=sys.stderr,
        )
    return result


if __name__ == "__main__":
    main()
