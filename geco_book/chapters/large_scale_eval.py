"""Chapter 03's evaluation of one trained model (cached in its record by the run store).

:func:`evaluate_run` computes the numbers of §4.1 and Appendix D for one model: σ_opt (Eq. 26)
on training points, the quantized-normal reconstruction NLL with it, the held-out MSE and the
average KL; :func:`cached_dataset` builds each data set once per process. Chapters 04 and 05
evaluate chapter 03's models with the same functions.

References:
    Rezende & Viola, "Taming VAEs", 2018: §4.1, Eq. (26), Appendix D.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from geco_book.images import to_uint8

__all__ = ["cached_dataset", "evaluate_run"]


@functools.lru_cache(maxsize=8)
def cached_dataset(name: str, split: str, seed: int, n: int | None):
    """A data set, built once per process (evaluations of many runs share it; read-only)."""
    from data_builders import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the vendored-split fallback: recorded
        kw = {} if n is None else {"n": n}
        return load_dataset(name, split=split, seed=seed, download=False, **kw)


def evaluate_run(model: torch.nn.Module, cfg, settings: Mapping[str, Any]):
    """The chapter's numbers of one trained model: ``(metrics, arrays)``.

    - σ_opt (Eq. 26) on ``n_sigma`` training points (Appendix D: "a random subset of 1000
      training datapoints");
    - on the first ``n_test`` held-out points: the quantized-normal reconstruction NLL with that
      σ (nats per pixel and bits per dimension), the MSE of the reconstructions, and the average
      KL ± its standard error (Monte Carlo over ``kl_samples`` draws where not closed form);
    - arrays: ``n_show`` held-out data, reconstructions and samples (for a conditional model,
      samples given the held-out contexts), uint8.
    """
    from geco_core.metrics import average_kl, nll_per_pixel, sigma_opt

    ev = settings["eval"]
    train = cached_dataset(cfg.dataset, "train", cfg.seed, cfg.dataset_kwargs.get("n"))
    test = cached_dataset(cfg.dataset, "test", 0, int(ev["n_test"]))
    was = model.training
    model.eval()
    try:
        ctx_tr = train.context
        sigma = sigma_opt(model, train.x, context=ctx_tr, n=int(ev["n_sigma"]), seed=1)
        nll = nll_per_pixel(model, test.x, sigma=sigma, context=test.context, seed=2)
        akl = average_kl(model, test.x, context=test.context,
                         n_samples=int(ev["kl_samples"]), seed=3)
        k = int(ev["n_show"])
        ctx = None if test.context is None else test.context[:k]
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(4)
            out = model(test.x, test.context)
            mse = float((out.x_mean - test.x).pow(2).flatten(1).mean(1).mean())
            samples = model.sample(k, context=ctx)
    finally:
        model.train(was)
    metrics = {
        "sigma_opt": float(sigma),
        "nll_nats_per_pixel": nll.nats_per_pixel,
        "nll_bits_per_dim": nll.bits_per_dim,
        "nll_stderr": nll.stderr,
        "test_mse": mse,
        "test_avg_kl": akl.value,
        "test_avg_kl_stderr": akl.stderr,
        "n_test": int(test.x.shape[0]),
        "test_source": test.source,
    }
    arrays = {
        "data": to_uint8(test.x[:k]),
        "recon": to_uint8(out.x_mean[:k]),
        "samples": to_uint8(samples),
    }
    if ctx is not None:
        arrays["context"] = to_uint8(ctx)
    return metrics, arrays
