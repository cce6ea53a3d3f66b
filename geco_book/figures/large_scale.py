"""Chapter 03's figures: Figs. 3–6 of the paper from our runs.

Every function takes plain data (DataFrames of training logs or of the chapter's table, uint8
image arrays) and returns a matplotlib Figure; the tests call each one on small inputs.

Example:
    >>> import pandas as pd
    >>> log = pd.DataFrame({"step": [0, 1, 2], "kl": [5.0, 4.0, 3.0], "mse": [.04, .02, .01],
    ...                     "nll": [1.0, 0.5, 0.2], "beta": [1e-3, 1e-3, 2e-3]})
    >>> len(trajectory(log, kappa=0.1).axes)
    4
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from geco_book.figures.layout import MAX_WIDTH_IN, SMALL_PT, drop_overprinted, log_ticks, panels

__all__ = ["average_kl_curves", "convergence", "image_blocks", "information_plane",
           "trajectory"]


def trajectory(log, kappa: float, title: str = "") -> Figure:
    """Fig. 3: a GECO-RE run. Left: the (KL, reconstruction NLL) plane of the training batches,
    coloured by iteration; middle: β = 1/λ over iterations (log scale); right: the
    reconstruction error √MSE of the training batches with the κ line."""
    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH_IN, 3.4), constrained_layout=True)
    step = log["step"].to_numpy()
    sc = axes[0].scatter(log["kl"], log["nll"], c=step, s=6, cmap="viridis")
    axes[0].set(xlabel="KL [nats]", ylabel="training NLL [nats]", xscale="log",
                title="NLL/KL plane")
    fig.colorbar(sc, ax=axes[0], label="iteration")
    axes[1].plot(step, log["beta"], color="tab:purple")
    axes[1].set(xlabel="iteration", ylabel="β = 1/λ", yscale="log", title="β over training")
    axes[2].plot(step, np.sqrt(log["mse"].to_numpy()), color="tab:blue", lw=0.8,
                 label="√MSE (batch)")
    axes[2].axhline(kappa, color="k", ls="--", lw=1, label=f"κ = {kappa:g}")
    axes[2].set(xlabel="iteration", ylabel="RMS reconstruction error", yscale="log",
                title="reconstruction error")
    axes[2].legend(fontsize=SMALL_PT)
    if title:
        fig.suptitle(title)
    for axis in (axes[0].xaxis, axes[1].yaxis, axes[2].yaxis):
        log_ticks(axis)
    return fig


def _err(v) -> np.ndarray | None:
    """Error-bar lengths, NaN (one seed) as 0; ``None`` when there is no bar at all, since a
    zero-length bar with caps draws a cross through the marker."""
    err = np.nan_to_num(np.asarray(v, dtype=float), nan=0.0)
    return err if err.any() else None


def information_plane(summary, models: Sequence[str], kl: str = "test_avg_kl",
                      nll: str = "nll_bits_per_dim") -> Figure:
    """Fig. 4: held-out reconstruction NLL against KL, one panel per model. ``summary`` has one
    row per (model, dataset, method) with columns ``kl``/``nll`` means and ``<col>_se``
    standard errors (NaN with one seed), ``method``, ``kappa``. GECO-RE's κ sweep is joined by
    a line per data set, each point labelled with its κ (a label that would overprint another
    or the legend is left out); ELBO (filled circle) and annealed β (open square) are
    markers."""
    datasets = sorted(summary["dataset"].unique())
    colours = dict(zip(datasets, plt.cm.tab10.colors))
    fig, axes = panels(len(models), 4.95, 4.4, constrained_layout=True)
    labels = []
    for ax, model in zip(axes, models):
        sub = summary[summary["model"] == model]
        for data in datasets:
            d = sub[sub["dataset"] == data]
            if d.empty:
                continue
            c = colours[data]
            re = d[d["method"].str.match(r"geco-re-[\d.]+$")].sort_values("kappa")
            ax.errorbar(re[kl], re[nll], xerr=_err(re[f"{kl}_se"]), yerr=_err(re[f"{nll}_se"]),
                        color=c, marker="^", ms=5, lw=1, capsize=2, label=f"{data}: GECO-RE κ")
            labels += [ax.annotate(f"{r['kappa']:g}", (r[kl], r[nll]), fontsize=SMALL_PT,
                                   color=c, xytext=(3, 3), textcoords="offset points")
                       for _, r in re.iterrows()]
            for method, marker in (("elbo", "o"), ("annealed", "s")):
                m = d[d["method"] == method]
                if not m.empty:
                    ax.errorbar(m[kl], m[nll], xerr=_err(m[f"{kl}_se"]),
                                yerr=_err(m[f"{nll}_se"]), color=c, marker=marker, ms=7,
                                ls="none", capsize=2, mfc="none" if method == "annealed" else c,
                                label=f"{data}: {'ELBO' if method == 'elbo' else 'annealed β'}")
        ax.set(xscale="log", xlabel="average KL on held-out data [nats]",
               ylabel="held-out reconstruction NLL [bits/dim]", title=model)
        ax.legend(fontsize=SMALL_PT, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.canvas.draw()  # the constrained layout, before the labels are measured
    for ax in axes:
        log_ticks(ax.xaxis)
    legends = [t for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    drop_overprinted(fig, legends + labels)  # a κ label that would overprint is left out
    return fig


def convergence(stages, methods: Mapping[tuple[str, str], Sequence[str]],
                bounds: Sequence[float] | None = None) -> Figure:
    """Measures against steps: for each (model, dataset) of ``methods`` (a row), the held-out
    average KL, the held-out NLL [bits/dim] and λ at the end of each stage, for each of its
    methods: the seed mean ± SE (line) and every seed (dots). ``stages`` has one row per run
    and stage (``model``, ``dataset``, ``method``, ``seed``, ``steps``, ``test_avg_kl``,
    ``nll_bits_per_dim``, ``lambda``); λ is drawn for GECO methods, with ``bounds`` dashed
    where they are within a factor 100 of the data."""
    cols = (("test_avg_kl", "held-out average KL [nats]", "log"),
            ("nll_bits_per_dim", "held-out NLL [bits/dim]", "linear"),
            ("lambda", "λ at the stage's end (GECO)", "log"))
    fig, axes = plt.subplots(len(methods), 3, figsize=(MAX_WIDTH_IN, 2.8 * len(methods)),
                             constrained_layout=True, squeeze=False)
    for i, ((model, data), names) in enumerate(methods.items()):
        for name, c in zip(names, plt.cm.tab10.colors[1:]):
            d = stages[(stages["model"] == model) & (stages["dataset"] == data)
                       & (stages["method"] == name)]
            for j, (col, label, scale) in enumerate(cols):
                if d.empty or (col == "lambda" and not name.startswith("geco")):
                    continue
                ax = axes[i, j]
                g = d.groupby("steps")[col]
                se = g.std(ddof=1) / np.sqrt(g.count())
                ax.errorbar(g.mean().index, g.mean(), yerr=_err(se), color=c, marker="o",
                            ms=4, capsize=2, lw=1.2, label=name)
                ax.scatter(d["steps"], d[col], color=c, s=8, alpha=0.4)
                ax.set(xscale="log", yscale=scale, xlabel="steps", ylabel=label)
        lo, hi = axes[i, 2].get_ylim()
        for b in bounds or ():  # a bound far outside the data would only squash the panel
            if lo / 100 <= b <= hi * 100:
                axes[i, 2].axhline(b, color="k", ls="--", lw=0.8, label="λ bound")
        axes[i, 0].set_title(f"{model} / {data}", loc="left", fontsize=10)
        axes[i, 0].legend(fontsize=SMALL_PT)
    for ax in axes.ravel():
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log" and ax.has_data():
                log_ticks(axis)
    return fig


def average_kl_curves(pairs: Mapping[str, tuple], kappa_line: bool = True) -> Figure:
    """Fig. 5: training-batch KL over iterations for the ELBO and for GECO-RE with κ² = the
    ELBO's final MSE. ``pairs`` maps a panel title to ``(elbo_log, geco_log)``; a second row
    shows both runs' MSE."""
    n = len(pairs)
    fig, axes = plt.subplots(2, n, figsize=(min(MAX_WIDTH_IN, 4.9 * n), 6),
                             constrained_layout=True, squeeze=False, sharex="col")
    for j, (title, (elbo, geco)) in enumerate(pairs.items()):
        for log, name, c in ((elbo, "ELBO", "tab:orange"), (geco, "GECO-RE (matched κ)",
                                                            "tab:blue")):
            axes[0, j].plot(log["step"], log["kl"], color=c, lw=1, label=name)
            axes[1, j].plot(log["step"], log["mse"], color=c, lw=0.8, label=name)
        axes[0, j].set(yscale="log", ylabel="KL (training batch) [nats]", title=title)
        axes[1, j].set(yscale="log", ylabel="MSE (training batch)", xlabel="iteration")
        axes[0, j].legend(fontsize=SMALL_PT)
    for ax in axes.ravel():
        log_ticks(ax.yaxis)
    return fig


