"""Chapter 04, marginal-KL evaluation (§4.1.1, Table 2): settings, evaluation, results.

The chapter trains nothing: it evaluates chapter 03's VAE + NVP models (ELBO and GECO + RE at
the headline κ, every seed, MNIST and Color-MNIST), read from the run store. For each model it
draws one posterior sample z_s ~ q(z|x_s) of every one of the N training points, fills the
matrix L[s, i] = log q(z_s|xᵢ) once (:func:`geco_core.metrics.aggregate.log_q_matrix`: N² inverse
flows, N = 6,000 training points at the cpu profile) and derives every estimate from it
(:mod:`geco_core.metrics.aggregate`):

- Table 2's marginal KL KL[q_N ‖ π] (exact mixture over all N points), the average KL from the
  same samples and I(n; z) = average KL − marginal KL, beside ln N;
- the leave-one-out estimate (with the exact one it brackets the population marginal KL), the
  held-out estimate (test posteriors under the training aggregate), and Chen et al.'s
  minibatch estimators (MWS, MSS) at several batch sizes;
- each estimate against the number of latent samples S and the number of points N;
- the holes: prior samples ranked by log q_N(z) − log π(z), decoded, with the pretrained
  classifier's confidence (MNIST).

Its evaluations are computed in chapter 03's sweep, right after each model is trained
(:func:`evaluate_in_sweep`); regenerate both chapters with::

    python -m geco_book.chapters.regenerate --profile cpu

and print this chapter's table from the records with
``python -m geco_book.chapters.marginal_kl --profile cpu``.

References:
    Rezende & Viola, "Taming VAEs", 2018: §1 (holes), §4.1.1, Table 2.
    Chen et al., "Isolating sources of disentanglement in VAEs", NeurIPS 2018 (MWS, MSS).

Example:
    >>> [s.name for s in model_specs(settings_for("cpu"))][:2]
    ['vae_nvp/mnist/elbo/s0', 'vae_nvp/mnist/geco-re-0.1/s0']
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
from scipy import stats

from geco_base.checks import OneLineParser, check_seed, count_arg, seed_arg
from geco_book.chapters import large_scale as ch03
from geco_book.chapters.large_scale_eval import cached_dataset
from geco_book.images import to_uint8
from geco_book.paths import shown
from geco_book.profiles import settings_copy
from geco_book.store import Run, RunStore, run_key, store_for
from geco_book.sweep import torch_threads

__all__ = [
    "EVAL_VERSION",
    "PAPER_TABLE_2",
    "SETTINGS",
    "ChapterResult",
    "evaluate_model",
    "model_specs",
    "run_chapter",
    "settings_for",
]

#: Version of :func:`evaluate_model` (cached evaluations are keyed by it).
EVAL_VERSION = 1
#: Version of :func:`own_density_terms` (its own cached evaluation).
OWN_VERSION = 1

#: Posteriors "overlap" when I(n; z) < ln N − this margin (nats): at I(n; z) = ln N every
#: training point has a posterior of its own and the marginal KL only restates the average
#: KL (marginal KL = average KL − ln N).
OVERLAP_MARGIN = 1.0

#: The paper's Table 2 (VAE + NVP, nats): marginal KL of ELBO and GECO models. The paper's
#: numbers, never ours.
PAPER_TABLE_2 = {
    "color-mnist": {"elbo": 182.5, "geco": 10.3},
    "cifar10": {"elbo": 725.2, "geco": 45.3},
}

#: Per-profile settings (:func:`settings_for`).
#: ``convdraw``: chapter 03's ConvDRAW models (ELBO and GECO at the headline κ, its first seed)
#: through the subsampled estimator: S samples, each scored under its own and M − 1 random
#: other posteriors (S·M full ConvDRAW encoder passes; biased upwards by at most ln(N/M)).
#: ``combos`` / the models: chapter 03's VAE + NVP runs at the same profile (ELBO and GECO + RE
#: at its headline κ, all of its seeds); ``extra_kappas``: GECO + RE at these other κ of chapter
#: 03's sweep (its first seed only). ``detail_seeds``: the seeds whose models also get the
#: held-out estimate and the holes study (``n_test`` test posteriors, ``n_prior`` prior
#: samples: each costs n × N more pairs) and one posterior sample of every point (S = N); the
#: other seeds draw ``n_samples_other`` samples (S·N pairs) for Table 2's exact and
#: leave-one-out numbers. ``batch_sizes``: of the minibatch estimators.
#: ``sample_counts`` / ``point_counts``: the S and N of the convergence figure (capped at N).
#: ``chunk``: [samples, points] per block of the pair matrix (32 × 512 measured fastest on one
#: thread). ``workers``: models evaluated in parallel processes, ``threads`` each.
#: ``n_points``: N, the training points of the aggregate posterior q_N (a seed-0 random subset
#: of the model's training split; None: all of it). At cpu N = 6,000 (a tenth of the 60k
#: split): ln N = 8.7 nats bounds I(n; z), so posteriors that overlap show as I(n; z) below
#: ln N − 1 (:data:`OVERLAP_MARGIN`), and the N² = 3.6·10⁷ pairs fit the budget
#: (N = 60,000 would cost 100× as much).
#: Cost at cpu, measured in the regeneration's sweep (one core per model, beside a training
#: worker; the records' ``matrix_seconds``): 168–202 s per detail model (S = N, 5 of them),
#: 57–70 s per other model (S = 2,000, 10 of them), ≈ 25 CPU-minutes in all.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "combos": [["vae_nvp", "mnist"]],
        "n_points": None,
        "convdraw": {"combos": [["convdraw", "mnist-rotate"]], "S": 20, "M": 10},
        "extra_kappas": [0.175],
        "detail_seeds": [0],
        "n_samples_other": 100,
        "n_test": 40,
        "n_prior": 40,
        "n_show": 4,
        "batch_sizes": [8, 32],
        "sample_counts": [25, 50, 100, 200],
        "point_counts": [25, 50, 100, 200],
        "chunk": [32, 512],
        "workers": 1,
        "threads": 1,
    },
    "cpu": {
        "combos": [["vae_nvp", "mnist"], ["vae_nvp", "color-mnist"]],
        "n_points": 6000,
        "convdraw": {"combos": [["convdraw", "mnist"]], "S": 300, "M": 100},
        "extra_kappas": [],
        "detail_seeds": [0],
        "n_test": 1000,
        "n_prior": 1000,
        "n_show": 8,
        "batch_sizes": [32, 256, 2048],
        "n_samples_other": 2000,
        "sample_counts": [100, 300, 1000, 3000, 6000],
        "point_counts": [100, 300, 1000, 3000, 6000],
        "chunk": [32, 512],
        "workers": 2,
        "threads": 1,
    },
    "gpu": {
        "combos": [["vae_nvp", "mnist"], ["vae_nvp", "color-mnist"], ["vae_nvp", "cifar10"]],
        "n_points": 50_000,
        "convdraw": {"combos": [["convdraw", "mnist"], ["convdraw", "cifar10"]], "S": 2000,
                     "M": 1000},
        "extra_kappas": [0.06, 0.175],
        "detail_seeds": [0, 1, 2],
        "n_samples_other": 50_000,
        "n_test": 1000,
        "n_prior": 2000,
        "n_show": 8,
        "batch_sizes": [32, 256, 2048],
        "sample_counts": [100, 1000, 10_000, 50_000],
        "point_counts": [100, 1000, 10_000, 50_000],
        "chunk": [256, 4096],
        "workers": 1,
        "threads": None,
    },
}


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`SETTINGS` [``profile``] with ``overrides``, plus ``profile``.

    Example:
        >>> settings_for("cpu")["batch_sizes"]
        [32, 256, 2048]
    """
    return settings_copy(profile, SETTINGS, overrides)


def model_specs(settings: Mapping[str, Any]) -> list[ch03.RunSpec]:
    """Chapter 03's runs this chapter evaluates: per combo and seed, ELBO then GECO + RE at the
    headline κ and at chapter 03's ``all_seed_kappas``; then GECO + RE at each of
    ``extra_kappas`` (chapter 03's first seed)."""
    s3 = ch03.settings_for(settings["profile"])
    specs = []
    for model, data in settings["combos"]:
        every = [ch03.headline_kappa(s3, model, data),
                 *s3["all_seed_kappas"].get(f"{model}/{data}", [])]
        for seed in s3["seeds"]:
            specs.append(ch03.RunSpec(model, data, "elbo", seed=seed))
            specs.extend(ch03.RunSpec(model, data, "geco", "re", float(k), seed=seed)
                         for k in every)
        for k in settings["extra_kappas"]:
            spec = ch03.RunSpec(model, data, "geco", "re", float(k), seed=s3["seeds"][0])
            if spec not in specs:
                specs.append(spec)
    return specs


# --------------------------------------------------------------------------------------------
# The evaluation of one model
# --------------------------------------------------------------------------------------------
def _counts(counts: Sequence[int], n: int) -> list[int]:
    return sorted({min(int(c), n) for c in counts})


def _sources(N: int, settings: Mapping[str, Any], detail: bool, seed: int):
    """The training points that get one posterior sample each, and the generator that drew
    them (the evaluation draws its later subsets from it): every point for a detail model,
    else ``n_samples_other`` random ones, sorted."""
    g = torch.Generator().manual_seed(seed + 1)
    S = N if detail else min(N, int(settings["n_samples_other"]))
    src = torch.arange(N) if S == N else torch.randperm(N, generator=g)[:S].sort().values
    return src, g


