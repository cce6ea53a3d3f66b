"""Chapter 03, large-scale training (§4.1, Figs. 3–6): settings, runs and evaluation.

The paper trains ConvDRAW (unconditional, and conditional on MNIST-rotate) and a VAE with a
conditional RealNVP posterior with the ELBO, the ELBO with a hand-annealed β, and GECO with a
reconstruction (RE) constraint for several tolerances κ, and compares them in the information
plane (held-out reconstruction NLL under the quantized normal with σ_opt, Appendix D, against
the KL). This module builds the chapter's runs (:func:`run_specs`, :func:`train_config`),
trains them through the run store (:func:`geco_book.sweep.run_sweep`), evaluates each once
(:func:`evaluate_run`, cached in its record, right after training) and collects one table
(:func:`run_chapter`).
Tables and the paper's claims are in :mod:`geco_book.chapters.large_scale_tables`, figures in
:mod:`geco_book.figures.large_scale`. Regenerate the cpu results, with chapter 04's
evaluations of the same models, with::

    python -m geco_book.chapters.regenerate --profile cpu

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

import functools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geco_base.checks import (
    OneLineParser,
    check_choice,
    check_positive,
    check_seed,
    count_arg,
)
from geco_book.chapters.large_scale_eval import cached_dataset, evaluate_run
from geco_book.policy import ON_TARGET, geco_settings, lambda_at_guard, train_settings
from geco_book.profiles import settings_copy
from geco_book.store import Run, RunStore, store_for
from geco_book.sweep import run_chains
from geco_book.sweep import torch_threads as _torch_threads

__all__ = [
    "EVAL_VERSION",
    "SETTINGS",
    "ChapterResult",
    "RunSpec",
    "fig3_run",
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
# cpu profile: the official 60k training split (mnist-60k), the book's one GECO policy
# (geco_book.policy: ν = auto, α = 0.9, λ guarded in [1e-3, 1e8]); regenerated with chapter 04
# by one command (python -m geco_book.chapters.regenerate --profile cpu: ≈ 3 h measured on two
# cores, over two sessions).
# What the budget buys and why:
# - batch 32 (the paper does not state its batch); the library's "small" models (ConvDRAW with
#   T = 4 canvas steps and 32 hidden channels; the VAE+NVP with a 16-D latent and 4 couplings);
#   Adam 1e-3 (ConvDRAW) / 3e-4 (VAE+NVP), geco_book.policy.CPU_LR;
# - steps: ConvDRAW 3,000, VAE+NVP 12,000. The policy study measured that the VAE+NVP on MNIST
#   first meets κ = 0.1 between steps ≈ 2,900 and 3,400 (its KL still falling from 50 to 36 nats
#   by 9,000), ConvDRAW at 1,500; each is run to a further doubling. The headline runs (3 seeds)
#   are kept at three stages (``stages``: each a doubling, each evaluated), so the chapter
#   shows whether the pair moved by less than its seed spread over the last doubling;
# - κ: the paper's 0.06, 0.1, 0.175 (ends and middle of its five), one seed; the headline
#   κ = 0.1 at three seeds, except the VAE+NVP on Color-MNIST, whose MSE stays ≈ 0.036 ≈ 3.6 κ²
#   at κ = 0.1 with λ at its ceiling (policy study: infeasible at this scale) and whose ELBO
#   sits at MSE ≈ 0.05: its headline κ is 0.25 (``headline_kappa_of``);
# - ``all_seed_kappas``: GECO + RE at these κ at every seed too (chapter 04's Table 2 needs GECO
#   models whose posteriors overlap: the VAE+NVP at κ = 0.175 on MNIST had I(n;z) = 7.6 < ln N
#   before the policy, at κ = 0.1 I(n;z) = ln N);
# - the GQN σ ramp 2.0 → 0.7 compressed from 200,000 steps to the run's length;
# - Fig. 5's matched runs (κ² = the ELBO's final training MSE) on four model × data pairs.
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
        "stages": {"convdraw": [2, 4], "vae_nvp": [2, 4]},
        "batch_size": 8,
        "seeds": [0, 1],
        "headline_kappa": 0.1,
        "headline_kappa_of": {},
        "all_seed_kappas": {"vae_nvp/mnist": [0.175]},
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
        "geco": geco_settings("smoke"),
        "workers": 1,
        "threads": 1,
    },
    "cpu": {
        "combos": _COMBOS_CPU,
        "steps": {"convdraw": 3000, "vae_nvp": 12000},
        "stages": {"convdraw": [750, 1500, 3000], "vae_nvp": [3000, 6000, 12000]},
        "batch_size": 32,
        "seeds": [0, 1, 2],
        "headline_kappa": 0.1,
        "headline_kappa_of": {"vae_nvp/color-mnist": 0.25},
        "all_seed_kappas": {"vae_nvp/mnist": [0.175]},
        "kappas": [0.06, 0.1, 0.175],
        "fig6": _FIG6,
        "fig6_model": "convdraw",
        "matched": [["convdraw", "mnist"], ["convdraw", "mnist-rotate"], ["vae_nvp", "mnist"],
                    ["vae_nvp", "color-mnist"]],
        "n_train": None,
        "model_kwargs": {"convdraw": {}, "vae_nvp": {}},
        "eval": {"n_sigma": 1000, "n_test": 1000, "kl_samples": 4, "n_show": 8},
        "log_every": 25,
        "geco": geco_settings("cpu"),
        "workers": 2,
        "threads": 1,
    },
    "gpu": {
        # The paper's scale for Colab: Adam 1e-5 (ConvDRAW) / 1e-6 (VAE+NVP), α = 0.99, the
        # full κ set, the "paper" model sizes; CIFAR-10 and CelebA need a network.
        "combos": _COMBOS_CPU + [["convdraw", "cifar10"], ["vae_nvp", "cifar10"],
                                 ["convdraw", "celeba"]],
        "steps": {"convdraw": 200_000, "vae_nvp": 200_000},
        "stages": {"convdraw": [50_000, 100_000, 200_000],
                   "vae_nvp": [50_000, 100_000, 200_000]},
        "batch_size": 32,
        "seeds": [0, 1, 2],
        "headline_kappa": 0.1,
        "headline_kappa_of": {},
        "all_seed_kappas": {"vae_nvp/mnist": [0.175]},
        "kappas": list(PAPER_KAPPAS),
        "fig6": _FIG6,
        "fig6_model": "convdraw",
        "matched": [["convdraw", "mnist-rotate"], ["vae_nvp", "mnist"]],
        "n_train": None,
        "model_kwargs": {"convdraw": {}, "vae_nvp": {}},
        "eval": {"n_sigma": 1000, "n_test": 1000, "kl_samples": 16, "n_show": 8},
        "log_every": 500,
        "geco": geco_settings("gpu"),
        "workers": 1,
        "threads": None,
    },
}


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of :data:`SETTINGS` [``profile``] with ``overrides`` applied.

    Example:
        >>> settings_for("cpu")["kappas"], settings_for("cpu", steps={"convdraw": 1500,
        ...     "vae_nvp": 3000}, stages={"convdraw": [1500], "vae_nvp": [3000]})["steps"]
        ([0.06, 0.1, 0.175], {'convdraw': 1500, 'vae_nvp': 3000})
    """
    out = settings_copy(profile, SETTINGS, overrides)
    for model, steps in out["stages"].items():
        if (not steps or steps != sorted(set(steps)) or steps[-1] != out["steps"][model]
                or any(n % int(out["log_every"]) for n in steps)):
            raise ValueError(f"stages: {model}'s must increase to steps = {out['steps'][model]}"
                             f" in multiples of log_every = {out['log_every']}, got {steps!r}")
    return out


