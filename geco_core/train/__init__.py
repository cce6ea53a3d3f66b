"""The training engine: ``fit(config)`` and ``python -m geco_core.train``.

One loop trains any model of :mod:`geco_core.models` on any dataset of :mod:`data_builders`
with any objective of :mod:`geco_core.objectives` (ELBO, GECO, hand-annealed β, β-VAE).

- :mod:`~geco_core.train.config` — :class:`TrainConfig`, :class:`FitResult`, the paper's
  defaults (:data:`PAPER_LR`, α = 0.99), :data:`ENGINE_VERSION` and the compile policy
  (:func:`compile_wanted`);
- :mod:`~geco_core.train.loop` — :func:`fit`, :func:`load_run`, :func:`batch_indices`,
  :func:`resolve_device`, checkpoints and DistributedDataParallel;
- :mod:`~geco_core.train.resume` — the checks that a checkpoint may be resumed
  (:class:`DataMismatchError`);
- :mod:`~geco_core.train.builders` — data, model and objective from a config;
- :mod:`~geco_core.train.log` — the JSONL metrics log (:func:`read_log`);
- :mod:`~geco_core.train.cli` — ``python -m geco_core.train`` (:func:`main`).

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.4, Algorithm 1, §4.1, Figure 3.

Example:
    >>> cfg = TrainConfig(model="vae_nvp", progress=False)
    >>> cfg.learning_rate == PAPER_LR["vae_nvp"] == 1e-6, cfg.alpha
    (True, 0.99)
"""

from geco_core.train.builders import build_objective
from geco_core.train.cli import main
from geco_core.train.config import (
    COMPILE_AUTO_MIN_STEPS,
    ENGINE_VERSION,
    PAPER_LR,
    PRECISIONS,
    RESUME_MAY_DIFFER,
    FitResult,
    TrainConfig,
    compile_wanted,
)
from geco_core.train.log import LOG_NAME, read_log
from geco_core.train.loop import (
    CKPT_NAME,
    CONFIG_NAME,
    batch_indices,
    fit,
    load_run,
    make_optimizer,
    precision_context,
    resolve_device,
)
from geco_core.train.resume import DataMismatchError

__all__ = [
    "CKPT_NAME",
    "COMPILE_AUTO_MIN_STEPS",
    "CONFIG_NAME",
    "DataMismatchError",
    "ENGINE_VERSION",
    "LOG_NAME",
    "PAPER_LR",
    "PRECISIONS",
    "RESUME_MAY_DIFFER",
    "FitResult",
    "TrainConfig",
    "batch_indices",
    "build_objective",
    "compile_wanted",
    "fit",
    "load_run",
    "main",
    "make_optimizer",
    "precision_context",
    "read_log",
    "resolve_device",
]
