"""Chapter 05's tables: the sweep GECO saves, the alternatives, robustness, the ν rule.

Every number is read from a stored run: its training log (λ or β against steps, the training
MSE) and chapter 03's cached evaluation (held-out MSE and average KL on 1,000 held-out
images). The target throughout is "held-out MSE ≤ κ²" with κ = 0.1; a run *hits* it when its
held-out MSE is within ±5 % of κ² (what the β search aims at) and *meets* it when the MSE is
at most κ²·1.05 (GECO's inequality, with the same 5 % slack for the train/held-out gap).

Summary measures of one run's log (:func:`log_summary`):

- **time to training target**: the first logged step from which the *training* MSE, averaged
  over a 100-step window, is ≤ κ² (NaN: never); the held-out MSE of the end may still miss;
- **λ peak / λ end**: the largest and the last λ (GECO and the Lagrangians; the implied
  λ = 1/β or D/(2σ²) of the others); **λ at bound from**: the first step λ reached the upper
  bound 10⁸ (NaN: never), **λ at floor from** the same for the lower bound 10⁻³; λ *ran away*
  when it reached the upper bound or its peak is ≥ 100× its end (an overshoot that was being
  undone); **Ĉ⁰**: the first logged constraint value;
- **overshoot**: κ²/(held-out MSE) − 1 for a run that met the target (how far past the
  tolerance it went, paying KL for nothing).

Comparisons of methods over seeds use :func:`geco_book.verdicts.compare` (gap > 2 SE and no
overlap of the seeds' ranges).

Example:
    >>> import pandas as pd
    >>> log = pd.DataFrame({"step": [0, 25, 50, 75, 100, 125, 150],
    ...                     "mse": [0.5, 0.1, 0.02, 0.01, 0.008, 0.007, 0.007],
    ...                     "lambda": [1.0, 10.0, 1e3, 1e4, 1e4, 9e3, 8e3]})
    >>> s = log_summary(log, target=0.01, window=50)
    >>> s["time_to_target"], s["lambda_peak"], s["lambda_end"], s["lambda_bound_step"]
    (100, 10000.0, 8000.0, nan)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from geco_book.chapters import large_scale as _ls
from geco_book.verdicts import compare

__all__ = [
    "LAMBDA_CEILING",
    "search_best_ratio",
    "search_history",
    "log_summary",
    "methods_table",
    "robustness_reference",
    "robustness_table",
    "rule_table",
    "rule_verdicts",
    "run_row",
    "sweep_table",
]

#: GECO's upper λ bound (chapter 03's ``lambda_bounds``, the same at every profile).
LAMBDA_CEILING = float(_ls.SETTINGS["cpu"]["geco"]["geco_kwargs"]["lambda_bounds"][1])
#: GECO's lower λ bound (λ there: the constraint is inactive, GECO runs as a β → ∞ VAE).
LAMBDA_FLOOR = float(_ls.SETTINGS["cpu"]["geco"]["geco_kwargs"]["lambda_bounds"][0])
_TOL = 0.05


def lambda_range(cfg) -> tuple[float, float]:
    """The bounds a run's λ can sit at: GECO's ``lambda_bounds`` for the GECO family (and the
    methods without bounds of their own), ControlVAE's ``1/beta_max … 1/beta_min``
    (:data:`geco_core.objectives.alternatives.CONTROL_VAE_BETA_RANGE` unless its kwargs say
    otherwise). Its floor is not counted: ControlVAE starts there by design (β = β_max at the
    first step)."""
    if cfg.objective == "control_vae":
        from geco_core.objectives.alternatives import CONTROL_VAE_BETA_RANGE

        beta_min = float(dict(cfg.objective_kwargs).get("beta_min", CONTROL_VAE_BETA_RANGE[0]))
        return 0.0, 1.0 / beta_min
    return LAMBDA_FLOOR, LAMBDA_CEILING


def log_summary(log: pd.DataFrame, target: float, window: int = 100,
                bounds: tuple[float, float] = (LAMBDA_FLOOR, LAMBDA_CEILING)) -> dict[str, Any]:
    """Time to target, λ peak and end, and the step of the peak, from one training log (see
    the module docstring). ``window``: steps of the training-MSE average; ``bounds``: the
    run's λ bounds (:func:`lambda_range`), whose first touches are reported."""
    steps = log["step"].to_numpy()
    mse = log["mse"].to_numpy(dtype=float)
    every = max(int(steps[1] - steps[0]), 1) if len(steps) > 1 else 1
    k = max(int(round(window / every)), 1)
    smooth = pd.Series(mse).rolling(k, min_periods=k).mean().to_numpy()
    ok = np.nonzero(smooth <= target)[0]
    lam = log["lambda"].to_numpy(dtype=float)
    ipk = int(np.nanargmax(lam))
    at = np.nonzero(lam >= bounds[1] * 0.9999)[0]
    low = np.nonzero(lam <= bounds[0] * 1.0001)[0]
    c0 = float(log["c_hat"].iloc[0]) if "c_hat" in log and len(log) else math.nan
    return {
        "time_to_target": int(steps[ok[0]]) if len(ok) else math.nan,
        "lambda_peak": float(lam[ipk]),
        "lambda_peak_step": int(steps[ipk]),
        "lambda_end": float(lam[-1]),
        "lambda_bound_step": int(steps[at[0]]) if len(at) else math.nan,
        "lambda_floor_step": int(steps[low[0]]) if len(low) else math.nan,
        "c0": c0,
    }


