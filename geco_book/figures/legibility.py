"""Is a figure legible at the width the book shows it? Text size, overlaps and scales measured.

The book shows a figure as a PNG drawn at ``dpi`` with ``bbox_inches="tight"`` and displayed with
``max-width: 100%`` (:mod:`geco_book.figures.caption`): a figure wider than the article column is
shrunk to it, and its text with it. A six-panel row 2,500 px wide keeps ten-point labels in the
notebook but shows them about 4 px high on the page. :func:`problems` measures what the reader
sees:

- **text size** — every visible text (tick labels, axis labels, titles, legends, annotations) at
  the displayed scale must be at least :data:`MIN_TEXT_PX` CSS pixels (the font's size in
  pixels, not the glyphs' ink height);
- **overlaps** — no two visible texts may overlap (overprinted tick labels, colliding
  annotations), by more than :data:`OVERLAP_TOLERANCE_PX` each way;
- **scales** — a numeric axis that labels its ticks must label at least two in view (a log
  axis with one label does not tell the reader its scale; named categories are exempt), and
  no two of them alike (``1, 1, 1`` for 0.9995, 1.0, 1.0005).

Tick labels are those of ticks inside the view interval (matplotlib keeps labels of ticks
outside the view, at stale positions, which it does not draw).

``ci/run_notebooks.py`` sets ``$GECO_FIGURE_REPORT`` while it renders a chapter;
:func:`geco_book.figures.caption.show_figure` then appends each figure's :func:`report` to that
file, and ``ci/check_figures.py`` fails CI on any problem.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(4, 3))
    >>> _ = ax.plot([1, 2, 3], [1, 4, 9])
    >>> problems(fig)
    []
    >>> wide, axes = plt.subplots(1, 6, figsize=(25, 3))
    >>> problems(wide)[0]
    "text '0.0' is 4.6 px high at the book's content width (660 px; at least 8 px)"
"""

from __future__ import annotations

import itertools
import math
import re

from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = [
    "CONTENT_WIDTH_PX",
    "MIN_TEXT_PX",
    "OVERLAP_TOLERANCE_PX",
    "problems",
    "report",
]

#: Width of the book's article column in CSS pixels: a wide figure's ``<img>`` measured in the
#: built book in Chromium is 660 px at a 1,280 px window (both sidebars shown), 727 px at 1,024
#: and 774 px at 1,440 or wider; the check uses the common laptop's 660.
CONTENT_WIDTH_PX = 660
#: Smallest legible font size on the page, in CSS pixels (about 6 pt on a 96-dpi screen;
#: matplotlib's default 10 pt at 100 dpi is 13.9 px).
MIN_TEXT_PX = 8.0
#: Two texts whose boxes intersect by at most this much in one direction do not overlap (the
#: boxes include the font's ascent and descent, so touching lines of text meet at a pixel).
OVERLAP_TOLERANCE_PX = 1.0
_PAD_IN = 0.1  # matplotlib's default pad_inches of bbox_inches="tight"


def _check_figure(fig) -> None:
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")


def _drawn_tick_labels(axis: Axis) -> list[tuple[Text, float]]:
    """(label, tick location) of the visible, non-empty tick labels of ticks inside the axis's
    view interval."""
    if not axis.get_visible():
        return []
    transform = axis.get_transform()
    low, high = sorted(transform.transform(list(axis.get_view_interval())))
    span = abs(high - low) or 1.0
    labels = []
    for locs, ticks in (
        (axis.get_majorticklocs(), axis.get_major_ticks),
        (axis.get_minorticklocs(), axis.get_minor_ticks),
    ):
        for tick, loc in zip(ticks(len(locs)), locs):
            where = transform.transform([loc])[0]
            if not math.isfinite(where) or not low - 1e-9 * span <= where <= high + 1e-9 * span:
                continue
            labels.extend(
                (t, loc) for t in (tick.label1, tick.label2)
                if t.get_visible() and t.get_text().strip()
            )
    return labels


def _texts(fig: Figure) -> tuple[list[Text], list[tuple[str, list[Text]]]]:
    """(all visible texts the figure draws, [(axis name, its drawn tick labels, whether its
    ticks are numbers rather than named categories)])."""
    tick_label_ids, axes_labels = set(), []
    for n, ax in enumerate(fig.get_axes()):
        if not ax.get_visible() or not ax.axison:
            for axis in ax._axis_map.values():
                for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                    tick_label_ids.update((id(tick.label1), id(tick.label2)))
            continue
        name = ax.get_title() or ax.get_label() or f"axes {n}"
        for key, axis in ax._axis_map.items():
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                tick_label_ids.update((id(tick.label1), id(tick.label2)))
            labels = _drawn_tick_labels(axis)
            numeric = all(_is_number(t.get_text()) for t, _ in labels)
            axes_labels.append((f"{key} axis of {name!r}", labels, numeric))
    others = [
        t
        for t in fig.findobj(Text)
        if id(t) not in tick_label_ids and t.get_visible() and t.get_text().strip()
        and all(a.get_visible() for a in _ancestors(t))
    ]
    return others + [t for _, labels, _ in axes_labels for t, _ in labels], axes_labels


