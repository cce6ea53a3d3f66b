"""Figures of the book: posterior samples in a 2-D latent space, reconstructions, κ sweeps.

Every function returns a :class:`matplotlib.figure.Figure` (and shows nothing itself), so the
notebooks display it and the tests count its axes. Arrays are numpy or torch; images are
``[N, H, W]`` (or ``[N, 1, H, W]``) with values in [0, 1] or uint8 0–255.

- :func:`posterior_panels` — Fig. 8: 100 posterior samples per data point in the 2-D latent
  space, coloured by data point, one panel per model, with the data digits as a legend strip.
- :func:`reconstruction_grid` — the data and, per model, reconstructions g(z), z ~ q(z|x).
- :func:`training_curves` — KL, MSE and λ during training (what Fig. 3 plots), with κ² of
  each RE run on the MSE panel and a symmetric-log axis where values ≤ 0 occur.
- :func:`sweep_summary` — a tiling measure against κ, one panel per constraint.
- :func:`measures_vs_steps` — the evaluated measures at each stage of training, mean ± SE
  over seeds and each seed as a thin line: whether the measures have settled.

References:
    Rezende & Viola, "Taming VAEs", 2018: Fig. 3, Fig. 8, Appendix E.1.

Example:
    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(7, 100, 2))
    >>> digits = np.zeros((7, 28, 28))
    >>> fig = posterior_panels([("prior", z)], digits)
    >>> len(fig.axes)  # one panel + 7 legend images
    8
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from geco_book.figures.layout import MAX_WIDTH_IN, SMALL_PT

__all__ = [
    "measures_vs_steps",
    "point_colors",
    "posterior_panels",
    "reconstruction_grid",
    "sweep_summary",
    "training_curves",
]


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _images(images: Any) -> np.ndarray:
    """``[N, H, W]`` float in [0, 1] from ``[N, H, W]`` / ``[N, 1, H, W]``, float or uint8."""
    a = _np(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [N, 1, H, W], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def point_colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinguishable colours (seaborn's colour-blind palette, then ``husl``).

    Example:
        >>> len(point_colors(7))
        7
    """
    import seaborn as sns

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pal = sns.color_palette("colorblind", n) if n <= 10 else sns.color_palette("husl", n)
    return [tuple(c) for c in pal]


def _latent_limit(zs: Sequence[np.ndarray], floor: float = 3.0) -> float:
    """A symmetric axis limit holding ≥ 99.5 % of all samples, at least ``floor``."""
    allz = np.concatenate([np.abs(z.reshape(-1, 2)) for z in zs])
    finite = allz[np.isfinite(allz)]
    q = float(np.quantile(finite, 0.995)) if finite.size else floor
    return float(np.ceil(max(floor, q * 1.05) * 2) / 2)


