"""Tests for geco_book.figures.legibility: text size at the book's width against the saved PNG,
overlaps, single-label axes, and the report that show_figure writes for CI."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from geco_book.figures import caption, legibility  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _png_width(fig, dpi=100) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return Image.open(io.BytesIO(buffer.getvalue())).size[0]


def _sizes(found: list[str]) -> list[float]:
    return [float(p.split(" is ")[1].split(" px")[0]) for p in found if p.startswith("text ")]


def test_a_plain_plot_is_legible():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1, 2], [3, 1, 2], label="a line")
    ax.set(xlabel="step", ylabel="KL (nats)", title="a title")
    ax.legend()
    assert legibility.problems(fig) == []


@pytest.mark.parametrize("width_in", [12.0, 20.0, 30.0])
def test_text_size_is_the_font_size_shrunk_with_the_png_to_the_content_width(width_in):
    fig, ax = plt.subplots(figsize=(width_in, 2))
    ax.set_xticks([]), ax.set_yticks([])
    ax.text(0.5, 0.5, "only text", fontsize=9, transform=ax.transAxes)
    found = legibility.problems(fig, content_width_px=760, min_text_px=100)
    expected = 9 / 72 * 100 * min(1.0, 760 / _png_width(fig))
    assert _sizes(found) == pytest.approx([expected], abs=0.06)  # printed to 0.1 px


def test_a_narrow_figure_keeps_its_text_size():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title("t", fontsize=7.2)  # 10 px at 100 dpi, shown unscaled
    assert _sizes(legibility.problems(fig, min_text_px=50)) == pytest.approx([10.0], abs=0.06)
    assert legibility.problems(fig, min_text_px=9.9) == []


def test_overlapping_annotations_and_crowded_tick_labels_are_found():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.annotate("kappa = 0.10", (0.5, 0.5))
    ax.annotate("kappa = 0.12", (0.51, 0.5))
    ax.annotate("far away", (0.05, 0.9))
    found = legibility.problems(fig)
    assert found == ["texts 'kappa = 0.10' and 'kappa = 0.12' overlap"]
    crowded, ax = plt.subplots(figsize=(3, 2))
    ax.set_xticks(range(20), [f"label {i}" for i in range(20)])
    assert any("overlap" in p and "'label 0'" in p for p in legibility.problems(crowded))


def test_labels_of_ticks_outside_the_view_are_not_drawn_so_not_checked():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xticks([0, 5, 10, 1000, 1000.001], ["a", "b", "c", "same place", "same place"])
    ax.set_xlim(0, 10)
    assert legibility.problems(fig) == []


def test_an_axis_with_one_tick_label_has_no_scale_and_hidden_axes_are_skipped():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([2, 8], [2, 8])
    ax.set_xticks([5, 10], ["5", "10"])
    ax.set_xlim(2, 8)  # 10 is outside the view: one label drawn
    assert legibility.problems(fig) == [
        "the x axis of 'axes 0' labels one tick only ('5'): no scale"]
    off, ax = plt.subplots(figsize=(4, 3))
    ax.set_xticks([5], ["5"])
    ax.axis("off")
    assert legibility.problems(off) == []


def test_repeated_tick_labels_are_found_and_log_ticks_tells_them_apart():
    from geco_book.figures.layout import log_ticks

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.semilogy([0, 1], [0.9995, 1.0005])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))  # 0.9996, 0.9998, ... printed as 1
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.3g}")
    ax.yaxis.set_minor_formatter(NullFormatter())
    fig.canvas.draw()
    assert any("repeats tick labels ['1']" in p for p in legibility.problems(fig))
    log_ticks(ax.yaxis)
    assert legibility.problems(fig) == []
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="fig"):
        legibility.problems("not a figure")
    with pytest.raises(ValueError, match="content_width_px"):
        legibility.problems(plt.figure(), content_width_px=0)


def test_show_figure_appends_its_report_when_ci_asks(tmp_path, monkeypatch):
    path = tmp_path / "ch.figures.jsonl"
    monkeypatch.setenv(caption.REPORT_ENV, str(path))
    wide, _ = plt.subplots(1, 6, figsize=(25, 3))
    caption.show_figure(wide, "Data: none. Seed 0.", title="Wide")
    fine, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    caption.show_figure(fine, "Data: none. Seed 0.", title="Fine")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["title"] for r in lines] == ["Wide", "Fine"]
    assert lines[0]["problems"] and lines[0]["width_px"] > 1500 and lines[1]["problems"] == []
    monkeypatch.delenv(caption.REPORT_ENV)
    caption.show_figure(plt.figure(), "Data: none.", title="Unreported")
    assert len(path.read_text().splitlines()) == 2


def test_the_renderer_sets_the_variable_show_figure_reads():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "ci" / "run_notebooks.py"
    spec = importlib.util.spec_from_file_location("run_notebooks", path)
    run_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_notebooks)
    assert run_notebooks.FIGURE_REPORT_ENV == caption.REPORT_ENV


def test_measuring_leaves_the_figure_dpi_as_it_was():
    fig = plt.figure(figsize=(2, 2), dpi=72)
    legibility.problems(fig, dpi=100)
    assert fig.get_dpi() == 72