def _is_number(label: str) -> bool:
    """Whether a tick label is a number (``0.1``, ``−3``, ``1e+08``, ``$\\mathdefault{10^{2}}$``)
    rather than a name."""
    bare = re.sub(r"\\mathdefault|\\times|[${}^\s]", "", label).replace("−", "-")
    return re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?%?", bare) is not None


def _ancestors(text: Text):
    """The axes and legend that hold ``text`` (hidden when they are hidden)."""
    if text.axes is not None:
        yield text.axes
    for legend in text.figure.legends + [
        ax.get_legend() for ax in text.figure.get_axes() if ax.get_legend() is not None
    ]:
        if text in legend.get_texts() or text is legend.get_title():
            yield legend


def _short(text: Text) -> str:
    words = " ".join(text.get_text().split())
    return repr(words if len(words) <= 40 else words[:37] + "...")


def problems(
    fig: Figure,
    dpi: int = 100,
    content_width_px: float = CONTENT_WIDTH_PX,
    min_text_px: float = MIN_TEXT_PX,
) -> list[str]:
    """What makes ``fig`` illegible when the book shows it at ``content_width_px``.

    Args:
        fig: the figure, as it will be saved (call after the last change to it).
        dpi: resolution of the PNG (as :func:`geco_book.figures.caption.figure_png`).
        content_width_px: width of the book's column; a wider PNG is shrunk to it.
        min_text_px: smallest font size, in pixels on the page, that counts as legible.

    Returns:
        One sentence per problem (empty when the figure is legible): texts below the size,
        overlapping texts, and axes that label fewer than two ticks.
    """
    return _measure(fig, dpi, content_width_px, min_text_px)[1]


def _measure(fig, dpi, content_width_px, min_text_px) -> tuple[float, list[str]]:
    """(width of the saved PNG in inches, :func:`problems`), measured at ``dpi`` (the figure's
    own dpi is restored afterwards)."""
    _check_figure(fig)
    if content_width_px <= 0 or min_text_px <= 0:
        raise ValueError("content_width_px and min_text_px must be positive")
    own_dpi = fig.get_dpi()
    fig.set_dpi(dpi)
    try:
        return _measure_at_dpi(fig, dpi, content_width_px, min_text_px)
    finally:
        fig.set_dpi(own_dpi)


def _measure_at_dpi(fig, dpi, content_width_px, min_text_px) -> tuple[float, list[str]]:
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    width_in = fig.get_tightbbox(renderer).width + 2 * _PAD_IN
    shown_in = min(width_in, content_width_px / dpi)
    to_page = shown_in / width_in  # page pixels per figure pixel at this dpi
    texts, axes_labels = _texts(fig)
    found = []
    small = sorted(
        ((t.get_fontsize() * dpi / 72 * to_page, t) for t in texts), key=lambda st: st[0]
    )
    for size, text in small:
        if size >= min_text_px:
            break
        found.append(
            f"text {_short(text)} is {size:.1f} px high at the book's content width "
            f"({content_width_px:g} px; at least {min_text_px:g} px)"
        )
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    tolerance = OVERLAP_TOLERANCE_PX / to_page
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        dx = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        dy = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if dx > tolerance and dy > tolerance:
            found.append(f"texts {_short(a)} and {_short(b)} overlap")
    for name, labels, numeric in axes_labels:
        where = {}  # label text -> the tick locations that carry it
        for text, loc in labels:
            where.setdefault(text.get_text(), set()).add(float(loc))
        if numeric and len({loc for _, loc in labels}) == 1:
            found.append(f"the {name} labels one tick only ({_short(labels[0][0])}): no scale")
        repeated = sorted(x for x, locs in where.items() if len(locs) > 1)
        if numeric and repeated:
            found.append(f"the {name} repeats tick labels {repeated}: ticks read as equal")
    return width_in, found


def report(fig: Figure, title: str | None = None, dpi: int = 100) -> dict:
    """A JSON-ready record of ``fig``'s legibility: title, PNG width, problems."""
    width_in, found = _measure(fig, dpi, CONTENT_WIDTH_PX, MIN_TEXT_PX)
    return {"title": title, "width_px": round(width_in * dpi), "problems": found}
