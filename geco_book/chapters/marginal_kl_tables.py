"""Chapter 04's tables: Table 2 at our scale beside the paper's, and the estimators side by side.

The verdict on "GECO's marginal KL is lower than the ELBO's" follows
:func:`geco_book.verdicts.compare` (gap of the seed means beyond twice its standard error and
no overlap of the seed ranges).

Example:
    >>> fmt_mean_se([1.0, 2.0, 3.0])
    '2 ± 0.58'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from geco_book.chapters.marginal_kl import PAPER_TABLE_2, ChapterResult
from geco_book.verdicts import ONE_SEED, compare, direction

__all__ = ["ESTIMATORS", "conclusions", "estimator_table", "fmt_mean_se", "table2"]


def fmt_mean_se(vals: Sequence[float], digits: int = 3) -> str:
    """``"mean ± SE"`` over seeds (one value: the value alone)."""
    a = np.asarray([v for v in vals if v is not None and math.isfinite(v)], dtype=float)
    if len(a) == 0:
        return "—"
    if len(a) == 1:
        return f"{a[0]:.{digits}g}"
    return f"{a.mean():.{digits}g} ± {a.std(ddof=1) / math.sqrt(len(a)):.2g}"


def _groups(sub):
    """The ELBO rows, then one group per GECO κ (headline κ first: the most seeds)."""
    elbo = sub[sub["objective"] == "elbo"]
    geco = sub[sub["objective"] == "geco"]
    kappas = sorted(set(geco["kappa"]), key=lambda k: -int((geco["kappa"] == k).sum()))
    return elbo, [(k, geco[geco["kappa"] == k]) for k in kappas]


def _verdict(e: Sequence[float], g: Sequence[float]) -> str:
    """:func:`~geco_book.verdicts.compare` with several seeds per side; with one seed on either
    side the direction only, marked as no verdict."""
    if min(len(e), len(g)) < 2:
        return f"{direction(float(np.mean(e)), float(np.mean(g)))} ({ONE_SEED})"
    return compare(e, g)


def table2(result: ChapterResult):
    """Table 2 at our scale: per data set, the ELBO and GECO at each κ, mean ± SE over seeds of
    the marginal KL, the average KL, I(n; z) beside ln N and the training MSE; the paper's
    marginal KL where it has one (Color-MNIST; never mixed with ours); and the verdict on GECO
    vs ELBO (a direction only, marked, where one side has one seed)."""
    import pandas as pd

    t = result.table()
    rows = []
    for data in dict.fromkeys(t["dataset"]):
        elbo, gecos = _groups(t[t["dataset"] == data])
        for name, part, verdict in [("ELBO", elbo, "")] + [
                (g["label"].iloc[0], g, _verdict(elbo["marginal_kl"].tolist(),
                                                 g["marginal_kl"].tolist())) for _, g in gecos]:
            obj = "elbo" if name == "ELBO" else "geco"
            paper = PAPER_TABLE_2.get(data, {}).get(obj)
            rows.append({
                "data set": data,
                "model": name,
                "seeds": len(part),
                "marginal KL [nats]": fmt_mean_se(part["marginal_kl"]),
                "paper's marginal KL": "—" if paper is None else f"{paper:g}",
                "avg KL [nats]": fmt_mean_se(part["avg_kl"]),
                "I(n; z) [nats]": fmt_mean_se(part["mutual_info"]),
                "ln N": f"{part['ln_n'].iloc[0]:.4g}",
                "ln N − I [nats]": fmt_mean_se(part["ln_n"] - part["mutual_info"], digits=2),
                "train MSE": fmt_mean_se(part["train_mse"]),
                "GECO vs ELBO (marginal KL)": verdict,
            })
    return pd.DataFrame(rows).set_index(["data set", "model"])


#: The estimator columns of :func:`estimator_table`: label → (metric, its standard error).
ESTIMATORS = {
    "exact (all N)": ("marginal_kl", "marginal_kl_se"),
    "leave-one-out": ("loo_marginal_kl", "loo_marginal_kl_se"),
    "held-out (test codes)": ("heldout_marginal_kl", "heldout_marginal_kl_se"),
}


def estimator_table(result: ChapterResult):
    """The estimators on the same samples, one row per detail model (S = N): exact,
    leave-one-out, held-out and the minibatch estimators (MWS, MSS) at each batch size,
    "value ± SE" (the SE is Monte Carlo over the samples)."""
    import pandas as pd

    t = result.table()
    t = t[t["n_samples"] == t["n_points"]]
    cols: dict[str, tuple[str, str]] = dict(ESTIMATORS)
    for b in result.settings["batch_sizes"]:
        cols[f"MWS, B = {b}"] = (f"mws_{b}", f"mws_{b}_se")
        cols[f"MSS, B = {b}"] = (f"mss_{b}", f"mss_{b}_se")
    rows = []
    for name, r in t.iterrows():
        row: dict[str, Any] = {"model": name}
        for label, (v, se) in cols.items():
            if v in r and r[v] is not None and math.isfinite(r[v]):
                row[label] = f"{r[v]:.4g} ± {r[se]:.2g}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def conclusions(result: ChapterResult, lambda_bound: float = 1e8) -> str:
    """The chapter's findings as sentences computed from the numbers (so the text is true of
    what renders): Table 2's direction and verdict per data set beside the paper's ratio, the
    GECO constraint's status, the estimators' gaps to the exact one, and the holes' link to
    the classifier's confidence."""
    t = result.table()
    out = []
    for data in dict.fromkeys(t["dataset"]):
        elbo, gecos = _groups(t[t["dataset"] == data])
        e = elbo["marginal_kl"].tolist()
        kh, gsub = gecos[0]
        g = gsub["marginal_kl"].tolist()
        verdict = compare(e, g)
        ratio = np.mean(e) / np.mean(g) if np.mean(g) > 0 else math.inf
        said = {"lower": "GECO's is lower beyond the seed spread",
                "higher": "GECO's is higher beyond the seed spread"}.get(
                    verdict, "no clear difference between them at this number of seeds")
        line = (f"- {data}: marginal KL ELBO {fmt_mean_se(e)} vs GECO κ = {kh:g} "
                f"{fmt_mean_se(g)} nats ({len(e)} and {len(g)} seeds; ELBO/GECO = {ratio:.2g}): "
                f"{said}")
        paper = PAPER_TABLE_2.get(data)
        if paper:
            line += (f"; the paper has {paper['elbo']:g} vs {paper['geco']:g} "
                     f"(ratio {paper['elbo'] / paper['geco']:.2g})")
        unmet = int((gsub["c_ma_final"] > 0).sum())
        at_bound = int((gsub["lambda_final"] >= lambda_bound * (1 - 1e-4)).sum())
        if unmet or at_bound:
            line += (f". GECO's constraint was not met at the end in {unmet} of {len(gsub)} "
                     f"seeds; λ ended at its {lambda_bound:g} bound in {at_bound}")
        for k, part in gecos[1:]:
            line += (f". GECO κ = {k:g}: {fmt_mean_se(part['marginal_kl'])} nats, "
                     f"{_verdict(e, part['marginal_kl'].tolist())} than the ELBO")
        out.append(line + ".")
    detail = t[t["n_samples"] == t["n_points"]]
    for name, r in detail.iterrows():
        parts = [f"leave-one-out − exact = {r['loo_marginal_kl'] - r['marginal_kl']:+.3g}"]
        if "heldout_marginal_kl" in r and math.isfinite(r["heldout_marginal_kl"]):
            parts.append(f"held-out − exact = {r['heldout_marginal_kl'] - r['marginal_kl']:+.3g}")
        for b in result.settings["batch_sizes"]:
            if f"mws_{b}" in r and math.isfinite(r[f"mws_{b}"]):
                parts.append(f"MWS(B={b}) − exact = {r[f'mws_{b}'] - r['marginal_kl']:+.3g}, "
                             f"MSS(B={b}) − exact = {r[f'mss_{b}'] - r['marginal_kl']:+.3g}")
        out.append(f"- {name} (exact {r['marginal_kl']:.4g} ± {r['marginal_kl_se']:.2g} "
                   f"nats): " + "; ".join(parts) + " nats.")
        rho = r.get("ratio_confidence_spearman", math.nan)
        if rho is not None and math.isfinite(rho):
            out.append(f"  Holes: Spearman correlation between log q(z)/π(z) and the "
                       f"classifier's confidence over {int(r['n_prior']):,} prior samples: "
                       f"{rho:+.2f}; share of prior samples with log q/π < −5: "
                       f"{r['prior_share_below_minus_5']:.1%}.")
    return "\n".join(out)
