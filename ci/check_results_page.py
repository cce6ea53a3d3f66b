"""Check that the rendered results page says what the rendered chapters say.

Reads the executed notebooks of one profile (``ci/_executed/<profile>/``, written by
``ci/run_notebooks.py``): in each chapter, the output of the cell that shows its claims table
(the code cell calling ``claims_table(``); in ``00_results``, the table shown under each
chapter's link. Fails when a chapter's verdicts, in order, differ from the results page's
rows for that chapter, or when either side is missing. Usage::

    python ci/check_results_page.py --profile smoke
"""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import executed_folder  # noqa: E402

RESULTS = "00_results"
_PAGE = re.compile(r"page `(\d\d_[a-z_]+)`")


class _Table(HTMLParser):
    """The cells of every ``<tr>`` of an HTML table, header cells included, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.body: list[bool] = []  # per row: inside <tbody> (not a header row)
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr":
            self.rows.append([])
            self.body.append(self._in_body)
        elif tag in ("td", "th") and self.rows:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def verdicts(html: str) -> list[str]:
    """The ``verdict`` column of the (first) HTML table in ``html``, top to bottom.

    Example:
        >>> verdicts("<table><tr><th></th><th>claim</th><th>verdict</th></tr>"
        ...          "<tr><th>0</th><td>a</td><td>reproduced</td></tr></table>")
        ['reproduced']
    """
    t = _Table()
    t.feed(html)
    header = next((r for r, b in zip(t.rows, t.body) if not b and "verdict" in r), None)
    if header is None:
        raise ValueError("no table with a 'verdict' column")
    rows = [r for r, b in zip(t.rows, t.body) if b]
    width = len(header)
    col = header.index("verdict")
    # a DataFrame's index adds a leading <th> to each body row; a styled table may not have
    # the empty corner header: align every row on its right end
    return [r[col - width + len(r)] for r in rows if len(r) >= width - col]


def _html_outputs(cell) -> list[str]:
    return ["".join(o["data"]["text/html"]) for o in cell.get("outputs", [])
            if "text/html" in o.get("data", {})]


def chapter_verdicts(nb: dict) -> list[str]:
    """The verdicts a chapter notebook shows: the table output of its ``claims_table(`` cell."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "claims_table(" in "".join(cell["source"]):
            out = _html_outputs(cell)
            if not out:
                raise ValueError("its claims_table cell has no table output")
            return verdicts(out[-1])
    raise ValueError("no code cell calls claims_table(")


def results_verdicts(nb: dict) -> dict[str, list[str]]:
    """The verdicts the results page shows, by chapter page: each table output after a
    markdown output naming the chapter page ``NN_name``."""
    out: dict[str, list[str]] = {}
    for cell in nb["cells"]:
        page = None
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            named = _PAGE.search("".join(data.get("text/markdown", "")))
            if named:
                page = named.group(1)
            elif "text/html" in data and page is not None:
                out[page] = verdicts("".join(data["text/html"]))
                page = None
    return out


def check(executed: Path) -> list[str]:
    """Problems, one line each (none: the page and the chapters agree)."""
    page = executed / f"{RESULTS}.ipynb"
    if not page.is_file():
        return [f"{page}: not rendered"]
    shown = results_verdicts(json.loads(page.read_text(encoding="utf-8")))
    problems = []
    for nb_path in sorted(executed.glob("[0-9][0-9]_*.ipynb")):
        name = nb_path.stem
        if name == RESULTS:
            continue
        try:
            theirs = chapter_verdicts(json.loads(nb_path.read_text(encoding="utf-8")))
        except ValueError as err:
            if name in shown:
                problems.append(f"{name}: {err}, but the results page shows rows for it")
            continue
        if name not in shown:
            problems.append(f"{name}: its claims table is not on the results page")
        elif shown[name] != theirs:
            problems.append(f"{name}: the chapter's verdicts {theirs} differ from the results "
                            f"page's {shown[name]}")
    if not shown:
        problems.append(f"{page}: no chapter table found")
    return problems


def main(argv: list[str] | None = None) -> int:
    executed = executed_folder(__doc__.splitlines()[0], argv)
    problems = check(executed)
    for line in problems:
        print(f"ERROR {line}", file=sys.stderr)
    print(f"check_results_page: {'ok' if not problems else f'{len(problems)} problem(s)'} "
          f"({executed})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
