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
from matplotlib.ticker import NullFormatter, ScalarFormatter

__all__ = ["robustness", "search_vs_geco", "trajectories"]


def search_vs_geco(res) -> Figure:
    """One panel per (model, data set): held-out MSE ÷ κ² against λ = 1/β for every run of the
    β search (numbered in search order), the ±5 % band, and GECO's final λ for each seed."""
    from geco_book.chapters.beyond import evaluate
    from geco_book.chapters.beyond_tables import log_summary

    target = float(res.settings["kappa"]) ** 2
    combos = list(res.search)
    fig, axes = plt.subplots(1, len(combos), figsize=(3.6 * len(combos), 3.2), squeeze=False)
    for ax, c in zip(axes[0], combos):
        r = res.search[c]
        hist = r["search"].history
        lam = np.array([h[0] for h in hist])
        v = np.array([h[1] for h in hist]) / target
        ax.axhspan(0.95, 1.05, color="tab:green", alpha=0.2, label="±5 % of κ²")
        ax.plot(np.sort(lam), v[np.argsort(lam)], "-", color="0.7", lw=1)
        ax.scatter(lam, v, color="tab:blue", zorder=3, label="β-VAE runs of the search")
        for i, (x, y) in enumerate(zip(lam, v)):
            ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(3, 3),
                        fontsize=7)
        for seed, run in r["geco"].items():
            lam_end = log_summary(run.log(), target)["lambda_end"]
            ax.scatter([lam_end], [evaluate(run, res.settings)["test_mse"] / target],
                       marker="*", s=90, color="tab:red", zorder=4,
                       label="GECO κ = 0.1 (final λ), per seed" if seed == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("λ = 1/β")
        ax.set_title(f"{c[0]} / {c[1]}: {r['search'].status}", fontsize=9)
    axes[0][0].set_ylabel("held-out MSE / κ²")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def trajectories(logs: Mapping[str, pd.DataFrame], kappa: float,
                 ceiling: float | None = None) -> Figure:
    """λ (log scale) and the training MSE ÷ κ² against steps for several runs (label → log)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, log in logs.items():
        lam = log["lambda"].to_numpy(dtype=float)
        a.plot(log["step"], np.where(lam > 0, lam, np.nan), label=label, lw=1.2)
        mse = log["mse"].rolling(4, min_periods=1).mean() / kappa**2
        b.plot(log["step"], mse, label=label, lw=1.2)
    if ceiling is not None:
        a.axhline(ceiling, color="k", ls=":", lw=0.8, label="λ bound")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("λ (or implied λ = 1/β)")
    b.axhline(1.0, color="k", ls="--", lw=0.8, label="κ²")
    b.set_yscale("log")
    b.yaxis.set_major_formatter(ScalarFormatter())
    b.yaxis.set_minor_formatter(NullFormatter())
    b.set_xlabel("step")
    b.set_ylabel("training MSE / κ² (100-step mean)")
    b.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def robustness(table: pd.DataFrame, reference: Mapping[str, float]) -> Figure:
    """One column per setting varied (``reference``: setting → its unchanged value): held-out
    MSE ÷ κ² (top), held-out KL (middle) and time to target (bottom) at each value, for GECO
    and the β-VAE; the unchanged runs are the points at the reference value."""
    factors = list(reference)
    t = table.reset_index()
    ref = t[t["variant"] == "(reference)"].set_index("method")
    fig, axes = plt.subplots(3, len(factors), figsize=(2.7 * len(factors), 7), squeeze=False)
    rows = (("mse_over_target", "held-out MSE / κ²"), ("test_avg_kl", "held-out KL [nats]"),
            ("time_to_target", "time to target [steps]"))
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
                axes[i][j].plot(np.asarray(vals)[order], y, "o-", color=color,
                                label="GECO" if method == "geco" else "β-VAE (searched β)")
        values = sorted({float(v) for v in t.loc[t["variant"].str.startswith(f"{f}="),
                                                 "variant"].str.split("=").str[1]}
                        | {float(reference[f])})
        for i, (_, name) in enumerate(rows):
            ax = axes[i][j]
            ax.set_xscale("linear" if f == "alpha" else "log")
            ax.set_xticks(values, [f"{v:g}" for v in values], fontsize=7)
            ax.xaxis.set_minor_formatter(NullFormatter())
            if i == 0:
                ax.axhline(1.0, color="k", ls="--", lw=0.8)
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.set_title(f, fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
        axes[-1][j].set_xlabel(f)
    for ax in axes[0]:
        if len(ax.get_lines()) > 2:  # the first panel with both methods
            ax.legend(fontsize=7)
            break
    else:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig

