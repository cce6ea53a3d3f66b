"""The paper's numbers the claims tables quote (the "paper's number" column) are the paper's:
each is checked against the paper's text where the checkout has it (``../shared/paper``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geco_book.chapters import large_scale_tables, micro_mnist_tables
from geco_book.chapters.large_scale import PAPER_KAPPAS
from geco_book.chapters.marginal_kl import PAPER_TABLE_2

PAPER = Path(__file__).resolve().parents[3] / "shared" / "paper" / "taming-vaes-full.md"


@pytest.fixture(scope="module")
def paper() -> str:
    if not PAPER.is_file():
        pytest.skip(f"the paper's text is not beside this checkout ({PAPER})")
    return re.sub(r"\s+", " ", PAPER.read_text(encoding="utf-8"))


def test_table_2_is_the_papers(paper):
    table = paper[paper.index("Table 2: Marginal KL") - 600:paper.index("Table 2: Marginal KL")]
    for data, row in PAPER_TABLE_2.items():
        for value in row.values():
            assert f"{value:g}" in table, (data, value)


def test_chapter_03_quotes_the_papers_settings(paper):
    numbers = large_scale_tables.PAPER_NUMBERS
    assert "\\kappa \\in \\{" + ", ".join(f"{k:g}" for k in PAPER_KAPPAS) + "\\}" in paper
    assert all(f"{k:g}" in numbers["fig4_kl"] for k in PAPER_KAPPAS)
    assert "MSE=0.00029" in paper and "0.00029" in numbers["fig5"]
    assert "$it = 10^4$" in paper and "10⁴" in numbers["fig3_phases"]
    assert "conditional ConvDraw model trained on MNIST-rotate" in paper
    assert "some times many orders of magnitude" in paper
    assert "some times many orders of magnitude" in numbers["fig4_magnitude"]
    caption = paper[paper.index("Figure 6: Examples"):][:600]
    for kappa in ("0.1", "1.0", "0.06"):
        assert f"\\kappa={kappa}" in caption and f"κ = {kappa}" in numbers["fig6"]


def test_chapter_02_quotes_fig_8s_settings(paper):
    caption = paper[paper.index("Figure 8: Learned posterior"):][:900]
    assert "\\kappa=0.05" in caption and "\\kappa=0.9" in caption
    assert "RE κ = 0.05" in micro_mnist_tables.PAPER_NUMBERS[0]
    assert "CLA κ = 0.9" in micro_mnist_tables.PAPER_NUMBERS[0]