def run_row(spec, run, ev: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """One table row: the spec, the training end state, the evaluation and the log summary."""
    from geco_book.chapters.beyond import METHODS

    target = float(settings["kappa"]) ** 2
    log = run.log()
    tail = log.tail(max(len(log) // 10, 1))
    summ = log_summary(log, target, bounds=lambda_range(run.config))
    mse = float(ev["test_mse"])
    row = {
        "name": spec.name, "model": spec.model, "dataset": spec.dataset,
        "method": spec.method, "label": METHODS[spec.method]["label"], "seed": spec.seed,
        "lam_fixed": spec.lam, "variant": ",".join(f"{k}={v:g}" for k, v in spec.variant),
        "steps": run.step, "wall_time_s": run.wall_time,
        "train_kl": float(tail["kl"].mean()), "train_mse": float(tail["mse"].mean()),
        "test_mse": mse, "test_avg_kl": float(ev["test_avg_kl"]),
        "nll_bits_per_dim": float(ev["nll_bits_per_dim"]),
        "mse_over_target": mse / target,
        "hit": abs(mse / target - 1.0) <= _TOL,
        "met": mse <= target * (1 + _TOL),
        **summ,
    }
    row["ran_away"] = bool(summ["lambda_peak"] >= 100 * summ["lambda_end"]
                           or summ["lambda_peak"] >= LAMBDA_CEILING * 0.9999)
    row["at_ceiling"] = bool(summ["lambda_end"] >= LAMBDA_CEILING * 0.9999)
    return row


def _pm(values, digits: int = 3) -> str:
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits}g}"
    return f"{v.mean():.{digits}g} ± {v.std(ddof=1) / math.sqrt(len(v)):.2g}"


def _reached(values) -> str:
    """Mean ± SE of the time to target over the seeds that reached it, and how many did."""
    v = np.asarray(list(values), dtype=float)
    ok = v[np.isfinite(v)]
    if len(ok) == 0:
        return f"never (0/{len(v)})"
    return f"{_pm(ok)} ({len(ok)}/{len(v)})"


def sweep_table(res) -> pd.DataFrame:
    """Experiment 1, one row per (model, data set): GECO's runs (chapter 03, every seed)
    against the β search — its runs and training seconds, the best β and what it gave at the
    same seeds (mean ± SE), and the verdicts on held-out MSE and KL (GECO vs the β-VAE)."""
    from geco_book.chapters.beyond import evaluate

    target = float(res.settings["kappa"]) ** 2
    rows = []
    for (model, data), r in res.search.items():
        s = r["search"]
        geco = list(r["geco"].values())
        g_ev = [evaluate(run, res.settings) for run in geco]
        g_mse = np.asarray([e["test_mse"] for e in g_ev]) / target
        g_kl = [e["test_avg_kl"] for e in g_ev]
        g_sum = [log_summary(run.log(), target) for run in geco]
        b_ev = [evaluate(run, res.settings) for run in r["best"].values()]
        b_mse = np.asarray([e["test_mse"] for e in b_ev]) / target
        b_kl = [e["test_avg_kl"] for e in b_ev]
        rows.append({
            "model": model, "dataset": data,
            "GECO seeds": len(geco),
            "GECO held-out MSE / κ²": _pm(g_mse),
            "GECO met (≤ 1.05 κ²)": f"{int((g_mse <= 1 + _TOL).sum())}/{len(geco)}",
            "GECO hit (±5 %)": f"{int((abs(g_mse - 1) <= _TOL).sum())}/{len(geco)}",
            "GECO KL": _pm(g_kl),
            "GECO λ end": _pm((x["lambda_end"] for x in g_sum), 2),
            "GECO λ peak": _pm((x["lambda_peak"] for x in g_sum), 2),
            "GECO s per run": _pm((run.wall_time for run in geco), 3),
            "search": s.status,
            "search runs": s.n_runs,
            "search s": round(sum(run.wall_time for run in r["runs"].values())),
            "best λ = 1/β": f"{s.best[0]:.3g}",
            "β-VAE seeds": len(b_ev),
            "β-VAE MSE / κ²": _pm(b_mse),
            "β-VAE KL": _pm(b_kl),
            "MSE: GECO vs β-VAE": compare(b_mse, g_mse),
            "KL: GECO vs β-VAE": compare(b_kl, g_kl),
        })
    return pd.DataFrame(rows).set_index(["model", "dataset"])


def search_history(res) -> pd.DataFrame:
    """Every run of the β searches in the order they ran: λ = 1/β, held-out MSE ÷ κ², KL."""
    from geco_book.chapters.beyond import evaluate

    target = float(res.settings["kappa"]) ** 2
    rows = []
    for (model, data), r in res.search.items():
        for i, (lam, mse) in enumerate(r["search"].history):
            ev = evaluate(r["runs"][lam], res.settings)
            rows.append({"model": model, "dataset": data, "run": i + 1, "λ = 1/β": lam,
                         "held-out MSE / κ²": mse / target, "held-out KL": ev["test_avg_kl"]})
    return pd.DataFrame(rows).set_index(["model", "dataset", "run"])


def _rows(res, *, variant: bool) -> pd.DataFrame:
    t = pd.DataFrame(res.rows)
    return t[(t["variant"] != "") == variant]


def search_best_ratio(res) -> float:
    """The β search's best training MSE ÷ κ² on ``methods_combo``: the β-VAE's β is the
    search's, so above ``1 + tol`` no β met the target and the β-VAE is infeasible at this
    budget (no KL verdict against it)."""
    search = res.search[tuple(res.settings["methods_combo"])]["search"]
    return min(v for _, v in search.history) / search.target


def methods_table(res) -> pd.DataFrame:
    """Experiment 2: per method on ``methods_combo``, mean ± SE over seeds of the held-out MSE
    (÷ κ²), KL and time to training target; seeds that met the target; λ at the end and its
    peak; the verdict of its held-out KL against GECO's over all seeds (:func:`compare`) —
    none for a method whose λ sat at its own bound, nor for the β-VAE when no run of the β
    search met the target (the searched β is then infeasible at this budget)."""
    t = _rows(res, variant=False)
    model, data = res.settings["methods_combo"]
    t = t[(t["model"] == model) & (t["dataset"] == data)]
    geco_kl = t[t["method"] == "geco"]["test_avg_kl"]
    infeasible = search_best_ratio(res) > 1 + res.search[(model, data)]["search"].tol
    rows = []
    for m, d in t.groupby("method", sort=False):
        rows.append({
            "method": d["label"].iloc[0], "seeds": len(d),
            "held-out MSE / κ²": _pm(d["mse_over_target"]),
            "met": f"{int(d['met'].sum())}/{len(d)}",
            "held-out KL": _pm(d["test_avg_kl"]),
            "time to training target [steps] (seeds)": _reached(d["time_to_target"]),
            "λ end": _pm(d["lambda_end"], 2),
            "λ peak": _pm(d["lambda_peak"], 2),
            "λ ran away": f"{int(d['ran_away'].sum())}/{len(d)}",
            "λ at its ceiling (seeds)": f"{int(d['lambda_bound_step'].notna().sum())}/{len(d)}",
            # a method whose λ sat at its own bound tests its setting, not the method
            "KL vs GECO": "—" if m == "geco" else "— (λ at its bound)"
            if d["lambda_bound_step"].notna().any() else "— (no β met the target)"
            if m == "beta_vae" and infeasible else compare(geco_kl, d["test_avg_kl"]),
            "s per run": _pm(d["wall_time_s"]),
        })
    return pd.DataFrame(rows).set_index("method")


def robustness_table(res) -> pd.DataFrame:
    """Experiment 3: one row per changed setting (at the chapter's seed), with the unchanged
    runs of GECO and the β-VAE (the searched β) at that seed as the reference rows."""
    t = pd.DataFrame(res.rows)
    model, data = res.settings["methods_combo"]
    seed = int(res.settings["seed"])
    t = t[(t["model"] == model) & (t["dataset"] == data) & (t["seed"] == seed)
          & t["method"].isin(["geco", "beta_vae"])]
    cols = ["method", "variant", "test_mse", "mse_over_target", "met", "test_avg_kl",
            "time_to_target", "lambda_peak", "lambda_bound_step", "lambda_end", "ran_away",
            "at_ceiling"]
    out = t[cols].copy()
    out["variant"] = out["variant"].replace("", "(reference)")
    return out.sort_values(["method", "variant"]).set_index(["method", "variant"])


#: The rule check's three GECO settings (rows of :func:`rule_table`), by method of the spec.
RULE_ROWS = {"geco": "ν auto (policy; chapter 03's run)",
             "geco_nu1": "ν = 1 (unit step; ablation)",
             "geco_speedup": "ν auto + speed-up ×10"}


def robustness_reference(res) -> dict[str, float]:
    """The settings the robustness runs change one at a time, as the reference GECO run (the
    methods combination at the chapter's seed) used them: ν auto as the ν the engine took
    from Ĉ⁰ (its log), the others from its config."""
    from geco_book.chapters.beyond import Spec

    model, data = res.settings["methods_combo"]
    run = res.runs[Spec(model, data, "geco", seed=int(res.settings["seed"])).name]
    out = {}
    for k in res.settings["robustness"]:
        v = getattr(run.config, k)
        out[k] = float(run.log()["nu"].iloc[0]) if (k, v) == ("nu", "auto") else float(v)
    return out


def rule_table(res) -> pd.DataFrame:
    """The ν rule on every (model, data set) of the search, one row per run and seed: chapter
    03's GECO under the policy (ν auto), the ν = 1 ablation and ν auto with the genesis
    speed-up, at each of ``rule_seeds``; ``ν`` is the step the run used (its log)."""
    target = float(res.settings["kappa"]) ** 2
    t = pd.DataFrame(res.rows)
    seeds = [int(k) for k in res.settings["rule_seeds"]]
    rows = []
    from geco_book.chapters.beyond import evaluate

    for (model, data), r in res.search.items():
        picks = [(RULE_ROWS["geco"], int(k), g, evaluate(g, res.settings))
                 for k, g in sorted(r["geco"].items()) if int(k) in seeds]
        d = t[(t["model"] == model) & (t["dataset"] == data) & (t["variant"] == "")]
        for m in ("geco_nu1", "geco_speedup"):
            for _, row in d[d["method"] == m].sort_values("seed").iterrows():
                run = res.runs[row["name"]]
                picks.append((RULE_ROWS[m], int(row["seed"]), run, None))
        for name, k, run, ev in picks:
            log = run.log()
            if ev is None:
                ev = evaluate(run, res.settings)
            summ = log_summary(log, target)
            nu = run.config.nu  # ν auto: the engine logs the ν it took from Ĉ⁰
            rows.append({"model": model, "dataset": data, "GECO": name, "seed": k,
                         "ν": float(log["nu"].iloc[0] if nu == "auto" else nu),
                         "held-out MSE / κ²": float(ev["test_mse"]) / target,
                         "KL": float(ev["test_avg_kl"]), **summ})
    return pd.DataFrame(rows).set_index(["model", "dataset", "GECO", "seed"])


def rule_verdicts(res) -> pd.DataFrame:
    """Per (model, data set): each of :data:`RULE_ROWS`' settings over its seeds (held-out
    MSE ÷ κ² and KL, mean ± SE; seeds that met the target; seeds whose λ touched the ceiling
    or the floor at any step), and :func:`compare`'s verdicts on the KL: ν auto against ν = 1,
    and the speed-up against ν auto. A seed that missed the target or whose λ touched the
    ceiling tests its setting, so the verdict says how many seeds met it."""
    t = rule_table(res).reset_index()
    rows = []
    for (model, data), d in t.groupby(["model", "dataset"], sort=False):
        row: dict[str, Any] = {"model": model, "dataset": data}
        part = {}
        for key, name in RULE_ROWS.items():
            x = d[d["GECO"] == name]
            part[key] = x
            row[f"{name}: ν"] = _pm(x["ν"], 2)
            row[f"{name}: MSE / κ²"] = _pm(x["held-out MSE / κ²"])
            row[f"{name}: met"] = f"{int((x['held-out MSE / κ²'] <= 1 + _TOL).sum())}/{len(x)}"
            row[f"{name}: KL"] = _pm(x["KL"])
            row[f"{name}: λ touched ceiling / floor"] = (
                f"{int(x['lambda_bound_step'].notna().sum())}/{len(x)} / "
                f"{int(x['lambda_floor_step'].notna().sum())}/{len(x)}")
        row["KL: ν auto vs ν = 1"] = compare(part["geco_nu1"]["KL"], part["geco"]["KL"])
        row["KL: speed-up vs ν auto"] = compare(part["geco"]["KL"], part["geco_speedup"]["KL"])
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "dataset"]).T