def evaluate_model(model, train, test, settings: Mapping[str, Any], *, detail: bool,
                   seed: int = 0, progress: bool = False):
    """Every estimate of chapter 04 for one trained model: ``(metrics, arrays)``.

    ``train``/``test``: data sets (``.x``, ``.context``). With ``detail``: one posterior sample
    of every training point (S = N), the minibatch estimators, the estimates against S and N,
    the held-out estimate (``n_test`` test posteriors) and the holes (``n_prior`` prior
    samples). Otherwise one sample of each of ``n_samples_other`` random points (S < N; the
    mixture still runs over all N points, only the Monte Carlo error grows): the exact,
    leave-one-out and average-KL numbers of Table 2.
    """
    from geco_core.metrics.aggregate import (
        aggregate_log_density,
        exact_estimate,
        leave_one_out_estimate,
        log_q_matrix,
        minibatch_stratified_estimate,
        minibatch_weighted_estimate,
    )

    cs, cn = (int(v) for v in settings["chunk"])
    x, ctx = train.x, train.context
    N = x.shape[0]
    src, g = _sources(N, settings, detail, seed)
    S = len(src)
    model.eval()
    t0 = time.perf_counter()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        out = model(x[src], None if ctx is None else ctx[src])  # z_s ~ q(z|x_src[s])
        z, log_q_own, log_prior = out.z, out.log_q.double(), out.log_prior.double()
        mse = float((out.x_mean - x[src]).pow(2).flatten(1).mean(1).mean())
    L = log_q_matrix(model, z, x, ctx, chunk_s=cs, chunk_n=cn, progress=progress)
    t_matrix = time.perf_counter() - t0
    exact = exact_estimate(L, log_prior)
    loo = leave_one_out_estimate(L, log_prior, src)
    akl_terms = log_q_own - log_prior
    mi_terms = log_q_own - aggregate_log_density(L)
    metrics: dict[str, Any] = {
        "n_points": N,
        "n_samples": S,
        "marginal_kl": exact.value, "marginal_kl_se": exact.stderr,
        "loo_marginal_kl": loo.value, "loo_marginal_kl_se": loo.stderr,
        "avg_kl": float(akl_terms.mean()), "avg_kl_se": float(akl_terms.std() / math.sqrt(S)),
        "mutual_info": float(mi_terms.mean()),
        "mutual_info_se": float(mi_terms.std() / math.sqrt(S)),
        "ln_n": math.log(N),
        "train_mse": mse,
        "matrix_seconds": round(t_matrix, 1),
        "pairs_per_second": round(S * N / t_matrix, 0),
    }
    arrays: dict[str, np.ndarray] = {}
    if not detail:
        return metrics, arrays
    for b in settings["batch_sizes"]:
        if b > N:
            continue
        mws = minibatch_weighted_estimate(L, log_prior, src, int(b), generator=g)
        mss = minibatch_stratified_estimate(L, log_prior, src, int(b), generator=g)
        metrics[f"mws_{b}"], metrics[f"mws_{b}_se"] = mws.value, mws.stderr
        metrics[f"mss_{b}"], metrics[f"mss_{b}_se"] = mss.value, mss.stderr
    # against the number of latent samples S (the first S of a random order of the rows) and
    # against the number of points N' (the sub-matrix of N' random points)
    perm = torch.randperm(N, generator=g)
    vs_s = []
    for k in _counts(settings["sample_counts"], N):
        rows = perm[:k]
        e = exact_estimate(L[rows], log_prior[rows])
        vs_s.append([k, e.value, e.stderr])
    vs_n = []
    for k in _counts(settings["point_counts"], N):
        pts = perm[:k]
        sub = L[pts][:, pts]
        e, lo = exact_estimate(sub, log_prior[pts]), leave_one_out_estimate(
            sub, log_prior[pts], torch.arange(k))
        vs_n.append([k, e.value, e.stderr, lo.value, lo.stderr])
    del L
    arrays.update(vs_samples=np.asarray(vs_s), vs_points=np.asarray(vs_n))
    if detail:
        more, more_arrays = _detail(model, test, settings, seed, x, ctx, progress)
        metrics.update(more)
        arrays.update(more_arrays)
    return metrics, arrays


def own_density_terms(model, train, settings: Mapping[str, Any], *, detail: bool,
                      seed: int = 0) -> dict[str, Any]:
    """The average KL and I(n; z) of :func:`evaluate_model`'s samples with the density path.

    :func:`evaluate_model` draws z_s ~ q(z|x_s) through the model's forward (the flow's
    forward pass: log q = log N(u) − log-det) and scores every pair through the inverse flow
    (``log_q``). For very sharp posteriors the two disagree in float32 (the inverse does not
    undo the forward exactly), so this function redraws the *same* samples (same seeds, same
    calls) and scores each under its own posterior through the inverse flow, the computation
    of the matrix's own entries. Then average KL = I(n; z) + marginal KL holds exactly with
    I(n; z) ≤ ln N. Also returns the sample-path − density-path gap (mean, max |·|).
    Cost: one forward and one ``log_q`` pass over the S samples.
    """
    x, ctx = train.x, train.context
    N = x.shape[0]
    src, _ = _sources(N, settings, detail, seed)
    S = len(src)
    model.eval()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        out = model(x[src], None if ctx is None else ctx[src])
        own = torch.cat([model.log_q(out.z[b:b + 512], x[src][b:b + 512],
                                     None if ctx is None else ctx[src][b:b + 512])
                         for b in range(0, S, 512)]).double()
    terms = own - out.log_prior.double()
    gap = out.log_q.double() - own
    return {"avg_kl_density": float(terms.mean()),
            "avg_kl_density_se": float(terms.std() / math.sqrt(S)),
            "sample_path_gap_mean": float(gap.mean()),
            "sample_path_gap_max_abs": float(gap.abs().max())}


