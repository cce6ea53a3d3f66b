#!/usr/bin/env python
"""Fail when a rendered chapter shows a figure a reader cannot read at the book's width.

``ci/run_notebooks.py`` renders each chapter with ``$GECO_FIGURE_REPORT`` set, so every figure
shown by ``geco_book.figures.caption.show_figure`` appends its legibility report
(:func:`geco_book.figures.legibility.report`: text below the minimum size at the book's content
width, overlapping texts, axes labelling a single tick) to ``NN_name.figures.jsonl`` beside the
executed notebook. This check reads those reports and fails on

- any problem in any figure;
- a chapter whose report lists fewer or more figures than its executed notebook shows (a
  figure that escaped the check, or a stale report).

Usage::

    python ci/run_notebooks.py --profile smoke && python ci/check_figures.py --profile smoke
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import count_image_outputs, executed_folder, figure_report_path  # noqa: E402


def check(executed: Path) -> tuple[list[str], int]:
    """(problems, one line each; number of figures checked) for the notebooks in ``executed``."""
    notebooks = sorted(executed.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        return [f"{executed}: no executed chapter notebooks"], 0
    problems, checked = [], 0
    for nb_path in notebooks:
        shown = count_image_outputs(nbformat.read(nb_path, as_version=4))
        report = figure_report_path(nb_path)
        lines = report.read_text(encoding="utf-8").splitlines() if report.is_file() else []
        figures = [json.loads(line) for line in lines if line.strip()]
        if len(figures) != shown:
            problems.append(
                f"{nb_path.stem}: {shown} figure output(s) but {len(figures)} legibility "
                f"report(s) in {report.name} (render it with ci/run_notebooks.py)"
            )
        for n, fig in enumerate(figures, 1):
            name = fig.get("title") or f"figure {n}"
            problems += [f"{nb_path.stem}: {name}: {p}" for p in fig["problems"]]
        checked += len(figures)
    return problems, checked


def main(argv: list[str] | None = None) -> int:
    executed = executed_folder(__doc__.splitlines()[0], argv)
    problems, checked = check(executed)
    for line in problems:
        print(f"ERROR {line}", file=sys.stderr)
    verdict = "ok" if not problems else f"{len(problems)} problem(s)"
    print(f"check_figures: {verdict} in {checked} figure(s) ({executed})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