def headline_kappa(settings: Mapping[str, Any], model: str, dataset: str) -> float:
    """The κ of the headline GECO + RE runs (every seed) of ``model`` on ``dataset``.

    Example:
        >>> headline_kappa(settings_for("cpu"), "vae_nvp", "color-mnist")
        0.25
    """
    return float(settings["headline_kappa_of"].get(f"{model}/{dataset}",
                                                   settings["headline_kappa"]))


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
        check_seed(self.seed)
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
    s0 = int(settings["seeds"][0])  # the seed of the single-seed runs
    for model, data in settings["combos"]:
        kh = headline_kappa(settings, model, data)
        every = [kh, *settings["all_seed_kappas"].get(f"{model}/{data}", [])]
        for seed in settings["seeds"]:
            specs.append(RunSpec(model, data, "elbo", seed=seed))
            specs.extend(RunSpec(model, data, "geco", "re", float(k), seed=seed) for k in every)
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


def run_stages(spec: RunSpec, settings: Mapping[str, Any]) -> list[int]:
    """The steps at which ``spec`` is kept and evaluated: every stage of ``settings["stages"]``
    for the runs trained at every seed (the ELBO, GECO + RE at the headline κ and at
    ``all_seed_kappas``), the last one only for the others (the annealed run's σ ramp spans
    its whole length, so it has no earlier stages).

    Example:
        >>> s = settings_for("cpu")
        >>> run_stages(RunSpec("vae_nvp", "mnist", "elbo", seed=1), s)
        [3000, 6000, 12000]
        >>> run_stages(RunSpec("vae_nvp", "mnist", "geco", "re", 0.06), s)
        [12000]
    """
    stages = [int(n) for n in settings["stages"][spec.model]]
    if spec.objective == "elbo":
        return stages
    if spec.objective == "geco" and spec.constraint == "re" and not spec.matched:
        every = [headline_kappa(settings, spec.model, spec.dataset),
                 *settings["all_seed_kappas"].get(f"{spec.model}/{spec.dataset}", [])]
        if any(math.isclose(spec.kappa, float(k)) for k in every):
            return stages
    return stages[-1:]


