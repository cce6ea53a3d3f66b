"""Chapter 05's figures: the β search beside GECO, λ trajectories, robustness.

Each function takes the chapter's :class:`~geco_book.chapters.beyond.ChapterResult` (or the
logs it holds) and returns a matplotlib figure; the chapter shows it with a caption
(:func:`geco_book.figures.caption.show_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from geco_book.figures.layout import SMALL_PT, log_ticks, panels

__all__ = ["robustness", "search_vs_geco", "trajectories"]


def search_vs_geco(res) -> Figure:
    """One panel per (model, data set): held-out MSE ÷ κ² against λ = 1/β for every run of the
    β search (numbered in search order), the ±5 % band, and GECO's final λ for each seed."""
    from geco_book.chapters.beyond import evaluate
    from geco_book.chapters.beyond_tables import log_summary

    target = float(res.settings["kappa"]) ** 2
    combos = list(res.search)
    fig, axes = panels(len(combos), 4.8, 3.6)
    for ax, c in zip(axes, combos):
        r = res.search[c]
        hist = r["search"].history
        lam = np.array([h[0] for h in hist])
        v = np.array([h[1] for h in hist]) / target
        ax.axhspan(0.95, 1.05, color="tab:green", alpha=0.2, label="±5 % of κ²")
        ax.plot(np.sort(lam), v[np.argsort(lam)], "-", color="0.7", lw=1)
        ax.scatter(lam, v, color="tab:blue", zorder=3, label="β-VAE runs of the search")
        for i, (x, y) in enumerate(zip(lam, v)):
            ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(3, 3),
                        fontsize=SMALL_PT)
        for seed, run in r["geco"].items():
            lam_end = log_summary(run.log(), target)["lambda_end"]
            ax.scatter([lam_end], [evaluate(run, res.settings)["test_mse"] / target],
                       marker="*", s=90, color="tab:red", zorder=4,
                       label="GECO κ = 0.1 (final λ), per seed" if seed == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("λ = 1/β")
        ax.set_title(f"{c[0]} / {c[1]}: {r['search'].status}", fontsize=10)
        ax.set_ylabel("held-out MSE / κ²")
    fig.tight_layout()
    for ax in axes:
        log_ticks(ax.yaxis)
    axes[0].legend(fontsize=SMALL_PT, loc="best")
    fig.tight_layout()
    return fig


def trajectories(logs: Mapping[str, pd.DataFrame], kappa: float,
                 ceiling: float | None = None, window: int = 100) -> Figure:
    """λ (log scale) and the training MSE ÷ κ² against steps for several runs (label → log);
    the MSE is a running mean over ``window`` steps (as many logged rows as that spans)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for label, log in logs.items():
        lam = log["lambda"].to_numpy(dtype=float)
        a.plot(log["step"], np.where(lam > 0, lam, np.nan), label=label, lw=1.2)
        steps = log["step"].to_numpy()
        every = max(int(steps[1] - steps[0]), 1) if len(steps) > 1 else 1
        rows = max(int(round(window / every)), 1)
        mse = log["mse"].rolling(rows, min_periods=1).mean() / kappa**2
        b.plot(log["step"], mse, label=label, lw=1.2)
    if ceiling is not None:
        a.axhline(ceiling, color="k", ls=":", lw=0.8, label="λ bound")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("λ (or implied λ = 1/β)")
    b.axhline(1.0, color="k", ls="--", lw=0.8, label="κ²")
    b.set_yscale("log")
    b.set_xlabel("step")
    b.set_ylabel(f"training MSE / κ² ({window}-step mean)")
    b.legend(fontsize=SMALL_PT, loc="upper right")
    fig.tight_layout()
    log_ticks(a.yaxis)
    log_ticks(b.yaxis)
    return fig


def robustness(table: pd.DataFrame, reference: Mapping[str, float]) -> Figure:
    """One row per setting varied (``reference``: setting → its unchanged value): held-out
    MSE ÷ κ² (left), held-out KL (middle) and time to target (right) at each value, for GECO
    and the β-VAE; the unchanged runs are the points at the reference value."""
    factors = list(reference)
    t = table.reset_index()
    ref = t[t["variant"] == "(reference)"].set_index("method")
    rows = (("mse_over_target", "held-out MSE / κ²"), ("test_avg_kl", "held-out KL [nats]"),
            ("time_to_target", "time to target [steps]"))
    fig, axes = plt.subplots(len(factors), 3, figsize=(9.6, 2.4 * len(factors) + 0.4),
                             squeeze=False)
    for j, f in enumerate(factors):
        for method, color in (("geco", "tab:red"), ("beta_vae", "tab:blue")):
            d = t[(t["method"] == method) & t["variant"].str.startswith(f"{f}=")]
            if d.empty:
                continue
            vals = d["variant"].str.split("=").str[1].astype(float).tolist()
            ys = {k: d[k].tolist() for k, _ in rows}
            if method in ref.index:
                vals.append(float(reference[f]))
                for k, _ in rows:
                    ys[k].append(float(ref.loc[method, k]))
            order = np.argsort(vals)
            for i, (k, _) in enumerate(rows):
                y = np.asarray(ys[k], dtype=float)[order]
                axes[j][i].plot(np.asarray(vals)[order], y, "o-", color=color,
                                label="GECO" if method == "geco" else "β-VAE (searched β)")
        values = sorted({float(v) for v in t.loc[t["variant"].str.startswith(f"{f}="),
                                                 "variant"].str.split("=").str[1]}
                        | {float(reference[f])})
        for i, (_, name) in enumerate(rows):
            ax = axes[j][i]
            ax.set_xscale("linear" if f == "alpha" else "log")
            ax.set_xticks(values, [f"{v:.2g}" for v in values])
            if f == "alpha":  # the values, not an empty panel's limits, set the range
                pad = 0.15 * (values[-1] - values[0] or 1.0)
                ax.set_xlim(values[0] - pad, values[-1] + pad)
            else:
                pad = (values[-1] / values[0]) ** 0.15 if values[-1] > values[0] else 2.0
                ax.set_xlim(values[0] / pad, values[-1] * pad)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f)
            if i == 0:
                ax.axhline(1.0, color="k", ls="--", lw=0.8)
                ax.set_yscale("log")
            if j == 0:
                ax.set_title(name, fontsize=10)
    fig.tight_layout()
    for row in axes:
        log_ticks(row[0].yaxis)
    for ax in axes[:, 0]:
        if len(ax.get_lines()) > 2:  # the first panel with both methods
            ax.legend(fontsize=SMALL_PT)
            break
    else:
        axes[0][0].legend(fontsize=SMALL_PT)
    return fig