def posterior_panels(
    panels: Sequence[tuple[str, Any]],
    images: Any,
    labels: Sequence[int] | None = None,
    ncols: int | None = None,
    panel_size: float = 3.2,
    limit: float | None = None,
    prior_circles: Sequence[float] = (1.0, 2.0),
    point_size: float = 6.0,
    suptitle: str | None = None,
) -> Figure:
    """Posterior samples in a 2-D latent space, coloured by data point (the layout of Fig. 8).

    Args:
        panels: ``(title, z)`` per panel, ``z`` ``[N, S, 2]``: S posterior samples for each of
            the N data points.
        images: the N data points (``[N, H, W]``), drawn in a strip under the panels with a
            frame of their colour: the legend.
        labels: class labels written under the legend images (optional).
        ncols: panels per row (default: all in one row).
        panel_size: inches per panel.
        limit: half-width of the latent axes (default: common, from the samples, ≥ 3).
        prior_circles: radii of dashed circles marking the prior N(0, I)'s 1σ, 2σ contours.
        point_size: scatter marker size.
        suptitle: optional figure title.

    Returns:
        A figure with ``len(panels)`` scatter axes followed by N image axes.
    """
    if not panels:
        raise ValueError("panels must hold at least one (title, z) pair")
    zs = [_np(z).astype(np.float64) for _, z in panels]
    imgs = _images(images)
    n = imgs.shape[0]
    for (title, _), z in zip(panels, zs):
        if z.ndim != 3 or z.shape[0] != n or z.shape[2] != 2:
            raise ValueError(f"panel {title!r}: z must be [{n}, S, 2], got shape {z.shape}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must have {n} entries, got {len(labels)}")
    k = len(panels)
    # at most the panels that fit the book's width: wrap rather than shrink
    ncols = max(1, min(k if ncols is None else int(ncols), k, int(MAX_WIDTH_IN // panel_size)))
    nrows = -(-k // ncols)
    lim = _latent_limit(zs) if limit is None else float(limit)
    colors = point_colors(n)

    strip_h = 0.75
    fig = plt.figure(
        figsize=(panel_size * ncols, panel_size * nrows + strip_h + (0.4 if suptitle else 0)),
        layout="constrained",
    )
    outer = fig.add_gridspec(2, 1, height_ratios=[panel_size * nrows, strip_h])
    grid = outer[0].subgridspec(nrows, ncols)
    for p, ((title, _), z) in enumerate(zip(panels, zs)):
        ax = fig.add_subplot(grid[p // ncols, p % ncols])
        for r in prior_circles:
            ax.add_patch(Circle((0, 0), r, fill=False, ls="--", lw=0.6, color="0.6"))
        for i in range(n):
            ax.scatter(z[i, :, 0], z[i, :, 1], s=point_size, color=colors[i], alpha=0.7, lw=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=SMALL_PT)
        if p % ncols == 0:
            ax.set_ylabel("$z_2$", fontsize=9)
        if p // ncols == nrows - 1:
            ax.set_xlabel("$z_1$", fontsize=9)
    strip = outer[1].subgridspec(1, max(n, 1) + 2, width_ratios=[1] + [0.9] * n + [1])
    for i in range(n):
        ax = fig.add_subplot(strip[0, i + 1])
        ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_edgecolor(colors[i])
            s.set_linewidth(3)
        if labels is not None:
            ax.set_xlabel(str(int(labels[i])), fontsize=SMALL_PT, labelpad=1)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


def reconstruction_grid(
    images: Any,
    recons: Mapping[str, Any],
    n_samples: int = 1,
    cell: float = 0.62,
) -> Figure:
    """The data (top row) and, per model, reconstructions g(z) with z ~ q(z|x).

    Args:
        images: the N data points ``[N, H, W]``.
        recons: model title → ``[N, R, H, W]`` (R reconstructions per point) or ``[N, H, W]``.
        n_samples: reconstructions shown per point and model (≤ R), side by side.
        cell: inches per image.

    Returns:
        A figure with one axes per row, titled on the left: 1 + len(recons).
    """
    imgs = _images(images)
    n, h, w = imgs.shape
    rows = [("data", np.repeat(imgs[:, None], n_samples, axis=1))]
    for title, r in recons.items():
        a = _np(r)
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4 or a.shape[0] != n or a.shape[2:] != (h, w):
            raise ValueError(f"recons[{title!r}] must be [{n}, R, {h}, {w}], got {a.shape}")
        if a.shape[1] < n_samples:
            raise ValueError(f"recons[{title!r}] has {a.shape[1]} < n_samples={n_samples}")
        a = _images(a[:, :n_samples].reshape(-1, h, w)).reshape(n, n_samples, h, w)
        rows.append((title, a))
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(cell * n * n_samples + 0.4, (cell + 0.22) * len(rows) + 0.2),
        layout="constrained",
        squeeze=False,
    )
    pad = 2
    for ax, (title, a) in zip(axes[:, 0], rows):
        canvas = np.ones((h, n * (n_samples * w) + (n - 1) * pad))
        for i in range(n):
            for j in range(n_samples):
                x0 = i * (n_samples * w + pad) + j * w
                canvas[:, x0 : x0 + w] = 1.0 - a[i, j]
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, loc="left", fontsize=9, pad=2)
        for s in ax.spines.values():
            s.set_visible(False)
    return fig


def _hline_items(spec: Any) -> list[tuple[str | None, list[float]]]:
    """``hlines`` entry → ``[(label, values)]``: a number, or a mapping label → number(s)."""
    if isinstance(spec, Mapping):
        return [(str(k), list(np.atleast_1d(np.asarray(v, dtype=float)))) for k, v in spec.items()]
    return [(None, list(np.atleast_1d(np.asarray(spec, dtype=float))))]


def training_curves(
    curves: Mapping[str, Mapping[str, Any]],
    keys: Sequence[tuple[str, str]] = (("kl", "KL [nats]"), ("mse", "MSE"), ("lambda", "λ")),
    hlines: Mapping[str, Any] | None = None,
    re_kappa: Mapping[str, float | None] | None = None,
    linthresh: float = 1.0,
    legend_cols: int | None = None,
) -> Figure:
    """Training curves, one panel per quantity, one line per run (same colour on every panel).

    A panel is log-scaled; a panel whose data hold values ≤ 0 (the Monte-Carlo KL estimate of
    a single posterior sample can be negative) is **symmetric-log** instead (linear within
    ±``linthresh``), so no point is dropped, and its y label says so — or linear, with a zero
    line, when all its values lie within ±``linthresh`` (e.g. a constraint's C_ma). The runs'
    legend is one figure legend under all panels (the colours are the same on every panel);
    each panel's own reference lines (``hlines``, κ²) are labelled in a legend inside it.

    Args:
        curves: run title → columns (``step`` and the ``keys``), e.g. ``RunResult.curves``.
        keys: ``(column, axis label)`` per panel.
        hlines: column → reference line(s), dotted black: a number, or a mapping label →
            a number or a sequence of numbers (e.g. ``{"kl": {"ln 7": 1.946}, "lambda":
            {"λ bounds": (1e-3, 1e7)}}``).
        re_kappa: run title → the κ of its RE constraint (None or absent: no RE constraint);
            each is drawn as a dashed line at κ² on the ``"mse"`` panel in its run's colour.
        linthresh: the linear range of a symmetric-log panel.
        legend_cols: columns of the runs' legend (default: all runs in one row, up to 4).

    Returns:
        A figure with ``len(keys)`` axes and one figure legend (the runs).
    """
    fig, axes = plt.subplots(
        1, len(keys), figsize=(min(MAX_WIDTH_IN, 4.0 * len(keys)), 3.3), layout="constrained",
        squeeze=False,
    )
    colors = {title: f"C{i % 10}" for i, title in enumerate(curves)}
    run_handles: dict[str, Any] = {}
    for ax, (col, label) in zip(axes[0], keys):
        y_min, y_abs = math.inf, 0.0
        for title, c in curves.items():
            if col not in c or "step" not in c:
                continue
            y = np.asarray(c[col], dtype=float)
            finite = y[np.isfinite(y)]
            if finite.size:
                y_min, y_abs = min(y_min, float(finite.min())), max(y_abs, float(abs(finite).max()))
            (line,) = ax.plot(np.asarray(c["step"]), y, label=title, lw=1.2, color=colors[title])
            run_handles.setdefault(title, line)
        for name, spec in (hlines or {}).items():
            if name != col:
                continue
            for ref_label, values in _hline_items(spec):
                for j, v in enumerate(values):
                    ax.axhline(v, ls=":", color="k", lw=1, label=ref_label if j == 0 else None)
        if col == "mse":
            kappas = {t: float(k) for t, k in (re_kappa or {}).items()
                      if k is not None and t in curves}
            for j, (title, kappa) in enumerate(kappas.items()):
                text = (f"κ² = {kappa**2:.3g} (κ = {kappa:g})" if len(kappas) == 1
                        else "κ² of each RE run (its colour)")
                ax.axhline(kappa**2, ls="--", lw=1, color=colors[title],
                           label=text if j == 0 else None)
        if y_min <= 0 and y_abs <= linthresh:  # all within the linear range: a linear axis
            ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
        elif y_min <= 0:
            ax.set_yscale("symlog", linthresh=linthresh)
            ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
            ax.set_ylim(bottom=min(-1.2 * linthresh, 1.5 * y_min))
            label = f"{label} (symlog: linear in ±{linthresh:g})"
        else:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        refs = [(h, n) for h, n in zip(*ax.get_legend_handles_labels()) if n not in curves]
        if refs:
            ax.legend(*zip(*refs), fontsize=SMALL_PT, loc="best")
    if run_handles:
        ncol = legend_cols or min(len(run_handles), 4)
        fig.legend(list(run_handles.values()), list(run_handles), loc="outside lower center",
                   ncol=ncol, fontsize=SMALL_PT, frameon=False)
    return fig


def sweep_summary(
    table: Any,
    columns: Sequence[tuple[str, str]] = (("e^I (eff. tiles)", "e^{I(n;z)}"),),
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """Tiling measures against κ, one panel per constraint (from :func:`sweep_table`).

    Args:
        table: a DataFrame indexed by (constraint, κ).
        columns: ``(column, label)`` pairs plotted in each panel.
        reference: column → reference value (dotted line), e.g. ``{"e^I (eff. tiles)": 7}``.

    Returns:
        A figure with one axes per constraint in the table.
    """
    constraints = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, axes = plt.subplots(
        1,
        len(constraints),
        figsize=(min(MAX_WIDTH_IN, 4.2 * len(constraints)), 3.0),
        layout="constrained",
        squeeze=False,
    )
    for ax, c in zip(axes[0], constraints):
        sub = table.xs(c, level=0).sort_index()
        for col, label in columns:
            ax.plot(sub.index.to_numpy(), sub[col].to_numpy(), "o-", label=label)
            if reference and col in reference:
                ax.axhline(reference[col], ls=":", color="k", lw=1)
        weaker = "larger κ = weaker" if c.upper() == "RE" else "smaller κ = weaker"
        ax.set_title(f"GECO + {c} ({weaker})", fontsize=10)
        ax.set_xlabel("κ")
        if c.upper() == "CLA":
            ax.invert_xaxis()
        ax.legend(fontsize=SMALL_PT)
    return fig


def measures_vs_steps(
    histories: Mapping[str, Sequence[Sequence[Mapping[str, float]]]],
    keys: Sequence[tuple[str, str]] = (("avg_kl", "average KL [nats]"),
                                       ("marginal_kl", "marginal KL [nats]"),
                                       ("effective_tiles", "e^{I(n;z)}"),
                                       ("self_class_rate", "self-classification rate"),
                                       ("mse", "MSE")),
    reference: Mapping[str, float] | None = None,
    log_keys: Sequence[str] = ("avg_kl", "marginal_kl", "mse"),
) -> Figure:
    """Evaluated measures against training steps: one panel per measure, one colour per run.

    Each run's mean over seeds is drawn with ± one standard error (error bars, when there are
    two or more seeds) and every seed as a thin line of the same colour, so the reader sees
    both whether a measure has stopped moving and how far the seeds spread. The step axis is
    logarithmic, ticked at the evaluated steps; a panel of ``log_keys`` whose values are all
    positive is logarithmic too (its lower limit at most four decades below its maximum), the
    bounded measures (tiles, rates) are linear.

    Args:
        histories: run title → one history per seed; a history is the list of evaluations of
            one training run, each a mapping with ``"steps"`` and the ``keys`` (e.g.
            ``RunResult.history``). Seeds may differ in length (a shorter one is drawn as far
            as it goes; the mean uses the steps all seeds reached).
        keys: ``(measure, axis label)`` per panel.
        reference: measure → a reference value (dotted black), e.g. ``{"avg_kl": ln 7}``.
        log_keys: the measures drawn on a log axis when positive.

    Returns:
        A figure with ``len(keys)`` axes and one figure legend (the runs).

    Example:
        >>> h = [[{"steps": 10, "avg_kl": 3.0}, {"steps": 100, "avg_kl": 2.0}]] * 2
        >>> fig = measures_vs_steps({"run": h}, keys=[("avg_kl", "KL")], reference={"avg_kl": 1.9})
        >>> len(fig.axes), fig.axes[0].get_xscale()
        (1, 'log')
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(min(MAX_WIDTH_IN, 3.4 * len(keys)), 3.1),
                             layout="constrained", squeeze=False)
    handles: dict[str, Any] = {}
    all_steps = sorted({float(e["steps"]) for seeds in histories.values() for h in seeds
                        for e in h})
    for ax, (key, label) in zip(axes[0], keys):
        positive, top = True, -math.inf
        for i, (title, seeds) in enumerate(histories.items()):
            color = f"C{i % 10}"
            for h in seeds:
                steps = [float(e["steps"]) for e in h]
                ys = [float(e.get(key, math.nan)) for e in h]
                positive &= all(y > 0 for y in ys if math.isfinite(y))
                top = max([top] + [y for y in ys if math.isfinite(y)])
                ax.plot(steps, ys, color=color, lw=0.6, alpha=0.45)
            n_common = min(len(h) for h in seeds)
            if n_common == 0:
                continue
            steps = [float(seeds[0][k]["steps"]) for k in range(n_common)]
            vals = np.array([[float(h[k].get(key, math.nan)) for k in range(n_common)]
                             for h in seeds])
            mean = vals.mean(axis=0)
            se = (vals.std(axis=0, ddof=1) / math.sqrt(len(seeds)) if len(seeds) > 1
                  else np.zeros_like(mean))
            line = ax.errorbar(steps, mean, yerr=se, color=color, marker="o", ms=3, lw=1.4,
                               capsize=2, label=f"{title} ({len(seeds)} seed"
                               f"{'s' if len(seeds) != 1 else ''})")
            handles.setdefault(title, line)
        if reference and key in reference:
            ax.axhline(reference[key], ls=":", color="k", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(all_steps, [f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"
                                  for v in all_steps])
        ax.minorticks_off()
        if positive and key in log_keys:
            ax.set_yscale("log")
            lo, _ = ax.get_ylim()
            ax.set_ylim(bottom=max(lo, top * 1e-4))
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
    if handles:
        fig.legend(list(handles.values()), [h.get_label() for h in handles.values()],
                   loc="outside lower center", ncol=min(len(handles), 4), fontsize=SMALL_PT,
                   frameon=False)
    return fig