def train_config(spec: RunSpec, settings: Mapping[str, Any], steps: int | None = None):
    """The :class:`geco_core.train.TrainConfig` of ``spec`` at the settings' profile, trained
    for ``steps`` (default: the model's ``settings["steps"]``; a stage of :func:`run_stages`).

    Example:
        >>> cfg = train_config(RunSpec("vae_nvp", "mnist", "annealed"), settings_for("cpu"))
        >>> cfg.lr, cfg.alpha, cfg.anneal_steps, cfg.batch_size
        (0.0003, 0.9, 12000, 32)
    """
    from geco_core.train import TrainConfig

    policy = train_settings(spec.model, settings["profile"])
    geco = settings["geco"]
    # α is set for every objective (the committed ELBO / annealed keys hold it; only GECO
    # reads it); the rest of GECO's settings only for GECO (the engine refuses them elsewhere)
    policy["alpha"] = geco["alpha"]
    steps = int(settings["steps"][spec.model] if steps is None else steps)
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
# The chapter's results
# --------------------------------------------------------------------------------------------
@dataclass
class ChapterResult:
    """Every run of the chapter: ``table`` (one row per run at its last stage: spec, training
    end state and evaluation), ``stages`` (one row per run and stage of :func:`run_stages`),
    ``runs`` (name → stored :class:`~geco_book.store.Run` of the last stage), ``arrays``
    (name → images), the settings and provenance; ``from_cache``: nothing was trained."""

    table: Any
    runs: dict[str, Run]
    specs: dict[str, RunSpec]
    arrays: dict[str, dict[str, np.ndarray]]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    from_cache: bool
    stages: Any = None

    def log(self, name: str):
        """The training log of run ``name`` (a DataFrame)."""
        return self.runs[name].log()


def fig3_run(settings: Mapping[str, Any], seed: int = 0) -> str:
    """The name of Fig. 3's run (GECO + RE on ConvDRAW / rotated MNIST at its headline κ,
    ``seed``), whose λ trajectory the chapter and its claims table read.

    Example:
        >>> fig3_run(settings_for("cpu"))
        'convdraw/mnist-rotate/geco-re-0.1/s0'
    """
    return RunSpec("convdraw", "mnist-rotate", "geco", "re",
                   headline_kappa(settings, "convdraw", "mnist-rotate"), seed=seed).name


def constraint_status(spec: RunSpec, run: Run, settings, log=None) -> dict[str, Any]:
    """A GECO run's constraint at the end (C_ma ≤ 0: met; RE within :data:`ON_TARGET` κ²
    above: on target, since GECO drives C_ma to 0 from either side) and its λ against the
    guards: at the end, at any logged step, its smallest and largest logged value."""
    m = run.metrics
    bounds = settings["geco"]["geco_kwargs"]["lambda_bounds"]
    lams = (run.log() if log is None else log)["lambda"]
    c_ma = m.get("c_ma", math.inf)
    return {"constraint_met": bool(c_ma <= 0),
            "constraint_on_target": bool(c_ma <= 0 or (
                spec.constraint == "re" and c_ma <= ON_TARGET * spec.kappa ** 2)),
            "lambda_at_bound": lambda_at_guard(m.get("lambda", math.nan), bounds),
            "lambda_max": float(lams.max()), "lambda_min": float(lams.min()),
            "lambda_touched_bound": lambda_at_guard(lams, bounds)}


def _row(spec: RunSpec, run: Run, ev: Mapping[str, Any], settings) -> dict[str, Any]:
    m = run.metrics
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
        row.update(constraint_status(spec, run, settings, log))
    return row


#: Relative cost of one training step per model, to hand out the longest chains first
#: (the policy study's cpu records, two workers on two cores: ConvDRAW ≈ 0.09 s on MNIST and
#: ≈ 0.13 s on Color-MNIST, VAE+NVP ≈ 0.04 s).
_STEP_COST = {"convdraw": 2.5, "vae_nvp": 1.0, "conv_vae": 0.5}


def evaluate_stored(run: Run, settings: Mapping[str, Any], also=None) -> None:
    """The sweep's hook (:func:`geco_book.sweep.run_chains`): :func:`evaluate_run` of the
    stored ``run``, cached in its record, computed in the process that trained it; then
    ``also(run)`` (another chapter's evaluations of the same models: chapter 04's)."""
    def compute(r: Run):
        with _torch_threads(settings["threads"]):
            return evaluate_run(r.load_model(), r.config, settings)

    run.evaluation("large_scale", {"version": EVAL_VERSION, **settings["eval"]}, compute)
    if also is not None:
        also(run)


