"""Chapter 03, large-scale training (§4.1, Figs. 3–6): settings, runs and evaluation.

The paper trains ConvDRAW (unconditional, and conditional on MNIST-rotate) and a VAE with a
conditional RealNVP posterior with the ELBO, the ELBO with a hand-annealed β, and GECO with a
reconstruction (RE) constraint for several tolerances κ, and compares them in the information
plane (held-out reconstruction NLL under the quantized normal with σ_opt, Appendix D, against
the KL). This module builds the chapter's runs (:func:`run_specs`, :func:`train_config`),
trains them through the run store (:func:`geco_book.sweep.run_sweep`), evaluates each once
(:func:`evaluate_run`, cached in its record) and collects one table (:func:`run_chapter`).
Tables and the paper's claims are in :mod:`geco_book.chapters.large_scale_tables`, figures in
:mod:`geco_book.figures.large_scale`. Regenerate the cpu results with::

    python -m geco_book.chapters.large_scale --profile cpu

References:
    Rezende & Viola, "Taming VAEs", 2018: §4.1, Table 1 (RE, FRE, CLA, pNCC), Algorithm 1,
    Appendix D (σ_opt, Eq. 26; quantized normal), Figs. 3–6; Eslami et al. 2018 (GQN) for the
    σ annealing 2.0 → 0.7.

Example:
    >>> specs = run_specs(settings_for("smoke"))
    >>> [s.name for s in specs][:2]
    ['convdraw/mnist-rotate/elbo/s0', 'convdraw/mnist-rotate/geco-re-0.1/s0']
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geco_book.images import to_uint8
from geco_book.policy import geco_settings, train_settings
from geco_book.profiles import settings_copy
from geco_book.store import Run, RunStore, store_for
from geco_book.sweep import run_sweep
from geco_book.sweep import torch_threads as _torch_threads
from geco_core.checks import check_choice, check_int, check_positive

__all__ = [
    "EVAL_VERSION",
    "SETTINGS",
    "ChapterResult",
    "RunSpec",
    "evaluate_run",
    "matched_specs",
    "run_chapter",
    "run_specs",
    "settings_for",
    "train_config",
]

#: Version of :func:`evaluate_run` (cached evaluations are keyed by it).
EVAL_VERSION = 1

#: The paper's κ set for GECO + RE (§4.1, Fig. 4).
PAPER_KAPPAS = (0.06, 0.08, 0.1, 0.125, 0.175)

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
# cpu profile, sized so that regenerating every result is one command of ≤ 90 minutes on two
# cores (measured: see the chapter). What the budget buys and why:
# - batch 32 (the paper does not state its batch); 1,500 steps of ConvDRAW (≈ 5 epochs of the
#   9,000 training images) and 3,000 of the VAE+NVP (≈ 11 epochs), whose step is ~2.5× cheaper;
# - ConvDRAW with T = 4 canvas steps and 32 hidden channels, the VAE+NVP with a 16-D latent and
#   4 coupling layers: the library's "small" sizes, a few hundred thousand parameters each;
# - three κ of the paper's five (0.06, 0.1, 0.175: the ends and the middle), three seeds for
#   the headline pair ELBO vs GECO-RE κ = 0.1, one seed elsewhere;
# - the GQN σ ramp 2.0 → 0.7 compressed from 200,000 steps to the run's length;
# - the book's cpu-scale learning rates (geco_book.policy): Adam 1e-3 (ConvDRAW) / 3e-4
#   (VAE+NVP); GECO as these records were trained before the book's one policy
#   (geco_book.policy.PRE_POLICY_GECO["large_scale"]: α = 0.9, ν = 1, λ bounded in [1e-3, 1e8]
#   so that an unreachable κ shows up as λ at its bound instead of an overflow).
# Fig. 6's κ for the other constraints are tolerances of the same strength as RE κ = 0.1
# (:func:`equivalent_kappa`): FRE on the classifier's features (MNIST) or local statistics
# (Color-MNIST), pNCC on 7×7 patches, CLA (MNIST only: Color-MNIST's three digits per image
# have no single label for the one-digit classifier).
_COMBOS_CPU = [
    ["convdraw", "mnist"],
    ["convdraw", "mnist-rotate"],
    ["convdraw", "color-mnist"],
    ["vae_nvp", "mnist"],
    ["vae_nvp", "color-mnist"],
]
_FIG6 = {  # κ = equivalent_kappa(constraint, dataset) (noise 0.1), rounded; CLA: the paper's 0.9
    "mnist": [["fre", 0.134], ["pncc", 0.65], ["cla", 0.9]],
    "color-mnist": [["fre", 0.0375], ["pncc", 0.82]],
}
_CONSTRAINT_KWARGS = {
    "fre": {"mnist": {"features": "classifier", "depth": 2},
            "color-mnist": {"features": "local_stats", "window": 5}},
    "pncc": {"mnist": {"patch_size": 7, "stride": 4},
             "color-mnist": {"patch_size": 7, "stride": 4}},
}

#: Per-profile settings (:func:`settings_for`).
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "combos": [["convdraw", "mnist-rotate"], ["vae_nvp", "mnist"]],
        "steps": {"convdraw": 4, "vae_nvp": 4},
        "batch_size": 8,
        "seeds": [0, 1],
        "headline_kappa": 0.1,
        "kappas": [0.1, 0.175],
        "fig6": {"mnist": [["pncc", 0.35]]},
        "fig6_model": "vae_nvp",
        "matched": [["vae_nvp", "mnist"]],
        "n_train": 200,
        "model_kwargs": {
            "convdraw": {"steps": 2, "hidden": 8, "read_channels": 4, "context_channels": 4},
            "vae_nvp": {"latent_dim": 4, "channels": [4, 8], "context_dim": 16, "n_flows": 2,
                        "flow_hidden": 16},
        },
        "eval": {"n_sigma": 50, "n_test": 50, "kl_samples": 2, "n_show": 4},
        "log_every": 1,
        "geco": geco_settings("smoke", pre_policy="large_scale"),
        "workers": 1,
        "threads": 1,
    },
    "cpu": {
        "combos": _COMBOS_CPU,
        "steps": {"convdraw": 1500, "vae_nvp": 3000},
        "batch_size": 32,
        "seeds": [0, 1, 2],
        "headline_kappa": 0.1,
        "kappas": [0.06, 0.1, 0.175],
        "fig6": _FIG6,
        "fig6_model": "convdraw",
        "matched": [["convdraw", "mnist-rotate"], ["vae_nvp", "mnist"]],
        "n_train": None,
        "model_kwargs": {"convdraw": {}, "vae_nvp": {}},
        "eval": {"n_sigma": 1000, "n_test": 1000, "kl_samples": 4, "n_show": 8},
        "log_every": 25,
        "geco": geco_settings("cpu", pre_policy="large_scale"),
        "workers": 2,
        "threads": 1,
    },
    "gpu": {
        # The paper's scale for Colab: Adam 1e-5 (ConvDRAW) / 1e-6 (VAE+NVP), α = 0.99, the
        # full κ set, the "paper" model sizes; CIFAR-10 and CelebA need a network.
        "combos": _COMBOS_CPU + [["convdraw", "cifar10"], ["vae_nvp", "cifar10"],
                                 ["convdraw", "celeba"]],
        "steps": {"convdraw": 200_000, "vae_nvp": 200_000},
        "batch_size": 32,
        "seeds": [0, 1, 2],
        "headline_kappa": 0.1,
        "kappas": list(PAPER_KAPPAS),
        "fig6": _FIG6,
        "fig6_model": "convdraw",
        "matched": [["convdraw", "mnist-rotate"], ["vae_nvp", "mnist"]],
        "n_train": None,
        "model_kwargs": {"convdraw": {}, "vae_nvp": {}},
        "eval": {"n_sigma": 1000, "n_test": 1000, "kl_samples": 16, "n_show": 8},
        "log_every": 500,
        "geco": geco_settings("gpu", pre_policy="large_scale"),
        "workers": 1,
        "threads": None,
    },
}


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`SETTINGS` [``profile``] with ``overrides`` applied.

    Example:
        >>> settings_for("cpu")["kappas"]
        [0.06, 0.1, 0.175]
    """
    return settings_copy(profile, SETTINGS, overrides)


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------
_OBJECTIVES = ("elbo", "annealed", "geco")
_CONSTRAINTS = ("re", "fre", "pncc", "cla")


