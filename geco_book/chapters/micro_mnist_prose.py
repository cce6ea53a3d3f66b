"""Chapter 02's findings as sentences computed from the runs, and whether the measures settled.

The chapter's prose quotes no number by hand: :func:`conclusions` writes the findings (the
three models of Fig. 8, the κ sweeps, the λ⁰ ablations) from the records that render, and
:func:`claims_table` is :func:`~geco_book.chapters.micro_mnist_tables.paper_comparison` with
one more column, whether the measure each verdict uses settled over the last doubling of
steps (:func:`settled_table`): a verdict on measures still moving by more than their spread
over seeds compares optimisations in progress, and says so.

Example:
    >>> round(pixel_variance(np.array([[[0, 255]], [[255, 255]]], np.uint8)), 4)
    0.125
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from geco_book.chapters.micro_mnist import LN7, MicroMNISTResult, RunResult
from geco_book.chapters.micro_mnist_tables import (
    TILING_MIN_TILES,
    _lambda_bounds,
    _met_counts,
    constraint_status,
    counted,
    paper_comparison,
)

__all__ = ["NEGLIGIBLE", "PARTS", "SETTLE_MEASURES", "claims_table", "conclusions",
           "pixel_variance", "settled_table"]

#: The measures whose settling :func:`settled_table` checks, with the names the tables use.
SETTLE_MEASURES = {"avg_kl": "avg KL", "marginal_kl": "marginal KL",
                   "effective_tiles": "e^I (eff. tiles)", "self_class_rate": "self-class. rate"}


#: A change of the mean this small counts as settled whatever the seed spread (a collapsed
#: sweep end at e^I = 1.0002 → 0.99996 has a seed SD of 10⁻⁴ and has not "moved").
NEGLIGIBLE = {"avg_kl": 0.01, "marginal_kl": 0.01, "effective_tiles": 0.05,
              "self_class_rate": 0.005}


def pixel_variance(x: np.ndarray) -> float:
    """The MSE of the mean image: the per-pixel variance over the digits ``x`` (uint8
    ``[n, …]``, scaled to [0, 1]), averaged over pixels — what a decoder that ignores z
    reaches, and the largest MSE a useful RE constraint can ask for."""
    a = np.asarray(x, dtype=float) / 255.0
    return float(a.var(axis=0).mean())


def _settled(runs: Sequence[RunResult], key: str) -> dict[str, Any]:
    prev = np.array([float(run.history[-2][key]) for run in runs])
    last = np.array([float(run.history[-1][key]) for run in runs])
    change = abs(float(last.mean() - prev.mean()))
    largest = float(np.abs(last - prev).max())
    spread = float(last.std(ddof=1)) if len(last) > 1 else math.nan
    return {"steps": f"{int(runs[0].history[-2]['steps']):,} → "
                     f"{int(runs[0].history[-1]['steps']):,}",
            "mean before": float(prev.mean()), "mean after": float(last.mean()),
            "|change of the mean|": change, "largest seed change": largest, "seed SD": spread,
            "settled": (bool(largest <= max(spread, NEGLIGIBLE[key])) if len(last) > 1
                        else None)}


def settled_table(result: MicroMNISTResult):
    """Did each measure of Fig. 8's models settle? Per (model, measure of
    :data:`SETTLE_MEASURES`): the mean over seeds at the last two evaluated steps, the change
    of that mean, the standard deviation over seeds at the last step, and ``settled`` = the
    change is at most that spread (None with one seed). The κ sweeps' e^I at the strongest
    and the weakest κ are rows too (the collapse verdicts read them)."""
    import pandas as pd

    rows = []
    for i, run0 in enumerate(result.fig8):
        runs = [r.fig8[i] for r in result.seeds]
        for key, name in SETTLE_MEASURES.items():
            rows.append({"model": run0.spec.label, "measure": name, **_settled(runs, key)})
    sweeps = [r for r in result.seeds if r.has_sweeps]
    for constraint in ("re", "cla"):
        for k in (0, -1):
            runs = [r.sweep(constraint)[k] for r in sweeps]
            if any(row["model"] == runs[0].spec.label for row in rows):
                continue  # Fig. 8's own run (RE κ = 0.05) is already in
            rows.append({"model": runs[0].spec.label, "measure": SETTLE_MEASURES[
                "effective_tiles"], **_settled(runs, "effective_tiles")})
    return pd.DataFrame(rows).set_index(["model", "measure"])


def claims_table(result: MicroMNISTResult):
    """:func:`paper_comparison` as a claims table (:func:`geco_book.verdicts.claim`): the
    paper's number for each claim, the verdict in the book's words
    (:func:`~geco_book.chapters.micro_mnist_tables.verdict_class`; the chapter's own verdict,
    which says which model and how many seeds, is the reason), and the column ``settled (last
    doubling)``: for each claim, the models whose measure — or e^I, which the collapse rule
    reads — moved by more than the seed spread over the last doubling (:func:`settled_table`),
    or "yes" when none did; a verdict on measures still moving is marked "provisional" in its
    caveat."""
    import pandas as pd

    from geco_book.chapters.micro_mnist_tables import PAPER_NUMBERS, verdict_class
    from geco_book.verdicts import claim

    table = paper_comparison(result)
    st = settled_table(result)
    labels = [run.spec.label for run in result.fig8]
    ends = {c: [result.sweep(c)[k].spec.label for k in (0, -1)] for c in ("re", "cla")}
    tiles = SETTLE_MEASURES["effective_tiles"]
    per_row = [(labels, ["marginal KL", tiles]), (labels, ["self-class. rate", tiles]),
               (labels, ["avg KL", tiles]), (ends["re"], [tiles]), (ends["cla"], [tiles])]
    rows = []
    for (models, measures), paper, (_, r) in zip(per_row, PAPER_NUMBERS, table.iterrows(),
                                                 strict=True):
        moving = [(m, x) for m in models for x in measures
                  if st.loc[(m, x), "settled"] == False]  # noqa: E712 (numpy bool; None: 1 seed)
        row = claim(r["claim (paper)"], paper, r["our measure"], r["ours"],
                    verdict_class(r["verdict"]), r["verdict"],
                    "provisional: measures still moving over the last doubling" if moving else "",
                    seeds=int(r["seeds"]))
        row["seeds"] = r["seeds"]
        row["settled (last doubling)"] = "yes" if not moving else "no: " + "; ".join(
            f"{m} {x}: a seed moved {st.loc[(m, x), 'largest seed change']:.2g} "
            f"(seed SD {st.loc[(m, x), 'seed SD']:.2g})" for m, x in moving)
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(vals: Sequence[float], digits: int = 3) -> str:
    a = np.asarray(vals, dtype=float)
    if len(a) < 2:
        return f"{a[0]:.{digits}g}"
    return f"{a.mean():.{digits}g} ± {a.std(ddof=1) / math.sqrt(len(a)):.2g}"


def _vals(runs: Sequence[RunResult], key: str) -> list[float]:
    return [float(run.metrics[key]) for run in runs]


def _status_words(runs: Sequence[RunResult], bounds) -> str:
    c = _met_counts(runs, bounds)  # the seed tables' counts, in words
    ceiling, floor = c["λ touched ceiling / floor"].split(" / ")
    return (f"counted in {c['counted']} seeds (λ touched its ceiling in {ceiling}, its floor "
            f"in {floor})")


#: The parts of :func:`conclusions`, in the chapter's order.
PARTS = ("fig8", "dynamics", "sweep", "ablations", "convergence")


def conclusions(result: MicroMNISTResult, parts: Sequence[str] = PARTS) -> str:
    """The chapter's findings as Markdown bullets, every number read from ``result`` (all its
    seeds): ``parts`` of :data:`PARTS` — Fig. 8's three models, the κ sweeps, the λ⁰
    ablations, and which measures had not settled over the last doubling."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"parts: {part!r} is not one of {PARTS}")
    found: dict[str, list[str]] = {p: [] for p in PARTS}
    bounds = _lambda_bounds(result)
    seeds = result.seeds
    n = len(seeds)
    elbo, re, cla = ([r.fig8[i] for r in seeds] for i in range(3))
    kappa_re, kappa_cla = re[0].spec.kappa, cla[0].spec.kappa
    out = found["fig8"]
    lam0 = [float(run.history[0]["lambda"]) for run in elbo]
    out.append(
        f"- **ELBO** ({n} seeds, mean ± SE). Self-classification rate "
        f"{_pm(_vals(elbo, 'self_class_rate'))}, MSE {_pm(_vals(elbo, 'mse'))}: disjoint "
        f"posteriors and exact reconstructions, but "
        f"average KL {_pm(_vals(elbo, 'avg_kl'))} and marginal KL "
        f"{_pm(_vals(elbo, 'marginal_kl'))} nats against ln 7 = {LN7:.3f} and 0 for a tiling: "
        f"tiny posteriors that leave most of the prior uncovered (holes, not overlap). Its "
        f"λ = D/2σ² went from {min(lam0):.2g}–{max(lam0):.2g} at "
        f"{int(elbo[0].history[0]['steps']):,} steps to "
        f"{min(_vals(elbo, 'lambda')):.2g}–{max(_vals(elbo, 'lambda')):.2g} at the end: the "
        f"learned σ keeps shrinking, so on seven images the ELBO has no fixed point at this "
        f"scale.")
    out.append(
        f"- **GECO + RE, κ = {kappa_re:g}**: e^I {_pm(_vals(re, 'effective_tiles'))}, "
        f"self-classification {_pm(_vals(re, 'self_class_rate'))}, average KL "
        f"{_pm(_vals(re, 'avg_kl'))} and marginal KL {_pm(_vals(re, 'marginal_kl'))} nats; "
        f"MSE {_pm(_vals(re, 'mse'))} against κ² = {kappa_re ** 2:.4g}; "
        f"{_status_words(re, bounds)}; final λ {min(_vals(re, 'lambda')):.3g}–"
        f"{max(_vals(re, 'lambda')):.3g}.")
    per_seed = "; ".join(
        f"seed {r.config['seed']}: e^I {run.metrics['effective_tiles']:.2g}, average KL "
        f"{run.metrics['avg_kl']:.3g}, p_true {run.metrics['p_true']:.2f}, λ touched "
        f"{constraint_status(run, bounds)['λ touched a bound (any step)']}"
        for r, run in zip(seeds, cla))
    var = float(np.mean([pixel_variance(r.x) for r in seeds]))
    out.append(
        f"- **GECO + CLA, κ = {kappa_cla:g}**: the seeds end in different regimes ({per_seed});"
        f" {_status_words(cla, bounds)}. The reconstructions are not digits (MSE "
        f"{_pm(_vals(cla, 'mse'))}, against {var:.3f} for the mean image of each seed's seven "
        f"digits, averaged over the seeds): CLA constrains only what the classifier sees, so "
        f"the decoder draws any pattern it labels correctly.")
    merged = [f"{v:.2g}" for run in cla if counted(run, bounds)
              for v in [float(run.metrics["effective_tiles"])] if v < TILING_MIN_TILES]
    n_ok = sum(counted(run, bounds) for run in cla)
    if merged and n_ok >= 2:
        out.append(f"- Counted CLA seeds with e^I below {TILING_MIN_TILES:g} ({', '.join(merged)})"
                   f" are posteriors that merged: they refute the tiling claims for CLA.")
    elif merged:
        out.append(f"- The one counted CLA seed has e^I {merged[0]} < {TILING_MIN_TILES:g} "
                   f"(merged posteriors); with one counted seed CLA gives no verdict.")
    out = found["dynamics"]
    for run in result.fig8 if "dynamics" in parts else []:  # seed 0's, as the chapter plots
        c = run.curves
        step, lam = np.asarray(c["step"]), np.asarray(c["lambda"], dtype=float)
        ipk = int(np.argmax(lam))
        if run.spec.objective == "elbo":
            out.append(f"- **{run.spec.label}** (seed {result.config['seed']}): λ = D/2σ² "
                       f"from {lam[0]:.2g} at step {int(step[0])} to {lam[-1]:.2g} at step "
                       f"{int(step[-1]):,}, its largest value at step {int(step[ipk]):,}.")
            continue
        cma = np.asarray(c["c_ma"], dtype=float)
        first = np.nonzero(cma <= 0)[0]
        met = f"first C_ma ≤ 0 at step {int(step[first[0]]):,}" if len(first) else "C_ma never ≤ 0"
        out.append(f"- **{run.spec.label}** (seed {result.config['seed']}): λ from "
                   f"{lam[0]:.2g} to its peak {lam[ipk]:.3g} at step {int(step[ipk]):,}; {met};"
                   f" λ {lam[-1]:.3g} at step {int(step[-1]):,} "
                   f"({constraint_status(run, bounds)['λ touched a bound (any step)']} guard "
                   f"touched).")
    out = found["sweep"]
    for constraint, kappas in (("re", "larger"), ("cla", "smaller")):
        sweeps = [r.sweep(constraint) for r in seeds if r.has_sweeps]
        cells = []
        for k in range(len(sweeps[0])):
            runs = [sw[k] for sw in sweeps]
            ok = sum(counted(run, bounds) for run in runs)
            cells.append(f"κ = {runs[0].spec.kappa:g}: {_pm(_vals(runs, 'effective_tiles'))} "
                         f"({ok}/{len(runs)} counted)")
        floor = [f"{sw[k].spec.kappa:g}" for k in range(len(sweeps[0])) for sw in sweeps[:1]
                 if all(constraint_status(s[k], bounds)["λ at a bound (end)"] for s in sweeps)]
        line = (f"- **{constraint.upper()} κ sweep** ({kappas} κ is weaker), e^I over "
                f"{len(sweeps)} seeds: " + "; ".join(cells) + ".")
        if floor:
            line += (f" At κ = {', '.join(floor)} λ ends at a guard in every seed: the "
                     f"constraint is inactive there (the KL-optimal model already meets it).")
        out.append(line)
    out = found["ablations"]
    abl = ({(run.spec.constraint, run.spec.kappa): run for run in result.ablations}
           if "ablations" in parts else {})
    for (constraint, kappa), a in abl.items():
        base = result.runs[f"{constraint}-{kappa:g}"]
        lam_a = a.spec.lambda_init
        lam_b = base.spec.lambda_init or float(result.config["settings"]["lambda_init"])
        steps = [f"{int(h['steps']):,}" for h in a.history]
        kl_a = ", ".join(f"{h['avg_kl']:.3g}" for h in a.history)
        kl_b = ", ".join(f"{h['avg_kl']:.3g}" for h in base.history)
        out.append(
            f"- **λ⁰ ablation, {constraint.upper()} κ = {kappa:g}** (seed "
            f"{result.config['seed']}): average KL at {', '.join(steps)} steps {kl_a} with "
            f"λ⁰ = {lam_a:g}, {kl_b} with the policy's λ⁰ = {lam_b:g}; e^I "
            f"{a.metrics['effective_tiles']:.2g} vs {base.metrics['effective_tiles']:.2g}; "
            f"λ touched {constraint_status(a, bounds)['λ touched a bound (any step)']} vs "
            f"{constraint_status(base, bounds)['λ touched a bound (any step)']} "
            f"(guards {bounds[0]:g}, {bounds[1]:g}).")
    out = found["convergence"]
    st = settled_table(result)
    moving = st[st["settled"] == False]  # noqa: E712 (None: one seed)
    if len(moving):
        steps = moving["steps"].iloc[0]
        out.append(
            f"- **Not settled** (a seed moved by more than the seeds' SD over the last "
            f"doubling, {steps} steps; mean before → after, largest seed change): " + "; ".join(
                f"{m} {meas} {r['mean before']:.3g} → {r['mean after']:.3g} "
                f"({r['largest seed change']:.2g}, SD {r['seed SD']:.2g})"
                for (m, meas), r in moving.iterrows())
            + ". The verdicts on these measures compare optimisations still in progress at an "
            "equal step budget, not their end points.")
    else:
        out.append("- **Settled**: every measure of Fig. 8's models and of the sweeps' ends "
                   "moved by less than its seed SD over the last doubling.")
    return "\n".join(line for p in parts for line in found[p])
