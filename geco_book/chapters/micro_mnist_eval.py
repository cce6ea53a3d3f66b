"""Chapter 02's evaluation of one trained Micro-MNIST model: the tiling measures of §3.1.

What theory predicts (§3.1): for n points the optimal posteriors tile the prior into n
equiprobable tiles (Prop. 2): KL[q(z|x_i) ‖ π] = ln n, marginal KL 0, no overlap.
:func:`evaluate_model` measures exactly these properties with :mod:`geco_core.metrics.tiling`,
:func:`geco_core.metrics.average_kl` and :func:`geco_core.metrics.marginal_kl`.

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.1 (Props. 2–3), Eq. (4), §4.1.1 (average and
    marginal KL), Appendix E.1.

Example:
    >>> EVAL_KEYS
    ('n_posterior', 'n_recon', 'marginal_kl_samples', 'avg_kl_samples')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from geco_book.images import to_uint8
from geco_core.metrics import average_kl, marginal_kl
from geco_core.metrics.tiling import (
    count_modes,
    effective_tiles,
    own_weight,
    pairwise_log_q,
    posterior_spread,
    self_classification_rate,
)

__all__ = ["EVAL_KEYS", "EVAL_VERSION", "evaluate_model"]

#: Version of :func:`evaluate_model`: bump it when a change alters its numbers (the cached
#: evaluations are keyed by it and by the evaluation settings).
EVAL_VERSION = 1

#: The chapter settings :func:`evaluate_model` reads (they key its cached results).
EVAL_KEYS = ("n_posterior", "n_recon", "marginal_kl_samples", "avg_kl_samples")


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """No gradients and a forked global RNG (CPU, and ``device`` if CUDA) seeded with ``seed``."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        yield


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
    (:func:`geco_core.metrics.tiling.count_modes`), and with a classifier ``p_true``
    (mean true-label probability of the reconstructions, the CLA quantity), ``recon_accuracy``
    and ``distinct_digits`` (number of different majority labels the classifier reads in the
    n points' reconstructions).
    Arrays: ``z`` ``[n, n_posterior, d]`` float32, ``recon`` ``[n, n_recon, H, W]`` uint8.
    """
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
    arrays = {"z": z.float().cpu().numpy(), "recon": to_uint8(recon)}
    return metrics, arrays