@dataclass(frozen=True)
class RunSpec:
    """One trained model of the chapter.

    Example:
        >>> RunSpec("convdraw", "mnist", "geco", "re", 0.1, seed=2).name
        'convdraw/mnist/geco-re-0.1/s2'
    """

    model: str
    dataset: str
    objective: str
    constraint: str | None = None
    kappa: float | None = None
    seed: int = 0
    matched: bool = False

    def __post_init__(self) -> None:
        check_choice(self.objective, "objective", _OBJECTIVES)
        check_int(self.seed, "seed", minimum=0)
        if self.objective == "geco":
            check_choice(self.constraint, "constraint", _CONSTRAINTS)
            check_positive(self.kappa, "kappa")
        elif self.constraint is not None or self.kappa is not None:
            raise ValueError(f"constraint: only GECO runs have one, got {self.constraint!r}")

    @property
    def method(self) -> str:
        if self.objective != "geco":
            return self.objective
        tail = "-matched" if self.matched else ""
        return f"geco-{self.constraint}-{self.kappa:.4g}{tail}"

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}/{self.method}/s{self.seed}"

    @property
    def label(self) -> str:
        if self.objective == "elbo":
            return "ELBO"
        if self.objective == "annealed":
            return "ELBO + annealed β"
        extra = " (κ² = ELBO's MSE)" if self.matched else ""
        return f"GECO + {self.constraint.upper()} κ = {self.kappa:.3g}{extra}"


def run_specs(settings: Mapping[str, Any]) -> list[RunSpec]:
    """Every run of the first stage (the matched-MSE runs of Fig. 5 come after, from the ELBO
    results: :func:`matched_specs`), in a stable order without duplicates."""
    specs: list[RunSpec] = []
    kh = float(settings["headline_kappa"])
    s0 = int(settings["seeds"][0])  # the seed of the single-seed runs
    for model, data in settings["combos"]:
        for seed in settings["seeds"]:
            specs.append(RunSpec(model, data, "elbo", seed=seed))
            specs.append(RunSpec(model, data, "geco", "re", kh, seed=seed))
        specs.append(RunSpec(model, data, "annealed", seed=s0))
        for k in settings["kappas"]:
            specs.append(RunSpec(model, data, "geco", "re", float(k), seed=s0))
    for data, entries in settings["fig6"].items():
        if [settings["fig6_model"], data] not in settings["combos"]:
            continue
        for constraint, k in entries:
            specs.append(RunSpec(settings["fig6_model"], data, "geco", constraint, float(k),
                                 seed=s0))
    out: list[RunSpec] = []
    for s in specs:
        if s not in out:
            out.append(s)
    return out


def train_config(spec: RunSpec, settings: Mapping[str, Any]):
    """The :class:`geco_core.train.TrainConfig` of ``spec`` at the settings' profile.

    Example:
        >>> cfg = train_config(RunSpec("vae_nvp", "mnist", "annealed"), settings_for("cpu"))
        >>> cfg.lr, cfg.alpha, cfg.anneal_steps, cfg.batch_size
        (0.0003, 0.9, 3000, 32)
    """
    from geco_core.train import TrainConfig

    policy = train_settings(spec.model, settings["profile"])
    geco = settings["geco"]
    # α is set for every objective (the committed ELBO / annealed keys hold it; only GECO
    # reads it); the rest of GECO's settings only for GECO (the engine refuses them elsewhere)
    policy["alpha"] = geco["alpha"]
    steps = int(settings["steps"][spec.model])
    kw: dict[str, Any] = {}
    if spec.objective == "geco":
        ck = _CONSTRAINT_KWARGS.get(spec.constraint, {}).get(spec.dataset, {})
        kw.update(constraint=spec.constraint, kappa=float(spec.kappa), constraint_kwargs=ck,
                  nu=geco["nu"], lambda_init=geco["lambda_init"],
                  geco_kwargs=dict(geco["geco_kwargs"]))
    if spec.objective == "annealed":
        kw.update(anneal_sigma_start=2.0, anneal_sigma_end=0.7, anneal_steps=steps)
    dataset_kwargs = {} if settings["n_train"] is None else {"n": int(settings["n_train"])}
    return TrainConfig(
        model=spec.model,
        dataset=spec.dataset,
        objective=spec.objective,
        steps=steps,
        batch_size=int(settings["batch_size"]),
        seed=spec.seed,
        log_every=int(settings["log_every"]),
        ckpt_every=max(steps // 4, 1),
        device="auto",
        download=False,
        progress=False,
        dataset_kwargs=dataset_kwargs,
        model_kwargs=dict(settings["model_kwargs"][spec.model]),
        **policy,
        **kw,
    )


def matched_specs(settings: Mapping[str, Any], elbo_mse: Mapping[tuple[str, str], float]):
    """Fig. 5's second stage: GECO + RE with κ² = the ELBO's final training MSE, per
    (model, dataset) of ``settings["matched"]`` (``elbo_mse`` maps them to that MSE)."""
    out = []
    for model, data in settings["matched"]:
        mse = elbo_mse[(model, data)]
        kappa = float(f"{math.sqrt(mse):.4g}")  # 4 digits: a stable key
        out.append(RunSpec(model, data, "geco", "re", kappa, seed=int(settings["seeds"][0]),
                           matched=True))
    return out


# --------------------------------------------------------------------------------------------
# Evaluation of one run (cached in its record)
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# The chapter's results
# --------------------------------------------------------------------------------------------
@dataclass
class ChapterResult:
    """Every run of the chapter: ``table`` (one row per run: spec, training end state and
    evaluation), ``runs`` (name → stored :class:`~geco_book.store.Run`), ``arrays`` (name →
    images), the settings and provenance; ``from_cache``: nothing was trained."""

    table: Any
    runs: dict[str, Run]
    specs: dict[str, RunSpec]
    arrays: dict[str, dict[str, np.ndarray]]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    from_cache: bool

    def log(self, name: str):
        """The training log of run ``name`` (a DataFrame)."""
        return self.runs[name].log()


def _row(spec: RunSpec, run: Run, ev: Mapping[str, Any], settings) -> dict[str, Any]:
    m = run.metrics
    bounds = settings["geco"]["geco_kwargs"]["lambda_bounds"]
    lam = m.get("lambda", math.nan)
    log = run.log()
    tail = log.tail(max(len(log) // 10, 1))
    row = {
        "name": spec.name, "model": spec.model, "dataset": spec.dataset,
        "method": spec.method, "label": spec.label, "objective": spec.objective,
        "constraint": spec.constraint, "kappa": spec.kappa, "seed": spec.seed,
        "matched": spec.matched, "steps": run.step, "wall_time_s": run.wall_time,
        "train_kl": float(tail["kl"].mean()), "train_mse": float(tail["mse"].mean()),
        "lambda": lam, "beta": m.get("beta", math.nan), "c_ma": m.get("c_ma", math.nan),
        **{k: v for k, v in ev.items() if k != "test_source"},
    }
    if spec.objective == "geco":
        row["constraint_met"] = bool(m.get("c_ma", math.inf) <= 0)
        row["lambda_at_bound"] = bool(lam <= bounds[0] * 1.0001 or lam >= bounds[1] * 0.9999)
    return row


def run_chapter(
    profile: str = "cpu",
    *,
    store: RunStore | None = None,
    progress: bool = True,
    command: str | None = None,
    **overrides: Any,
) -> ChapterResult:
    """Train (or load) and evaluate every run of the chapter at ``profile``.

    Stage 1 trains :func:`run_specs`; stage 2 trains Fig. 5's matched runs from the stage-1
    ELBO results (:func:`matched_specs`). Evaluations are cached in the records.
    """
    import pandas as pd

    settings = settings_for(profile, **overrides)
    store = store_for(profile) if store is None else store
    if command is None:
        command = f"geco_book.chapters.large_scale.run_chapter(profile={profile!r})"
    sweep = {"store": store, "workers": int(settings["workers"]),
             "threads": settings["threads"], "progress": progress, "command": command}
    specs = run_specs(settings)
    runs = run_sweep([train_config(s, settings) for s in specs],
                     desc=f"large-scale [{profile}] stage 1", **sweep)
    by_name = {s.name: (s, r) for s, r in zip(specs, runs)}
    elbo_mse = {}
    for model, data in settings["matched"]:
        run = by_name[RunSpec(model, data, "elbo", seed=int(settings["seeds"][0])).name][1]
        log = run.log()
        elbo_mse[(model, data)] = float(log["mse"].tail(max(len(log) // 10, 1)).mean())
    stage2 = matched_specs(settings, elbo_mse)
    runs2 = run_sweep([train_config(s, settings) for s in stage2],
                      desc=f"large-scale [{profile}] stage 2", **sweep)
    by_name.update({s.name: (s, r) for s, r in zip(stage2, runs2)})

    eval_settings = {"version": EVAL_VERSION, **settings["eval"]}
    rows, arrays = [], {}
    for name, (spec, run) in by_name.items():
        def compute(r: Run, _spec=spec):
            with _torch_threads(settings["threads"]):
                return evaluate_run(r.load_model(), r.config, settings)

        ev, arr = run.evaluation("large_scale", eval_settings, compute)
        rows.append(_row(spec, run, ev, settings))
        arrays[name] = arr
    table = pd.DataFrame(rows).set_index("name")
    all_runs = [r for _, r in by_name.values()]
    first = all_runs[0].record
    provenance = {
        "profile": profile,
        "store": str(store.records),
        "n_runs": len(all_runs),
        "trained_now": [n for n, (_, r) in by_name.items() if r.trained],
        "train_wall_time_s": round(sum(r.wall_time for r in all_runs), 1),
        "engine_version": first["engine_version"],
        "data_source": first["data"]["source"],
        "git_commit": first["provenance"]["git_commit"],
        "versions": first["provenance"]["versions"],
        "command": first["provenance"]["command"],
        "workers": int(settings["workers"]),
    }
    return ChapterResult(
        table=table,
        runs={n: r for n, (_, r) in by_name.items()},
        specs={n: s for n, (s, _) in by_name.items()},
        arrays=arrays,
        settings=settings,
        provenance=provenance,
        from_cache=not any(r.trained for r in all_runs),
    )


def main(argv: Sequence[str] | None = None) -> ChapterResult:
    """``python -m geco_book.chapters.large_scale --profile cpu``: train or load, print."""
    p = argparse.ArgumentParser(prog="python -m geco_book.chapters.large_scale",
                                description="Train or load chapter 03's runs; print a summary.")
    p.add_argument("--profile", default="cpu", choices=sorted(SETTINGS))
    p.add_argument("--workers", type=int, default=None, help="parallel training processes")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error("argument --workers: must be >= 1")
    over = {} if args.workers is None else {"workers": args.workers}
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m geco_book.chapters.large_scale", *argv_list])
    res = run_chapter(args.profile, command=command, **over)
    cols = ["train_kl", "test_avg_kl", "nll_bits_per_dim", "test_mse", "lambda", "wall_time_s"]
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(res.table[cols].round(4).to_string())
    print(f"from_cache={res.from_cache} train_wall_time_s={res.provenance['train_wall_time_s']}",
          file=sys.stderr)
    return res


if __name__ == "__main__":
    from geco_book.chapters.large_scale import main as _main

    _main()


def equivalent_kappa(constraint: str, dataset: str, noise: float = 0.1, n: int = 500) -> float:
    """κ of ``constraint`` that a reconstruction off by i.i.d. N(0, ``noise``²) pixel noise
    would just meet: the tolerance "of the same strength" as RE with κ = ``noise``.

    FRE: the RMS feature error between x and x + noise; pNCC: the mean whitened-patch
    correlation of x and x + noise (the constraint asks for at least that). Measured on ``n``
    training images (seed 0, noise seed 0) with the constraint settings of Fig. 6.
    """
    from geco_core.train.builders import make_constraint

    check_choice(constraint, "constraint", ("fre", "pncc"))
    data = cached_dataset(dataset, "train", 0, n)
    x = data.x
    g = torch.Generator().manual_seed(0)
    noisy = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    kw = dict(_CONSTRAINT_KWARGS[constraint][dataset])
    c = make_constraint(constraint, 1.0, tuple(x.shape[1:]), kw, data.source)
    with torch.no_grad():
        v = c(x, noisy).mean().item()
    # FRE: ‖f(x) − f(x̂)‖²/F − κ² with κ = 1 → RMS error = √(v + 1); pNCC: κ − corr = 1 − corr.
    return math.sqrt(v + 1.0) if constraint == "fre" else 1.0 - v
