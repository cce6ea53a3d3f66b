"""Figures of chapter 04 (marginal KL): estimators, convergence in S and N, and the holes.

- :func:`estimator_panels` — every estimator of one model's marginal KL side by side, one panel
  per model, ± standard error;
- :func:`convergence_panels` — the exact estimate against the number of latent samples S, and
  the exact and leave-one-out estimates against the number of points N (they bracket the
  population value and close in as N grows);
- :func:`holes_figure` — prior samples with the lowest and highest aggregate density ratio
  log q(z) − log π(z), decoded, per model, and the classifier's confidence against the ratio.

Every function returns a :class:`matplotlib.figure.Figure` and shows nothing itself.

References:
    Rezende & Viola, "Taming VAEs", 2018: §1, §4.1.1, Table 2.

Example:
    >>> import numpy as np
    >>> fig = convergence_panels({"m": {"vs_samples": np.array([[10, 1.0, 0.1], [100, 1.1, 0.03]]),
    ...                                 "vs_points": np.array([[10, 2.0, 0.1, 0.5, 0.1],
    ...                                                        [100, 1.5, 0.05, 1.0, 0.05]])}})
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from geco_book.figures.layout import MAX_WIDTH_IN, SMALL_PT, panels

__all__ = ["convergence_panels", "estimator_panels", "holes_figure"]


def estimator_panels(estimates: Mapping[str, Mapping[str, tuple[float, float]]]) -> Figure:
    """One panel per model (two per row): each estimator's value ± SE as a horizontal error
    bar; a panel with a value below −100 nats is symmetric-log (linear within ±10).

    Args:
        estimates: model title → estimator label → (value, standard error).

    Example:
        >>> fig = estimator_panels({"m": {"exact": (1.0, 0.1), "MWS": (-3.0, 0.2)}})
        >>> len(fig.axes)
        1
    """
    height = 0.45 * max(len(e) for e in estimates.values()) + 1.4
    fig, axes = panels(len(estimates), 4.9, height, layout="constrained")
    for ax, (title, est) in zip(axes, estimates.items()):
        labels = list(est)
        vals = np.array([est[k][0] for k in labels], dtype=float)
        ses = np.array([est[k][1] for k in labels], dtype=float)
        y = np.arange(len(labels))[::-1]
        colors = ["C0" if k.startswith(("exact", "leave", "held")) else "C3" for k in labels]
        ax.errorbar(vals, y, xerr=np.nan_to_num(ses), fmt="none", ecolor="0.3", capsize=3)
        ax.scatter(vals, y, c=colors, zorder=3, s=18)
        ax.set_yticks(y, labels, fontsize=SMALL_PT)
        ax.axvline(0.0, color="0.7", lw=0.6, zorder=0)
        ax.set_title(title, fontsize=SMALL_PT)
        if np.nanmin(vals) < -100:  # leave-one-out far below: keep the others' gaps readable
            ax.set_xscale("symlog", linthresh=10.0)
            ax.set_xlabel("marginal KL estimate [nats] (symlog: linear in ±10)")
        else:
            ax.set_xlabel("marginal KL estimate [nats]")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # wide ranges in narrow panels
    return fig


def convergence_panels(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Left: the exact estimate against the number of latent samples S (± SE, the mixture over
    all N points). Right: exact (solid) and leave-one-out (dashed) against the number of points
    N' of the mixture (a random subset, one sample each). One colour per model. The right
    panel is symmetric-log when a leave-one-out value falls below −10 nats.

    Args:
        arrays: model title → ``vs_samples`` ``[k, 3]`` (S, value, SE) and ``vs_points``
            ``[k, 5]`` (N', exact, SE, leave-one-out, SE), as chapter 04's evaluation stores.
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 3.6), layout="constrained")
    for i, (title, arr) in enumerate(arrays.items()):
        c = f"C{i % 10}"
        vs = np.asarray(arr["vs_samples"], dtype=float)
        a1.errorbar(vs[:, 0], vs[:, 1], yerr=vs[:, 2], color=c, marker="o", ms=3, capsize=2,
                    label=title)
        vn = np.asarray(arr["vs_points"], dtype=float)
        a2.errorbar(vn[:, 0], vn[:, 1], yerr=vn[:, 2], color=c, marker="o", ms=3, capsize=2,
                    label=f"{title}: exact")
        a2.errorbar(vn[:, 0], vn[:, 3], yerr=vn[:, 4], color=c, marker="s", ms=3, capsize=2,
                    ls="--", label=f"{title}: leave-one-out")
    for ax, xl in ((a1, "latent samples S"), (a2, "points N' in the mixture")):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("marginal KL estimate [nats]")
    lows = [float(np.min(np.asarray(arr["vs_points"])[:, 3])) for arr in arrays.values()]
    if lows and min(lows) < -10:  # leave-one-out far below zero: keep both curves readable
        a2.set_yscale("symlog", linthresh=10.0)
        a2.set_ylabel("marginal KL estimate [nats] (symlog: linear in ±10)")
    a1.set_title("exact estimate vs S (mixture over all N)", fontsize=9)
    a2.set_title("exact (—) and leave-one-out (- -) vs N'", fontsize=9)
    a1.legend(fontsize=SMALL_PT)
    return fig


def _strip(ax, images: np.ndarray, title: str) -> None:
    imgs = np.asarray(images)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3):
        imgs = np.moveaxis(imgs, 1, -1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    row = np.concatenate(list(imgs), axis=1)
    ax.imshow(row, cmap="gray" if row.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    ax.set_title(title, fontsize=SMALL_PT, loc="left")


def holes_figure(models: Mapping[str, Mapping[str, np.ndarray]],
                 ratio_key: str = "prior_log_ratio") -> Figure:
    """Per model two image rows, the decoded prior samples with the lowest ("in a hole") and
    the highest aggregate density ratio log q(z) − log π(z); and, where the classifier read
    the decoded samples (MNIST), a scatter of its confidence against the ratio (on a
    symmetric-log axis: one model's ratios can lie thousands of nats below another's).

    Args:
        models: title → arrays ``lowest``, ``highest`` (uint8 images), ``prior_log_ratio``
            ``[K]`` and ``prior_confidence`` ``[K]`` (NaN where no classifier applies).
    """
    n = len(models)
    with_conf = [t for t, a in models.items() if np.isfinite(a["prior_confidence"]).all()]
    fig = plt.figure(figsize=(9.0, 1.25 * 2 * n + 0.4), layout="constrained")  # titles overhang
    cols = 2 if with_conf else 1
    gs = fig.add_gridspec(2 * n, cols, width_ratios=[2.2, 1] if cols == 2 else [1])
    for i, (title, a) in enumerate(models.items()):
        r = np.asarray(a[ratio_key], dtype=float)
        lo, hi = np.sort(r)[: len(a["lowest"])], np.sort(r)[::-1][: len(a["highest"])]
        _strip(fig.add_subplot(gs[2 * i, 0]), a["lowest"],
               f"{title}: lowest log q/π ({lo.min():.1f} … {lo.max():.1f})")
        _strip(fig.add_subplot(gs[2 * i + 1, 0]), a["highest"],
               f"{title}: highest log q/π ({hi.min():.1f} … {hi.max():.1f})")
    if with_conf:
        ax = fig.add_subplot(gs[:, 1])
        for i, title in enumerate(models):
            if title not in with_conf:
                continue
            a = models[title]
            ax.scatter(a[ratio_key], a["prior_confidence"], s=4, alpha=0.5, color=f"C{i % 10}",
                       label=title)
        ax.set_xscale("symlog", linthresh=10.0)  # models whose ratios differ by decades
        ax.set_xlabel("log q(z) − log π(z) at prior samples z (symlog: linear in ±10)")
        ax.set_ylabel("classifier confidence (max prob.)")
        ax.legend(fontsize=SMALL_PT, markerscale=3)
    return fig

