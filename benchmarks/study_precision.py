"""Does mixed precision (``TrainConfig.precision="bfloat16"``) change what a run concludes?

bfloat16 autocast makes the chapter-03 models' CPU training steps faster on a CPU with bfloat16
units (``benchmarks/bench_speed.py``), but it is not float rounding: a forward moves by ~1e-3
and training amplifies any perturbation. This study trains chapter 03's cpu-profile runs — the
same :func:`geco_book.chapters.large_scale.train_config` the chapter trains, GECO + RE at the
headline κ = 0.1: ConvDRAW (1,500 steps) and VAE+NVP (3,000 steps) on MNIST, and the conditional
ConvDRAW on MNIST-rotate (the chapter's headline figure) — at several seeds in float32 and in
bfloat16, and compares per setting (model/data set):

- the final training MSE, KL and GECO's λ, seed by seed and as mean ± sd over seeds: is the
  float32 − bfloat16 gap of the seed means larger than the seeds' spread?
- whether the constraint was met at the end (the moving average C_ma ≤ 0) and whether λ sat at
  a bound of the chapter's ``lambda_bounds``;
- how far each bfloat16 run drifts from its float32 twin (same seed, same batches and noise)
  along the run: (bfloat16 − float32) ÷ float32 of MSE, KL and λ at every logged step;
- the wall time per run, paired by seed: the runs are interleaved on two workers (one
  process, one thread each) in the order float32, bfloat16 per seed, so each pair trains at
  about the same time on the same machine.

It trains into a scratch store (``--store``, default ``$TMPDIR/geco-precision-study``), not the
book's, prints a table and writes ``--out`` (JSON) and ``--figure`` (MSE, KL and λ against
steps, every seed of both precisions, and each seed's relative difference). At the defaults
(:data:`SEEDS`: 5 + 3 + 3 seeds, both precisions) it trains 22 runs: about 20 minutes with 2
workers on the 2-core machine.

Run:  python benchmarks/study_precision.py [--seeds convdraw/mnist=5 vae_nvp/mnist=3 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script from the checkout
    sys.path.insert(0, str(HERE.parent))

from geco_core.train import PRECISIONS  # noqa: E402

#: The study's settings (model, data set) and how many seeds each trains (0 .. n-1).
SEEDS: dict[tuple[str, str], int] = {
    ("convdraw", "mnist"): 5,
    ("vae_nvp", "mnist"): 3,
    ("convdraw", "mnist-rotate"): 3,
}
MEASURES = ("mse", "kl", "lambda")


def study_configs(seeds: Mapping[tuple[str, str], int], kappa: float = 0.1):
    """The study's TrainConfigs: chapter 03's cpu-profile GECO-RE run of each (model, data
    set) at seeds ``0 .. n - 1``, in float32 and bfloat16, ordered seed by seed with the two
    precisions next to each other (so that two workers train each pair at about the same
    time)."""
    from geco_book.chapters.large_scale import RunSpec, settings_for, train_config

    settings = settings_for("cpu")
    out = []
    for (model, dataset), n in seeds.items():
        for seed in range(n):
            cfg = train_config(RunSpec(model, dataset, "geco", "re", kappa, seed=seed), settings)
            out += [dataclasses.replace(cfg, precision=p) for p in PRECISIONS]
    return out


def _spread(values: Sequence[float]) -> list[float]:
    """[min, median, max] of ``values``."""
    return [min(values), statistics.median(values), max(values)]


def run_summary(cfg, log) -> dict[str, Any]:
    """One run's end: final MSE, KL, λ, C_ma (constraint met when C_ma ≤ 0), whether λ ends
    at a bound of ``geco_kwargs['lambda_bounds']`` (within 1 %) and the fraction of logged
    steps it spent at one, wall time, and its curves."""
    last = log.iloc[-1]
    lo, hi = cfg.geco_kwargs["lambda_bounds"]
    at_bound = (log["lambda"] <= lo * 1.01) | (log["lambda"] >= hi * 0.99)
    return {
        "setting": f"{cfg.model}/{cfg.dataset}", "model": cfg.model, "dataset": cfg.dataset,
        "precision": cfg.precision, "seed": cfg.seed, "steps": cfg.steps,
        "mse": float(last["mse"]), "kl": float(last["kl"]), "lambda": float(last["lambda"]),
        "c_ma": float(last["c_ma"]), "constraint_met": bool(last["c_ma"] <= 0),
        "lambda_at_bound": bool(at_bound.iloc[-1]),
        "lambda_bound_fraction": float(at_bound.mean()),
        "wall_time_s": float(last["wall_time"]),
        "curves": {k: [float(v) for v in log[k]] for k in ("step", *MEASURES)},
    }  # fmt: skip


def compare(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per setting (``row["setting"]``: model/data set) and measure: mean and sd over seeds of
    each precision, the gap of the means (bfloat16 − float32) against the larger sd, the same
    seed's relative difference (bfloat16 − float32) ÷ float32 as min / median / max over seeds,
    and the paired wall-time ratios (float32 ÷ bfloat16 per seed: > 1 means bfloat16 was
    faster)."""
    out: dict[str, Any] = {}
    for setting in sorted({r["setting"] for r in rows}):
        by = {p: sorted((r for r in rows if r["setting"] == setting and r["precision"] == p),
                        key=lambda r: r["seed"]) for p in PRECISIONS}  # fmt: skip
        if [r["seed"] for r in by["float32"]] != [r["seed"] for r in by["bfloat16"]]:
            raise ValueError(f"rows: {setting} needs both precisions at every seed")
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in by["float32"]]}
        for m in MEASURES:
            stats = {}
            for p in PRECISIONS:
                v = [r[m] for r in by[p]]
                stats[p] = {"mean": statistics.fmean(v),
                            "sd": statistics.stdev(v) if len(v) > 1 else float("nan")}
            gap = stats["bfloat16"]["mean"] - stats["float32"]["mean"]
            spread = max(stats["float32"]["sd"], stats["bfloat16"]["sd"])
            rel = [(b[m] - f[m]) / f[m] for f, b in zip(by["float32"], by["bfloat16"])]
            entry[m] = {**stats, "gap": gap, "larger_sd": spread,
                        "gap_over_sd": abs(gap) / spread if spread > 0 else float("inf"),
                        "paired_relative_difference": _spread(rel),
                        "largest_paired_difference_over_sd":
                            max(abs(b[m] - f[m]) for f, b in zip(by["float32"], by["bfloat16"]))
                            / stats["float32"]["sd"]}
        pairs = list(zip(by["float32"], by["bfloat16"]))
        ratios = [f["wall_time_s"] / b["wall_time_s"] for f, b in pairs]
        entry["float32_over_bfloat16_wall"] = _spread(ratios)
        entry["constraint_met"] = {p: sum(r["constraint_met"] for r in by[p]) for p in PRECISIONS}
        entry["lambda_at_bound"] = {p: sum(r["lambda_at_bound"] for r in by[p])
                                    for p in PRECISIONS}
        entry["lambda_bound_fraction"] = {
            p: [round(r["lambda_bound_fraction"], 3) for r in by[p]] for p in PRECISIONS}
        entry["n"] = {p: len(by[p]) for p in PRECISIONS}
        out[setting] = entry
    return out


