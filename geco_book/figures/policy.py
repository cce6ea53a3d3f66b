"""The policy study's figure (:mod:`geco_book.policy_study`): λ and C_ma against steps.

Example:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import pandas as pd
    >>> log = pd.DataFrame({"step": [0, 10], "lambda": [1.0, 2.0], "c_ma": [0.1, -0.01]})
    >>> fig = plot_policy_study([("g", "policy", 0, log), ("g", "nu=1", 0, log)])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from geco_book.figures.layout import SMALL_PT

__all__ = ["VARIANT_COLORS", "plot_policy_study"]

VARIANT_COLORS = {"policy": "tab:blue", "alpha=0.99": "tab:green", "nu=1": "tab:red"}


def plot_policy_study(curves: Sequence[tuple[str, str, int, object]]) -> Figure:
    """One row per setting (group): λ (log scale) and C_ma against steps, every seed, coloured
    by variant; C_ma = 0 is the constraint's boundary.

    Args:
        curves: ``(group, variant, seed, log)`` with ``log`` a DataFrame holding ``step``,
            ``lambda`` and ``c_ma``.
    """
    groups = list(dict.fromkeys(c[0] for c in curves))
    fig, axes = plt.subplots(len(groups), 2, figsize=(7.0, 1.9 * len(groups) + 0.6),
                             squeeze=False)
    for row, group in zip(axes, groups):
        ax_l, ax_c = row
        for g, variant, seed, log in curves:
            if g != group:
                continue
            color = VARIANT_COLORS.get(variant, "0.4")
            label = variant if seed == min(s for gg, v, s, _ in curves
                                           if gg == group and v == variant) else None
            ax_l.plot(log["step"], log["lambda"], color=color, lw=0.9, alpha=0.8, label=label)
            ax_c.plot(log["step"], log["c_ma"], color=color, lw=0.9, alpha=0.8)
        ax_l.set_yscale("log")
        ax_l.set_ylabel("λ")
        ax_c.axhline(0.0, color="k", lw=0.6)
        ax_c.set_ylabel("C_ma")
        ax_c.set_yscale("symlog", linthresh=1e-3)
        ax_l.set_title(group, fontsize=9, loc="left")
        ax_l.legend(fontsize=SMALL_PT, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig
