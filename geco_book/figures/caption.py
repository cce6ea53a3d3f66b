"""Figures with captions in every rendering of a chapter: Jupyter, Colab and the built book.

A figure shown with ``plt.show()`` is an ``image/png`` output, which Jupyter Book renders as a
bare ``<img>``: no caption, so the reader cannot tell data, scale or seed from the page.
:func:`show_figure` displays the figure as ONE ``text/html`` output instead,

.. code-block:: html

    <figure class="geco-figure" id="fig-...">
      <img src="data:image/png;base64,..." alt="...">
      <figcaption><strong>Title.</strong> Caption ...</figcaption>
    </figure>

which Jupyter and Colab show as it is, and which myst-nb copies verbatim into the page
(``text/html`` comes first in its HTML mime priority), so every rendered figure gets a
``<figcaption>``. The caption is computed in the notebook, so it can state the profile,
iterations and seeds the figure was actually made with. The figure is closed after display
(no second copy from the inline backend).

Use in a chapter (one call replaces ``plt.show()``)::

    from geco_book.figures.caption import show_figure
    fig = figures.plot_something(...)
    show_figure(fig, f"Data: ... Scale: profile {profile!r}, ... Seed {seed}.",
                title="Fig. 2 (computed)")

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(1, 1))
    >>> html = figure_html(fig, "Data: x < y & z.", title="Fig. 0")
    >>> html.startswith('<figure class="geco-figure"'), "<figcaption" in html
    (True, True)
    >>> "x &lt; y &amp; z." in html
    True
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import json
import os
import re

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from geco_book.figures.legibility import report

__all__ = ["caption_bundle", "figure_html", "figure_png", "show_figure"]


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (``bbox_inches="tight"``, as the inline backend draws it).

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> figure_png(plt.figure(figsize=(1, 1)))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def figure_html(
    fig: Figure,
    caption: str,
    title: str | None = None,
    label: str | None = None,
    dpi: int = 100,
) -> str:
    """``<figure><img><figcaption>`` for ``fig``: the PNG inlined as a data URI.

    Args:
        fig: the figure.
        caption: plain text (HTML-escaped here): what is shown, the data, the scale (profile,
            iterations, grid) and the seed(s). Must not be empty.
        title: optional bold lead-in of the caption (e.g. ``"Fig. 7 (computed)"``).
        label: optional ``id`` of the ``<figure>`` (default: from the title), for links.
        dpi: resolution of the PNG.

    Returns:
        The HTML fragment.

    Raises:
        ValueError: an empty caption.
        TypeError: ``fig`` is not a matplotlib figure.
    """
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("caption must be a non-empty string (state data, scale and seed)")
    data = base64.b64encode(figure_png(fig, dpi)).decode("ascii")
    lead = f"<strong>{html_lib.escape(title.rstrip('.'))}.</strong> " if title else ""
    anchor = label or (f"fig-{_slug(title)}" if title else None)
    ident = f' id="{html_lib.escape(anchor, quote=True)}"' if anchor else ""
    alt = html_lib.escape(f"{title + ': ' if title else ''}{caption}", quote=True)
    return (
        f'<figure class="geco-figure"{ident} style="margin: 1em 0;">'
        f'<img src="data:image/png;base64,{data}" alt="{alt}" '
        'style="max-width: 100%; height: auto;">'
        f'<figcaption style="font-size: 0.9em; margin-top: 0.4em;">{lead}'
        f"{html_lib.escape(caption)}</figcaption></figure>"
    )


def caption_bundle(fig: Figure, caption: str, title: str | None = None, **kwargs) -> dict:
    """The display bundle of :func:`show_figure`: ``text/html`` (the figure) and
    ``text/plain`` (the caption, for consoles and text-only viewers)."""
    plain = f"{title.rstrip('.')}. {caption}" if title else caption
    return {"text/html": figure_html(fig, caption, title, **kwargs), "text/plain": plain}


#: ``ci/run_notebooks.py`` names here the file where each shown figure's legibility report goes.
REPORT_ENV = "GECO_FIGURE_REPORT"


def _report_legibility(fig: Figure, title: str | None, dpi: int) -> None:
    """Append ``fig``'s :func:`~geco_book.figures.legibility.report` to ``$GECO_FIGURE_REPORT``
    (one JSON line), when it is set."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(report(fig, title, dpi)) + "\n")


def show_figure(
    fig: Figure,
    caption: str,
    title: str | None = None,
    label: str | None = None,
    dpi: int = 100,
    close: bool = True,
) -> None:
    """Display ``fig`` with its caption as one HTML output (see the module docstring).

    Call it instead of ``plt.show()``; with ``close=True`` (default) the figure is closed, so
    the inline backend does not show it a second time. When ``$GECO_FIGURE_REPORT`` names a
    file, the figure's legibility report is appended to it (``ci/check_figures.py`` reads it).
    """
    from IPython.display import display

    _report_legibility(fig, title, dpi)
    display(caption_bundle(fig, caption, title, label=label, dpi=dpi), raw=True)
    if close:
        plt.close(fig)