def _detail(model, test, settings, seed, x, ctx, progress):
    """The held-out estimate and the holes study: ``(metrics, arrays)``."""
    from geco_core.metrics import standard_normal_log_prob
    from geco_core.metrics.aggregate import aggregate_log_density, exact_estimate, log_q_matrix
    from geco_core.models import load_pretrained_classifier

    cs, cn = (int(v) for v in settings["chunk"])
    k_test, k_prior, k_show = (int(settings[k]) for k in ("n_test", "n_prior", "n_show"))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed + 2)
        tx = test.x[:k_test]
        tc = None if test.context is None else test.context[:k_test]
        out = model(tx, tc)
        zp = torch.randn(k_prior, model.latent_dim)
    Lt = log_q_matrix(model, out.z, x, ctx, chunk_s=cs, chunk_n=cn, progress=progress)
    held = exact_estimate(Lt, out.log_prior.double())
    Lp = log_q_matrix(model, zp, x, ctx, chunk_s=cs, chunk_n=cn, progress=progress)
    ratio = (aggregate_log_density(Lp) - standard_normal_log_prob(zp.double())).numpy()
    order = np.argsort(ratio)
    with torch.no_grad():
        pc = None if ctx is None else ctx[torch.randint(len(ctx), (k_prior,),
                                                        generator=torch.Generator().manual_seed(seed))]
        images = model.decode(zp, pc) if pc is not None else model.decode(zp)
        conf = np.full(k_prior, np.nan)
        if images.shape[1] == 1:  # the classifier reads one-channel 28×28 digits (MNIST)
            probs = load_pretrained_classifier(source=test.source)(images).softmax(-1)
            conf = probs.max(-1).values.double().numpy()
    low, high = order[:k_show], order[::-1][:k_show]
    metrics: dict[str, Any] = {
        "heldout_marginal_kl": held.value, "heldout_marginal_kl_se": held.stderr,
        "n_test": k_test, "n_prior": k_prior,
        "prior_ratio_median": float(np.median(ratio)),
        "prior_share_below_minus_5": float(np.mean(ratio < -5.0)),
    }
    arrays = {"prior_log_ratio": ratio.astype(np.float32),
              "prior_confidence": conf.astype(np.float32),
              "lowest": to_uint8(images[torch.as_tensor(low.copy())]),
              "highest": to_uint8(images[torch.as_tensor(high.copy())])}
    if np.isfinite(conf).all():
        metrics["ratio_confidence_spearman"] = float(stats.spearmanr(ratio, conf)[0])
    return metrics, arrays


def convdraw_specs(settings: Mapping[str, Any]) -> list[ch03.RunSpec]:
    """Chapter 03's ConvDRAW runs of ``settings["convdraw"]``: ELBO and GECO + RE at the
    headline κ, chapter 03's first seed."""
    s3 = ch03.settings_for(settings["profile"])
    s0 = int(s3["seeds"][0])
    return [spec for model, data in settings["convdraw"]["combos"]
            for spec in (ch03.RunSpec(model, data, "elbo", seed=s0),
                         ch03.RunSpec(model, data, "geco", "re",
                                      ch03.headline_kappa(s3, model, data), seed=s0))]


def evaluate_subsampled(model, train, settings: Mapping[str, Any], seed: int = 0):
    """The subsampled marginal KL of a ConvDRAW model (its posterior has no cheap all-pairs
    form): :func:`geco_core.metrics.marginal_kl` with ``M`` components per sample. Its
    expectation lies in [KL[q_N ‖ π], KL[q_N ‖ π] + ln(N/M)]; ``lower_end`` is the estimate
    minus that bound."""
    from geco_core.metrics import marginal_kl

    c = settings["convdraw"]
    t0 = time.perf_counter()
    r = marginal_kl(model, train.x, context=train.context, S=int(c["S"]), M=int(c["M"]),
                    seed=seed, sampling="stratified", progress=False, warn=False)
    return {"marginal_kl_subsampled": r.value, "marginal_kl_subsampled_se": r.stderr,
            "bias_bound": r.bias_bound, "lower_end": r.value - r.bias_bound,
            "avg_kl": r.avg_kl, "mutual_info": r.mutual_info, "ln_m": math.log(int(c["M"])),
            "S": r.S, "M": r.M, "n_points": r.n, "seconds": round(time.perf_counter() - t0, 1)}