def relative_curves(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict]:
    """(setting, seed) → the logged steps and (bfloat16 − float32) ÷ float32 of each measure at
    each of them: how far a bfloat16 run drifts from its float32 twin along the run."""
    runs = {(r["setting"], r["seed"], r["precision"]): r["curves"] for r in rows}
    out = {}
    for model, seed, precision in runs:
        if precision != "float32":
            continue
        f, b = runs[model, seed, "float32"], runs[model, seed, "bfloat16"]
        out[model, seed] = {"step": f["step"], **{
            m: [(vb - vf) / vf for vf, vb in zip(f[m], b[m])] for m in MEASURES}}
    return out


def drift_summary(rows: Sequence[Mapping[str, Any]], after_step: int = 250) -> dict[str, Any]:
    """Per setting and measure, over each seed's twin pair along the run (not just its last
    step, a single noisy batch): the mean of (bfloat16 − float32) ÷ float32 over the last
    quarter of the logged steps, and the largest |bfloat16 − float32| ÷ the float32 seeds' sd
    at the same step over the steps ≥ ``after_step`` (past the start, where KL ≈ 0) at which
    the float32 seeds differ (not where all sit at a λ bound); per seed, in seed order."""
    rel = relative_curves(rows)
    curves = {(r["setting"], r["seed"], r["precision"]): r["curves"] for r in rows}
    out: dict[str, Any] = {}
    for setting in sorted({s for s, _ in rel}):
        seeds = sorted(seed for s, seed in rel if s == setting)
        entry = {"seeds": seeds}
        for m in MEASURES:
            f = [curves[setting, seed, "float32"][m] for seed in seeds]
            b = [curves[setting, seed, "bfloat16"][m] for seed in seeds]
            steps = curves[setting, seeds[0], "float32"]["step"]
            sd = {i: statistics.stdev(run[i] for run in f)
                  for i, s in enumerate(steps) if s >= after_step}
            keep = [i for i in sd if sd[i] > 0]
            late = [statistics.fmean(rel[setting, seed][m][-(len(steps) // 4):])
                    for seed in seeds]
            entry[m] = {
                "last_quarter_mean_relative_difference": late,
                "largest_difference_over_sd": [max(abs(bs[i] - fs[i]) / sd[i] for i in keep)
                                               for fs, bs in zip(f, b)],
            }
        out[setting] = entry
    return out


def plot_curves(rows: Sequence[Mapping[str, Any]], title: str = ""):
    """Two rows of panels per setting: MSE, KL and λ against steps (log scale) for every seed of
    both precisions (float32 solid, bfloat16 dashed), and below them each seed's
    (bfloat16 − float32) ÷ float32 (:func:`relative_curves`); ``title`` above the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["setting"] for r in rows})
    fig, axes = plt.subplots(2 * len(models), 3, figsize=(11, 5.6 * len(models)), squeeze=False)
    colours = {"float32": "tab:blue", "bfloat16": "tab:orange"}
    rel = relative_curves(rows)
    for i, model in enumerate(models):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        for r in (r for r in rows if r["setting"] == model):
            c = r["curves"]
            for j, m in enumerate(MEASURES):
                top[j].plot(c["step"], c[m], color=colours[r["precision"]], lw=0.9,
                            ls="-" if r["precision"] == "float32" else "--",
                            label=r["precision"] if r["seed"] == 0 else None)
        for (mod, seed), c in sorted(rel.items()):
            if mod != model:
                continue
            for j, m in enumerate(MEASURES):
                bottom[j].plot(c["step"], [100 * v for v in c[m]], lw=0.9, label=f"seed {seed}")
        for j, m in enumerate(MEASURES):
            name = "λ" if m == "lambda" else m.upper()
            top[j].set_yscale("log")
            top[j].set_title(f"{model}: {name}", fontsize=9)
            bottom[j].set_title(f"{model}: {name}, bf16 ÷ f32 − 1 (same seed)", fontsize=8)
            bottom[j].set_ylabel("%")
            bottom[j].axhline(0, color="k", lw=0.5)
            bottom[j].set_xlabel("step")
        top[0].legend(fontsize=8)
        bottom[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _table(summary: Mapping[str, Any]) -> str:
    lines = ["| setting | measure | float32 mean ± sd | bfloat16 mean ± sd | gap ÷ larger sd | "
             "same seed, (bf16 − f32) ÷ f32: min / median / max |", "|---|---|---|---|---|---|"]
    for model, e in summary.items():
        for m in MEASURES:
            s = e[m]
            lines.append(
                f"| {model} | {m} | {s['float32']['mean']:.4g} ± {s['float32']['sd']:.2g} | "
                f"{s['bfloat16']['mean']:.4g} ± {s['bfloat16']['sd']:.2g} | "
                f"{s['gap_over_sd']:.2f} | "
                + " / ".join(f"{100 * v:+.2f} %" for v in s["paired_relative_difference"])
                + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train (or load from ``--store``) the study's runs, print the comparison, write the JSON
    and the figure; returns what the JSON holds."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", metavar="MODEL/DATASET=N",
                   default=[f"{m}/{d}={n}" for (m, d), n in SEEDS.items()],
                   help="settings and seed counts (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--store", default=os.path.join(tempfile.gettempdir(),
                                                   "geco-precision-study"))
    p.add_argument("--out", default=str(HERE / "results" / "precision_study.json"))
    p.add_argument("--figure", default=str(HERE / "results" / "precision_study.png"))
    a = p.parse_args(argv)
    seeds: dict[tuple[str, str], int] = {}
    for item in a.seeds:
        setting, _, n = item.partition("=")
        model, _, dataset = setting.partition("/")
        if not (model and dataset and n.isdigit() and int(n) >= 2):
            p.error(f"--seeds: {item!r} is not MODEL/DATASET=N with N >= 2 (for a spread)")
        seeds[model, dataset] = int(n)
    if a.workers < 1:
        p.error("--workers: at least 1")

    from geco_book.store import RunStore
    from geco_book.sweep import run_sweep

    cfgs = study_configs(seeds)
    store = RunStore(Path(a.store) / "records", Path(a.store) / "checkpoints")
    runs = run_sweep(cfgs, store=store, workers=a.workers, desc="precision study",
                     command="python benchmarks/study_precision.py")
    # each run's record provenance (commit, uncommitted files, versions, threads, when)
    rows = [{**run_summary(cfg, run.log()), "provenance": run.record["provenance"]}
            for cfg, run in zip(cfgs, runs)]
    summary = compare(rows)
    drift = drift_summary(rows)
    print(_table(summary))
    for model, e in summary.items():
        print(f"{model}: constraint met at the end {e['constraint_met']} of {e['n']}; λ at a "
              f"bound {e['lambda_at_bound']} (fraction of logged steps at a bound, per seed: "
              f"{e['lambda_bound_fraction']}); float32 ÷ bfloat16 wall time per seed "
              f"(min/median/max) {[round(v, 2) for v in e['float32_over_bfloat16_wall']]}")
    import torch

    args = argv if argv is not None else sys.argv[1:]
    for setting, e in drift.items():
        for m in MEASURES:
            d = e[m]
            print(f"{setting} {m}: last-quarter mean (bf16 − f32) ÷ f32 per seed "
                  f"{[f'{100 * v:+.2f} %' for v in d['last_quarter_mean_relative_difference']]}; "
                  f"largest |bf16 − f32| ÷ float32 seed-sd after step 250 per seed "
                  f"{[round(v, 2) for v in d['largest_difference_over_sd']]}")
    result = {"summary": summary, "drift": drift, "runs": rows, "torch": torch.__version__,
              "command": " ".join(["python benchmarks/study_precision.py", *args])}
    from geco_base.io import write_text

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(a.out, json.dumps(result, indent=1) + "\n")
    n = ", ".join(f"{m}/{d} seeds 0–{k - 1}" for (m, d), k in seeds.items())
    title = (f"Chapter 03 cpu profile, GECO + RE κ = 0.1; MNIST and MNIST-rotate from the vendored "
             f"10k test split; float32 solid, bfloat16 dashed\n{n}; torch {torch.__version__}, "
             "1 thread per run")
    plot_curves(rows, title).savefig(a.figure, dpi=110)
    print(f"wrote {a.out} and {a.figure}")
    return result


if __name__ == "__main__":
    main()
