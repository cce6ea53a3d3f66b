"""Chapter 03's tables: seed summaries, the headline comparison, constraints, the paper's claims.

A comparison ("GECO's KL is lower than the ELBO's") is called only when the seeds say so:
:func:`compare` requires the gap of the means to exceed twice its standard error **and** the
seed ranges not to overlap; otherwise the verdict is "no clear difference".

Example:
    >>> compare([10.0, 11.0, 12.0], [1.0, 1.5, 2.0])
    'lower'
    >>> compare([10.0, 11.0, 12.0], [9.0, 11.5, 13.0])
    'no clear difference'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["PAPER_CLAIMS", "compare", "constraint_table", "headline_table", "summarise"]

_METRICS = ("test_avg_kl", "train_kl", "nll_bits_per_dim", "nll_nats_per_pixel", "test_mse",
            "train_mse", "lambda", "wall_time_s")


def _se(v: pd.Series) -> float:
    v = v.dropna()
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def summarise(table: pd.DataFrame, metrics: Sequence[str] = _METRICS) -> pd.DataFrame:
    """Mean, standard error (``<m>_se``, NaN for one seed) and seed count per (model, dataset,
    method), with κ and the label of the method."""
    keys = ["model", "dataset", "method"]
    g = table.groupby(keys, sort=False)
    out = g[list(metrics)].mean()
    for m in metrics:
        out[f"{m}_se"] = g[m].apply(_se)
    out["n_seeds"] = g.size()
    out["kappa"] = g["kappa"].first()
    out["label"] = g["label"].first()
    return out.reset_index()


def compare(a: Sequence[float], b: Sequence[float]) -> str:
    """Is ``b`` lower than ``a`` beyond the seed spread? ``"lower"``, ``"higher"`` or
    ``"no clear difference"`` (see the module docstring; one seed each is never enough)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return "no clear difference"
    gap = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if gap > 2 * se and b.max() < a.min():
        return "lower"
    if -gap > 2 * se and b.min() > a.max():
        return "higher"
    return "no clear difference"


def _pm(mean: float, se: float, digits: int = 3) -> str:
    if math.isnan(se):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {se:.2g}"


def headline_table(table: pd.DataFrame, kappa: float) -> pd.DataFrame:
    """ELBO vs GECO-RE κ per (model, dataset): held-out average KL and NLL (mean ± SE over
    seeds), and whether GECO's KL is lower / NLL higher beyond the seed spread."""
    rows = []
    geco = f"geco-re-{kappa:.4g}"
    for (model, data), d in table.groupby(["model", "dataset"], sort=False):
        e, g = d[d["method"] == "elbo"], d[d["method"] == geco]
        if e.empty or g.empty:
            continue
        row = {"model": model, "dataset": data, "seeds": f"{len(e)} / {len(g)}"}
        for col, name in (("test_avg_kl", "KL"), ("nll_bits_per_dim", "NLL [bits/dim]"),
                          ("test_mse", "MSE")):
            row[f"ELBO {name}"] = _pm(e[col].mean(), _se(e[col]))
            row[f"GECO {name}"] = _pm(g[col].mean(), _se(g[col]))
        row["GECO's KL vs ELBO's"] = compare(e["test_avg_kl"], g["test_avg_kl"])
        nll = compare(e["nll_bits_per_dim"], g["nll_bits_per_dim"])
        row["GECO's NLL vs ELBO's"] = nll
        row["KL ratio ELBO/GECO"] = f"{e['test_avg_kl'].mean() / g['test_avg_kl'].mean():.3g}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "dataset"])


def constraint_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every GECO run: κ, whether the constraint was met at the end (C_ma ≤ 0), final λ and
    whether λ sat at a bound, final training √MSE against κ (for RE)."""
    g = table[table["objective"] == "geco"].copy()
    g["train √MSE"] = np.sqrt(g["train_mse"])
    cols = ["model", "dataset", "method", "seed", "kappa", "train √MSE", "c_ma",
            "constraint_met", "lambda", "lambda_at_bound"]
    return g[cols].sort_values(["model", "dataset", "method", "seed"])


#: The paper's claims of §4.1 that the chapter tests (the paper's words, shortened).
PAPER_CLAIMS = {
    "fig4_kl": "GECO reaches a lower KL than the ELBO, sometimes by orders of magnitude (Fig. 4)",
    "fig4_nll": "at the price of a worse reconstruction NLL (Fig. 4)",
    "fig3_phases": "early on the constraint dominates (β < 1 on the ELBO's scale) and β grows "
                   "once the reconstruction error crosses κ (Fig. 3)",
    "fig5": "at a matched reconstruction error GECO's average KL is lower than the ELBO's "
            "(Fig. 5)",
    "fig6": "the constraint changes samples and reconstructions markedly (Fig. 6)",
}