# --------------------------------------------------------------------------------------------
# The chapter: every model through the store, evaluations cached in its record
# --------------------------------------------------------------------------------------------
@dataclass
class ChapterResult:
    """The chapter's numbers: one row per model (``rows``), arrays per model name, provenance."""

    rows: list[dict[str, Any]]
    arrays: dict[str, dict[str, np.ndarray]]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    convdraw_rows: list[dict[str, Any]] = field(default_factory=list)

    def convdraw_table(self):
        import pandas as pd

        return pd.DataFrame(self.convdraw_rows).set_index("name")

    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("name")


def _eval_settings(settings: Mapping[str, Any], detail: bool, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"version": EVAL_VERSION, "detail": detail}
    if seed:  # the default seed 0 stays out of the key (as the run store does with defaults)
        out["seed"] = seed
    if settings["n_points"] is not None:
        out["n_points"] = settings["n_points"]
    if detail:
        keys = ("batch_sizes", "sample_counts", "point_counts", "n_test", "n_prior", "n_show")
        out.update({k: settings[k] for k in keys})
    else:
        out["n_samples_other"] = settings["n_samples_other"]
    return out


def _own_settings(settings: Mapping[str, Any], detail: bool, seed: int) -> dict[str, Any]:
    return {"version": OWN_VERSION, **_eval_settings(settings, detail, seed)}


