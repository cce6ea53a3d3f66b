"""Sizes and ticks that keep the book's figures legible on its page (see
:mod:`geco_book.figures.legibility`, which CI runs on every figure a chapter shows).

The page shows a figure at most 660 px wide; a wider PNG is shrunk, and its text with it.
The figures therefore stay within :data:`MAX_WIDTH_IN` (at 100 dpi, shrunk by at most 2/3)
and use no font below :data:`SMALL_PT` (9 pt is 8.3 px after that shrink); panels beyond a
row's width wrap onto further rows (:func:`grid`). :func:`log_ticks` labels a log axis with
at least two plain numbers, whatever its range.

Example:
    >>> grid(5, max_cols=3)
    (2, 3)
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = ax.semilogy([0, 1], [0.96, 1.04])
    >>> log_ticks(ax.yaxis)
    >>> fig.canvas.draw()
    >>> len([t for t in ax.get_yticklabels() if t.get_text()]) >= 2
    True
"""

from __future__ import annotations

import math

from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

__all__ = ["MAX_WIDTH_IN", "SMALL_PT", "drop_overprinted", "grid", "log_ticks", "panels"]

#: Widest figure, in inches at 100 dpi: 990 px, shown at 2/3 on the 660-px column.
MAX_WIDTH_IN = 9.9
#: Smallest font size of any text in a figure (annotations, legends, tick labels).
SMALL_PT = 9


def grid(n: int, max_cols: int) -> tuple[int, int]:
    """(rows, columns) for ``n`` panels, at most ``max_cols`` per row."""
    if n < 1 or max_cols < 1:
        raise ValueError(f"n and max_cols must be positive, got {n} and {max_cols}")
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def panels(n: int, panel_w: float, panel_h: float, **subplots_kw):
    """A figure of ``n`` panels of about ``panel_w`` × ``panel_h`` inches, as many per row as
    :data:`MAX_WIDTH_IN` allows; returns (figure, the ``n`` axes in reading order). Unused cells
    of the last row are hidden."""
    import matplotlib.pyplot as plt

    rows, cols = grid(n, max(1, int(MAX_WIDTH_IN // panel_w)))
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols, panel_h * rows),
                             squeeze=False, **subplots_kw)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _distinct_formatter(ticks) -> FuncFormatter:
    """Plain numbers with the fewest significant digits (3 to 6) that tell ``ticks`` apart."""
    ticks = sorted(set(float(t) for t in ticks))
    for digits in range(3, 7):
        if len({f"{t:.{digits}g}" for t in ticks}) == len(ticks):
            break
    return FuncFormatter(lambda value, _pos=None: f"{value:.{digits}g}")


def log_ticks(axis: Axis) -> None:
    """Label the log-scaled ``axis`` with plain numbers: at powers of ten, else at 1, 2 and 5
    per decade, else (a range within a few-fold) at about four evenly spaced values, whichever
    first puts two to eight labels in view; minor labels off. Call after the axis's limits
    are final."""
    lo, hi = sorted(axis.get_view_interval())
    if not lo > 0:
        raise ValueError("log_ticks needs a log axis with positive limits")
    for locator in (LogLocator(base=10, subs=(1.0,), numticks=8),
                    LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8)):
        if 2 <= sum(lo <= t <= hi for t in locator.tick_values(lo, hi)) <= 8:
            break
    else:
        locator = MaxNLocator(nbins=4)
    axis.set_major_locator(locator)
    shown = [t for t in locator.tick_values(lo, hi) if lo <= t <= hi]
    axis.set_major_formatter(_distinct_formatter(shown))
    axis.set_minor_formatter(NullFormatter())


def drop_overprinted(fig, texts) -> int:
    """Remove each text of ``texts`` (in order of priority) that would overprint one kept
    before it, so that labels next to nearby points stay readable; returns how many were
    removed. Call after the figure's layout is final."""
    renderer = fig.canvas.get_renderer()
    kept, dropped = [], 0
    for text in texts:
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            text.remove()
            dropped += 1
        else:
            kept.append(box)
    return dropped