def run_chapter(
    profile: str = "cpu",
    *,
    store: RunStore | None = None,
    progress: bool = True,
    command: str | None = None,
    also=None,
    **overrides: Any,
) -> ChapterResult:
    """Train (or load) and evaluate every run of the chapter at ``profile``.

    Stage 1 trains :func:`run_specs`, each run as a chain of its :func:`run_stages`, every
    stage evaluated (:func:`evaluate_stored`, then ``also``) right after it is trained, in the
    worker that trained it; stage 2 trains Fig. 5's matched runs from the stage-1 ELBO
    results (:func:`matched_specs`). A record is committed-ready as soon as its run and its
    evaluations are written, so a regeneration spanning machines never needs a checkpoint
    of an earlier machine.
    """
    import pandas as pd

    settings = settings_for(profile, **overrides)
    store = store_for(profile) if store is None else store
    if command is None:
        command = f"geco_book.chapters.large_scale.run_chapter(profile={profile!r})"
    hook = functools.partial(evaluate_stored, settings=settings, also=also)
    sweep = {"store": store, "workers": int(settings["workers"]),
             "threads": settings["threads"], "progress": progress, "command": command,
             "after": hook}

    def train(specs: list[RunSpec], desc: str) -> list[list[Run]]:
        chains = [[train_config(s, settings, n) for n in run_stages(s, settings)]
                  for s in specs]
        order = sorted(range(len(specs)), key=lambda i: -chains[i][-1].steps
                       * _STEP_COST.get(specs[i].model, 1.0))
        done = run_chains([chains[i] for i in order], desc=desc, **sweep)
        out: list[list[Run]] = [[] for _ in specs]
        for i, runs in zip(order, done):
            out[i] = runs
        return out

    specs = run_specs(settings)
    staged = dict(zip((s.name for s in specs), train(specs, f"large-scale [{profile}] stage 1")))
    by_name = {s.name: (s, staged[s.name][-1]) for s in specs}
    elbo_mse = {}
    for model, data in settings["matched"]:
        run = by_name[RunSpec(model, data, "elbo", seed=int(settings["seeds"][0])).name][1]
        log = run.log()
        elbo_mse[(model, data)] = float(log["mse"].tail(max(len(log) // 10, 1)).mean())
    stage2 = matched_specs(settings, elbo_mse)
    for s, runs in zip(stage2, train(stage2, f"large-scale [{profile}] stage 2")):
        by_name[s.name] = (s, runs[-1])
        staged[s.name] = runs

    eval_settings = {"version": EVAL_VERSION, **settings["eval"]}
    rows, arrays, stage_rows = [], {}, []
    for name, (spec, run) in by_name.items():
        for r in staged[name]:
            ev, arr = r.evaluation("large_scale", eval_settings, functools.partial(
                _missing_evaluation, name=name))
            row = _row(spec, r, ev, settings)
            stage_rows.append(row)
            if r is run:
                rows.append(row)
                arrays[name] = arr
    table = pd.DataFrame(rows).set_index("name")
    stages = pd.DataFrame(stage_rows)
    all_runs = [r for runs in staged.values() for r in runs]
    first = all_runs[0].record
    provenance = {
        "profile": profile,
        "store": str(store.records),
        "n_runs": len(by_name),
        "n_stage_runs": len(all_runs),
        "trained_now": sorted({n for n, runs in staged.items() if any(r.trained for r in runs)}),
        # the last stage's wall time is the whole chain's (a continued run adds to its prefix)
        "train_wall_time_s": round(sum(runs[-1].wall_time for runs in staged.values()), 1),
        "engine_version": first["engine_version"],
        "data_source": sorted({r.record["data"]["source"] for r in all_runs}),
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
        stages=stages,
    )


def _missing_evaluation(run: Run, name: str):
    raise RuntimeError(f"{name}: run {run.key} has no chapter-03 evaluation although the sweep"
                       f" computes it after training; rerun the chapter to compute it")


def main(argv: Sequence[str] | None = None) -> ChapterResult:
    """``python -m geco_book.chapters.large_scale --profile cpu``: train or load, print."""
    p = OneLineParser(prog="python -m geco_book.chapters.large_scale",
                      description="Train or load chapter 03's runs; print a summary.")
    p.add_argument("--profile", default="cpu", choices=sorted(SETTINGS))
    p.add_argument("--workers", type=count_arg, default=None, help="parallel training processes")
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    from geco_book.chapters.large_scale import main as _main

    _main()