def _sub_settings(settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
    out = {"version": EVAL_VERSION, "seed": seed, **settings["convdraw"]}
    if settings["n_points"] is not None:
        out["n_points"] = settings["n_points"]
    return out


def training_points(cfg, settings: Mapping[str, Any]):
    """The N training points of the aggregate posterior of the run ``cfg``: a seed-0 random
    subset of ``n_points`` of its training split (all of it when None)."""
    n = settings["n_points"]
    if n is None:
        return cached_dataset(cfg.dataset, "train", cfg.seed, cfg.dataset_kwargs.get("n"))
    return cached_dataset(cfg.dataset, "train", 0, int(n))


def _evaluate(run: Run, settings: Mapping[str, Any], detail: bool, seed: int,
              progress: bool) -> str:
    """The cached evaluations of the stored ``run`` (computed when absent)."""
    cfg = run.config

    def compute(r: Run):
        test = cached_dataset(cfg.dataset, "test", 0, int(settings["n_test"]))
        with torch_threads(settings["threads"]):
            return evaluate_model(r.load_model(), training_points(cfg, settings), test,
                                  settings, detail=detail, seed=seed, progress=progress)

    run.evaluation("marginal_kl", _eval_settings(settings, detail, seed), compute)

    def compute_own(r: Run):
        with torch_threads(settings["threads"]):
            return own_density_terms(r.load_model(), training_points(cfg, settings), settings,
                                     detail=detail, seed=seed), {}

    run.evaluation("marginal_kl_own", _own_settings(settings, detail, seed), compute_own)
    return run.key


def _evaluate_key(key: str, records: str, checkpoints: str, settings: dict[str, Any],
                  detail: bool, seed: int, progress: bool) -> str:
    """Worker: :func:`_evaluate` of the stored run ``key``."""
    return _evaluate(RunStore(records, checkpoints).load(key), settings, detail, seed, progress)


def _evaluate_subsampled(run: Run, settings: Mapping[str, Any], seed: int):
    cfg = run.config

    def compute(r: Run):
        with torch_threads(settings["threads"]):
            return evaluate_subsampled(r.load_model(), training_points(cfg, settings), settings,
                                       seed), {}

    return run.evaluation("marginal_kl_subsampled", _sub_settings(settings, seed), compute)


@functools.lru_cache(maxsize=4)
def _sweep_jobs(profile: str) -> tuple[dict[str, bool], frozenset[str]]:
    settings = settings_for(profile)
    s3 = ch03.settings_for(profile)
    detail_seeds = {int(s) for s in settings["detail_seeds"]}
    models = {run_key(ch03.train_config(spec, s3)): spec.seed in detail_seeds
              for spec in model_specs(settings)}
    convdraw = frozenset(run_key(ch03.train_config(spec, s3))
                         for spec in convdraw_specs(settings))
    return models, convdraw


def evaluate_in_sweep(run: Run, profile: str) -> None:
    """Chapter 03's sweep hook (``also`` of :func:`geco_book.chapters.large_scale.run_chapter`):
    this chapter's evaluations (seed 0) of ``run`` when it is one of its models, computed
    right after training in the worker that trained it, cached in its record."""
    models, convdraw = _sweep_jobs(profile)
    if run.key in models or run.key in convdraw:
        settings = settings_for(profile)
        if run.key in models:
            _evaluate(run, settings, models[run.key], 0, False)
        if run.key in convdraw:
            _evaluate_subsampled(run, settings, 0)


def run_chapter(profile: str = "cpu", *, seed: int = 0, store: RunStore | None = None,
                progress: bool = True, **overrides: Any) -> ChapterResult:
    """Evaluate (or load the cached evaluations of) every model of :func:`model_specs`.

    ``seed`` fixes the evaluation's posterior, prior and minibatch draws (the models' own
    seeds are chapter 03's).

    The models come from chapter 03's run store at the same profile; at ``smoke`` (no stored
    models in a fresh checkout) chapter 03's smoke settings train them in seconds. A stored run
    whose checkpoint is absent raises :class:`geco_book.store.MissingCheckpointError` naming
    ``python -m geco_book.store train KEY``.
    """
    check_seed(seed)
    settings = settings_for(profile, **overrides)
    store = store_for(profile) if store is None else store
    s3 = ch03.settings_for(profile)
    specs = model_specs(settings)
    runs = [_stored_run(store, spec, s3, profile) for spec in specs]
    detail_seeds = set(int(s) for s in settings["detail_seeds"])
    detail = [spec.seed in detail_seeds for spec in specs]
    jobs = [(run.key, str(store.records), str(store.checkpoints), settings, d, seed)
            for d, run in zip(detail, runs)]
    todo = [j for j, run in zip(jobs, runs)
            if not (run.has_evaluation("marginal_kl", _eval_settings(settings, j[4], seed))
                    and run.has_evaluation("marginal_kl_own", _own_settings(settings, j[4],
                                                                             seed)))]
    for run in runs:  # fail before spending minutes when a needed checkpoint is missing
        if any(j[0] == run.key for j in todo) and not run.checkpoint_path.is_file():
            run.load_model()
    t0 = time.perf_counter()
    workers = min(int(settings["workers"]), max(len(todo), 1))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for key in pool.map(_evaluate_key, *zip(*[(*j, False) for j in todo])):
                if progress:
                    print(f"evaluated {key}", file=sys.stderr)
    else:
        for j in todo:
            _evaluate_key(*j, progress)
    rows, arrays = [], {}
    for spec, run, job in zip(specs, runs, jobs):
        metrics, arr = run.evaluation("marginal_kl", _eval_settings(settings, job[4], seed),
                                      _not_computed)
        own, _ = run.evaluation("marginal_kl_own", _own_settings(settings, job[4], seed),
                                _not_computed)
        metrics = dict(metrics)
        # Table 2's identity on one computation: average KL and I(n; z) from the density path
        # (the matrix's own entries); the sample path's average KL is kept beside it.
        metrics["avg_kl_sample_path"] = metrics["avg_kl"]
        metrics["avg_kl"], metrics["avg_kl_se"] = own["avg_kl_density"], own["avg_kl_density_se"]
        metrics["mutual_info"] = own["avg_kl_density"] - metrics["marginal_kl"]  # SE: the
        # sample path's (``mutual_info_se``; the two paths' terms differ by the small gap)
        metrics["sample_path_gap_mean"] = own["sample_path_gap_mean"]
        metrics["sample_path_gap_max_abs"] = own["sample_path_gap_max_abs"]
        ch3 = run.metrics
        rows.append({"name": spec.name, "model": spec.model, "dataset": spec.dataset,
                     "objective": spec.objective, "label": spec.label, "seed": spec.seed,
                     "kappa": spec.kappa, "key": run.key,
                     "lambda_final": float(ch3.get("lambda", math.nan)),
                     "c_ma_final": float(ch3.get("c_ma", math.nan)),
                     **(ch03.constraint_status(spec, run, s3)
                        if spec.objective == "geco" else {}), **metrics})
        arrays[spec.name] = arr
    convdraw_rows = []
    for spec in convdraw_specs(settings):
        run = _stored_run(store, spec, s3, profile)
        metrics, _ = _evaluate_subsampled(run, settings, seed)
        convdraw_rows.append({"name": spec.name, "dataset": spec.dataset, "label": spec.label,
                              "seed": spec.seed, "key": run.key, **metrics})
    provenance = {
        "profile": profile,
        "seed": seed,
        "models_from": f"chapter 03 ({profile} profile), run store {shown(store.records)}",
        "data": sorted({r.record["data"]["source"] for r in runs}),
        "n_points": settings["n_points"],
        "evaluated_now": len(todo),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "workers": workers,
    }
    return ChapterResult(rows, arrays, settings, provenance, convdraw_rows)


def _stored_run(store: RunStore, spec, s3: Mapping[str, Any], profile: str) -> Run:
    """Chapter 03's stored run of ``spec``; at smoke (a throwaway store) trained on the spot."""
    cfg = ch03.train_config(spec, s3)
    run = store.get(cfg)
    if run is None:
        if profile != "smoke":
            raise LookupError(f"{spec.name}: not in the run store {shown(store.records)}; "
                              f"train chapters 03 and 04 first: python -m "
                              f"geco_book.chapters.regenerate --profile {profile} (from any "
                              f"folder; in a notebook cell, after a '!')")
        run = store.get_or_train(cfg, command="geco_book.chapters.marginal_kl (smoke)")
    return run


def _not_computed(run: Run):
    raise RuntimeError(f"run {run.key}: its marginal-KL evaluation was not written")


def main(argv: Sequence[str] | None = None) -> ChapterResult:
    """Evaluate (or load) the chapter's models at a profile and print the table."""
    p = OneLineParser(prog="python -m geco_book.chapters.marginal_kl",
                      description="Evaluate chapter 04's marginal KL (cached).")
    p.add_argument("--profile", default="cpu", choices=sorted(SETTINGS))
    p.add_argument("--seed", type=seed_arg, default=0, help="evaluation seed (samples drawn)")
    p.add_argument("--workers", type=count_arg, default=None, help="models evaluated in parallel")
    args = p.parse_args(argv)
    extra = {} if args.workers is None else {"workers": args.workers}
    result = run_chapter(args.profile, seed=args.seed, **extra)
    import pandas as pd

    cols = ["marginal_kl", "marginal_kl_se", "loo_marginal_kl", "avg_kl", "mutual_info", "ln_n",
            "train_mse", "matrix_seconds"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.table()[cols].round(3).to_string())
    print(f"evaluated_now={result.provenance['evaluated_now']} "
          f"wall_time_s={result.provenance['wall_time_s']}", file=sys.stderr)
    return result


if __name__ == "__main__":
    from geco_book.chapters.marginal_kl import main as _main

    _main()
