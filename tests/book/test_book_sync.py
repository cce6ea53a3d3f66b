"""The book's notebook pairs (ci/check_notebooks.py): the repository passes, and each kind of
breakage is caught on a small throw-away book."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

# The book extras (pip install -e .[book]); without them these tests are skipped, not errors.
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupytext")
pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "check_notebooks", REPO / "ci" / "check_notebooks.py"
)
check_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_notebooks)

DEMO = """\
---
jupytext:
  formats: ipynb,md:myst
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Demo

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/geco-book/taming-vaes-geco/blob/main/book/chapters/99_demo.ipynb)

```{{code-cell}} ipython3
{colab}
```

```{{code-cell}} ipython3
:tags: [parameters]

{parameters}
```

```{{code-cell}} ipython3
print(profile, seed)
```
"""


def demo_md(parameters: str = 'profile = "cpu"\nseed = 0', colab: str | None = None) -> str:
    colab = check_notebooks.colab_cell(REPO / "book") if colab is None else colab
    return DEMO.format(colab=colab, parameters=parameters)


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A book with the repository's _config.yml and one valid chapter pair."""
    root = tmp_path / "book"
    (root / "chapters").mkdir(parents=True)
    shutil.copy(REPO / "book" / "_config.yml", root / "_config.yml")
    (root / "chapters" / "99_demo.md").write_text(demo_md())
    check_notebooks.write_pairs(root, [])
    return root


def problems(book: Path) -> str:
    return "\n".join(check_notebooks.check_book(book))


def edit_ipynb(path: Path, edit) -> None:
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


def test_the_repository_book_is_in_sync_and_clean():
    found = check_notebooks.check_book(REPO / "book")
    assert found == [], "\n".join(found)
    paired = [
        p for p in (REPO / "book" / "chapters").glob("*.md") if check_notebooks.is_paired_md(p)
    ]
    assert len(paired) >= 3


def test_a_freshly_written_pair_passes(book):
    assert problems(book) == ""
    assert check_notebooks.main(["--book", str(book)]) == 0


def test_edited_source_without_regenerating_is_out_of_sync(book):
    md = book / "chapters" / "99_demo.md"
    md.write_text(md.read_text().replace("print(profile, seed)", "print(seed)"))
    assert "sources differ" in problems(book)
    assert check_notebooks.main(["--book", str(book)]) == 1


def test_added_cell_is_out_of_sync(book):
    md = book / "chapters" / "99_demo.md"
    md.write_text(md.read_text() + "\n```{code-cell} ipython3\n1 + 1\n```\n")
    assert "5 cells in the .md but 4 in the .ipynb" in problems(book)


def test_lost_parameters_tag_is_out_of_sync(book):
    ipynb = book / "chapters" / "99_demo.ipynb"
    edit_ipynb(ipynb, lambda nb: nb.cells[2].metadata.pop("tags"))
    assert "cell 2: tags ['parameters'] in the .md, [] in the .ipynb" in problems(book)


def test_outputs_and_execution_counts_are_refused(book):
    ipynb = book / "chapters" / "99_demo.ipynb"

    def run(nb):
        nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="cpu 0\n")]
        nb.cells[3].execution_count = 3

    edit_ipynb(ipynb, run)
    found = problems(book)
    assert "cell 3 carries 1 output(s)" in found
    assert "cell 3 carries execution_count=3" in found


def test_write_regenerates_keeps_ids_and_strips_outputs(book):
    ipynb = book / "chapters" / "99_demo.ipynb"
    edit_ipynb(ipynb, lambda nb: setattr(nb.cells[3], "execution_count", 1))
    ids = [c.id for c in nbformat.read(ipynb, as_version=4).cells]
    md = book / "chapters" / "99_demo.md"
    md.write_text(md.read_text().replace("print(profile, seed)", "print(seed)"))
    assert problems(book) != ""
    check_notebooks.write_pairs(book, [md])
    assert problems(book) == ""
    nb = nbformat.read(ipynb, as_version=4)
    assert [c.id for c in nb.cells] == ids
    assert nb.cells[3].source == "print(seed)"
    assert nb.cells[3].execution_count is None


def test_missing_twin_and_orphan_notebook(book):
    (book / "chapters" / "99_demo.ipynb").rename(book / "chapters" / "98_orphan.ipynb")
    found = problems(book)
    assert "99_demo.md: missing twin 99_demo.ipynb" in found
    assert "98_orphan.ipynb: no paired .md source" in found


def test_broken_colab_cell(book):
    md = book / "chapters" / "99_demo.md"
    md.write_text(demo_md(colab="import sys"))
    check_notebooks.write_pairs(book, [md])
    assert "the first code cell is not the Colab install cell" in problems(book)


def test_badge_must_link_to_the_notebook_itself(book):
    md = book / "chapters" / "99_demo.md"
    md.write_text(md.read_text().replace("99_demo.ipynb)", "02_micro_mnist.ipynb)"))
    check_notebooks.write_pairs(book, [md])
    assert "no markdown cell links the Colab badge" in problems(book)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ('profile = "gpu"\nseed = 0', 'profile must default to "cpu"'),
        ("seed = 0", "does not set `profile`"),
        ('profile = "cpu"', "does not set `seed`"),
        ('profile = "cpu"\nseed = 0.5', "seed must be an int"),
        ('profile = "cpu"\nseed = int("0")', "seed is not a literal"),
        ('profile = "cpu"\nseed = 0\nimport numpy', "only `name = literal` assignments"),
        ('profile = "cpu"\nseed = 0\na = b = 1', "only `name = literal` assignments"),
        ('profile = "cpu"\nseed = (', "does not parse"),
    ],
)
def test_parameters_cell_rules(parameters, message):
    assert any(message in p for p in check_notebooks.check_parameters_source(parameters))


def test_flat_parameters_of_every_literal_kind_pass():
    source = (
        'profile = "cpu"\nseed = 0  # the seed\nkappas = [0.05, 0.1]\nsteps = 10_000\nlr = -1e-3'
    )
    assert check_notebooks.check_parameters_source(source) == []


def test_missing_parameters_tag_in_a_valid_pair(book):
    md = book / "chapters" / "99_demo.md"
    md.write_text(md.read_text().replace(":tags: [parameters]\n", ""))
    check_notebooks.write_pairs(book, [md])
    assert "the second code cell is not tagged `parameters`" in problems(book)


def test_the_repository_url_is_one_setting(book):
    """Changing repository.url in _config.yml changes what every install cell and badge must
    say: an old URL left in a chapter is reported."""
    cfg = book / "_config.yml"
    cfg.write_text(cfg.read_text().replace("github.com/geco-book/taming-vaes-geco",
                                           "github.com/someone/fork"))
    found = problems(book)
    assert "Colab install cell" in found and "someone/fork" in found