def image_blocks(blocks: Mapping[str, Mapping[str, np.ndarray]], n: int = 6,
                 rows: Sequence[str] = ("data", "recon", "samples")) -> Figure:
    """Fig. 6: for each method (a column block), ``n`` data images, their reconstructions and
    ``n`` samples, one row each. Images are uint8 ``[N, C, H, W]`` (C = 1 or 3)."""
    names = list(blocks)
    fig, axes = plt.subplots(len(rows), len(names), figsize=(min(MAX_WIDTH_IN, 2.3 * len(names)),
                             1.0 +
                             0.55 * len(rows) * math.ceil(n / 3)), constrained_layout=True,
                             squeeze=False)
    for j, name in enumerate(names):
        for i, row in enumerate(rows):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            imgs = blocks[name].get(row)
            if imgs is None:
                ax.set_axis_off()
                continue
            ax.imshow(_tile(np.asarray(imgs)[:n]), cmap="gray", vmin=0, vmax=255)
            if i == 0:
                ax.set_title(textwrap.fill(name, 14), fontsize=SMALL_PT)  # narrow blocks
            if j == 0:
                ax.set_ylabel(row, fontsize=SMALL_PT)
    return fig


def _tile(imgs: np.ndarray, cols: int = 3) -> np.ndarray:
    """``[N, C, H, W]`` uint8 → one ``[rows·H, cols·W(, 3)]`` mosaic."""
    n, c, h, w = imgs.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * h, cols * w, c), 255, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        out[r * h:(r + 1) * h, q * w:(q + 1) * w] = imgs[k].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out
