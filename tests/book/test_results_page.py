"""The results page agrees with the chapters: ``ci/check_results_page.py`` on synthetic
executed notebooks (the real ones are checked by CI after it renders them), and
``geco_book.results.summary`` keeps every chapter's rows as they are."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from geco_book import results

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_results_page",
                                               REPO / "ci" / "check_results_page.py")
crp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crp)


def _claims(*verdicts: str) -> pd.DataFrame:
    return pd.DataFrame([{"claim (paper)": f"claim {i}", "ours": "x", "verdict": v,
                          "reason": "r"} for i, v in enumerate(verdicts)])


def _html(df: pd.DataFrame, styled: bool) -> str:
    return df.style.hide(axis="index").to_html() if styled else df.to_html()


def _cell(source: str, outputs: list[dict]) -> dict:
    return {"cell_type": "code", "source": source, "outputs": outputs, "metadata": {}}


def _out(mime: str, text: str) -> dict:
    return {"output_type": "display_data", "data": {mime: text}, "metadata": {}}


def _write(folder: Path, chapters: dict[str, pd.DataFrame], page: dict[str, pd.DataFrame]):
    for name, df in chapters.items():
        shown = [_out("text/html", _html(df, False))]
        nb = {"cells": [_cell("x = 1", []), _cell("tables.claims_table(result)", shown)]}
        (folder / f"{name}.ipynb").write_text(json.dumps(nb))
    outs = []
    for name, df in page.items():
        outs += [_out("text/markdown", f"### T\n\nFrom the chapter page `{name}`."),
                 _out("text/html", _html(df, True))]
    (folder / "00_results.ipynb").write_text(json.dumps({"cells": [_cell("loop", outs)]}))


def test_check_passes_when_the_page_shows_each_chapters_verdicts(tmp_path):
    a, b = _claims("reproduced", "not testable at our scale"), _claims("reproduced in 1 of 2")
    _write(tmp_path, {"02_a": a, "03_b": b}, {"02_a": a, "03_b": b})
    assert crp.check(tmp_path) == []


def test_check_fails_on_a_changed_missing_or_extra_row(tmp_path):
    a = _claims("reproduced", "not testable at our scale")
    _write(tmp_path, {"02_a": a}, {"02_a": _claims("reproduced", "reproduced")})
    (problem,) = crp.check(tmp_path)
    assert "02_a" in problem and "differ" in problem
    _write(tmp_path, {"02_a": a}, {"02_a": _claims("reproduced")})
    assert "differ" in crp.check(tmp_path)[0]
    _write(tmp_path, {"02_a": a, "03_b": a}, {"02_a": a})
    assert crp.check(tmp_path) == ["03_b: its claims table is not on the results page"]
    (tmp_path / "00_results.ipynb").unlink()
    assert "not rendered" in crp.check(tmp_path)[0]


def test_verdicts_reads_a_dataframe_with_a_named_index():
    df = _claims("a", "b").set_index("claim (paper)")
    assert crp.verdicts(df.to_html()) == ["a", "b"]
    with pytest.raises(ValueError, match="verdict"):
        crp.verdicts(pd.DataFrame({"x": [1]}).to_html())


def test_summary_keeps_every_row_in_chapter_order():
    claims = {"05_beyond": _claims("z"), "02_micro_mnist": _claims("a", "b")}
    t = results.summary(claims)
    assert t["page"].tolist() == ["02_micro_mnist", "02_micro_mnist", "05_beyond"]
    assert t["verdict"].tolist() == ["a", "b", "z"]
    assert list(t.columns[:3]) == ["chapter", "page", "claim (paper)"]
    pd.testing.assert_frame_equal(
        t[t["page"] == "02_micro_mnist"].drop(columns=["chapter", "page"]).reset_index(drop=True),
        claims["02_micro_mnist"][t.columns.drop(["chapter", "page"])])
    with pytest.raises(ValueError, match="claims: no chapter '99_x'"):
        results.summary({"99_x": _claims("a")})


def test_every_chapter_with_a_claims_table_is_on_the_page():
    """Each chapter page that shows a claims table has an entry in results.CHAPTERS, and the
    results page is the first entry of the book's table of contents."""
    pages = {p.stem for p in (REPO / "book" / "chapters").glob("[0-9][0-9]_*.md")
             if "claims_table(" in p.read_text(encoding="utf-8")}
    assert pages == {c.page for c in results.CHAPTERS}
    toc = (REPO / "book" / "_toc.yml").read_text(encoding="utf-8")
    files = [line.split("file:")[1].strip() for line in toc.splitlines() if "file:" in line]
    assert files[0] == "chapters/00_results"
