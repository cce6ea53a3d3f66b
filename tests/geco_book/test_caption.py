"""Tests for geco_book.figures.caption: figures displayed with a <figcaption>."""

from __future__ import annotations

import base64
import doctest
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from geco_book.figures import caption  # noqa: E402


def test_doctests():
    result = doctest.testmod(caption, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    plt.close("all")


def test_figure_html_is_a_figure_with_an_inline_png_and_an_escaped_caption():
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    html = caption.figure_html(fig, "Data: x < 1 & seed 0.", title="Fig. 7 (computed)")
    assert re.fullmatch(r'<figure class="geco-figure" id="fig-fig-7-computed".*</figure>', html)
    src = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html).group(1)
    assert base64.b64decode(src).startswith(b"\x89PNG\r\n\x1a\n")
    cap = re.search(r"<figcaption[^>]*>(.*)</figcaption>", html).group(1)
    assert cap == "<strong>Fig. 7 (computed).</strong> Data: x &lt; 1 &amp; seed 0."
    assert html.index("<img") < html.index("<figcaption")  # caption below the image
    assert 'id="mine"' in caption.figure_html(fig, "c", label="mine")
    assert " id=" not in caption.figure_html(fig, "c")
    plt.close(fig)


def test_show_figure_displays_one_html_output_and_closes_the_figure(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append((obj, raw)))
    fig = plt.figure(figsize=(1, 1))
    caption.show_figure(fig, "Data: none. Seed 1.", title="Fig. 0")
    assert len(shown) == 1 and shown[0][1] is True
    bundle = shown[0][0]
    assert set(bundle) == {"text/html", "text/plain"}
    assert (
        "<figcaption" in bundle["text/html"]
        and bundle["text/plain"] == "Fig. 0. Data: none. Seed 1."
    )
    assert not plt.fignum_exists(fig.number)
    fig = plt.figure(figsize=(1, 1))
    caption.show_figure(fig, "kept", close=False)
    assert plt.fignum_exists(fig.number)
    plt.close("all")


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: caption.figure_html(plt.figure(), "  "), ValueError, "caption"),
        (lambda: caption.figure_html("not a figure", "c"), TypeError, "Figure"),
    ],
)
def test_bad_arguments(call, error, name):
    with pytest.raises(error, match=name):
        call()
    plt.close("all")
