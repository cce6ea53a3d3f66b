#!/usr/bin/env python
"""Check the book's notebook pairs: MyST ``.md`` (source of truth) ⇄ ``.ipynb`` (Colab, papermill).

Fails (exit status 1, one line per problem) when

- a paired ``.md`` (jupytext ``formats`` containing ``ipynb``) has no ``.ipynb`` twin, or a
  committed ``.ipynb`` has no ``.md`` twin;
- the twins are out of sync: after jupytext reads both, their cells differ in number, type,
  source or tags;
- a committed ``.ipynb`` carries outputs or execution counts;
- a chapter breaks the book's conventions: the first code cell is the Colab install cell,
  verbatim; the second code cell is tagged ``parameters`` and holds only flat assignments of
  literals, with ``profile = "cpu"`` and an integer ``seed``; a markdown cell links the
  "Open in Colab" badge to the notebook's own ``.ipynb`` in the repository named in
  ``book/_config.yml``.

``--write`` first regenerates the ``.ipynb`` twins from the ``.md`` sources (all pairs, or the
``.md`` files given as arguments), keeping cell ids and dropping outputs, then checks.

Usage::

    python ci/check_notebooks.py                  # check every pair under book/
    python ci/check_notebooks.py --write book/chapters/02_micro_mnist.md
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml
from jupytext.cli import jupytext as jupytext_cli

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
SKIP_DIRS = {"_build", ".ipynb_checkpoints", "__pycache__"}
VALID_PROFILES = ("smoke", "cpu", "gpu")

#: The first code cell of every chapter, verbatim, for the repository ``{url}`` of
#: ``book/_config.yml`` (``repository.url``: the one setting that names the repository; the
#: Colab badges and the launch button are derived from it too) at ``{revision}``: the branch
#: (``repository.branch``) in the committed notebooks, which the badges open, and the commit in
#: the book's rendered copies (:func:`pin_revision`; the page's download button gives that
#: notebook). On Colab it clones the repository into the notebook's folder (or fetches into the
#: clone a reader made before), checks out the revision — a branch as its remote head, never a
#: stale local copy — so that the chapter finds the committed records (``book/_cache``) beside
#: the code, installs it editable with the chapters' extras, puts it first on ``sys.path`` (the
#: running kernel does not see a new editable install) and prints the commit it installed.
#: ``$GECO_REPO_URL`` replaces the URL (CI's Colab simulation, ``ci/colab_sim.py``, points it
#: at the local repository).
COLAB_CELL_TEMPLATE = """\
# On Google Colab: clone this project at REVISION (its code and the committed results the
# chapter renders from) and install it; elsewhere this cell does nothing.
import os, subprocess, sys
REPO_URL = "{url}"
REVISION = "{revision}"
if "google.colab" in sys.modules:
    clone = os.path.abspath("{name}")
    git = ["git", "-C", clone]
    if not os.path.isdir(clone):
        url = os.environ.get("GECO_REPO_URL", REPO_URL)
        subprocess.run(["git", "clone", "-q", url, clone], check=True)
    subprocess.run(git + ["fetch", "-q", "origin"], check=True)
    branch = subprocess.run(git + ["rev-parse", "-q", "--verify", f"origin/{{REVISION}}"],
                            capture_output=True).returncode == 0
    subprocess.run(git + ["checkout", "-q", "--detach",
                          f"origin/{{REVISION}}" if branch else REVISION], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e",
                    f"{{clone}}[chapters]"], check=True)
    if clone not in sys.path:
        sys.path.insert(0, clone)
    if "geco_book" in sys.modules:
        print("geco_book was imported before this cell: restart the runtime to use this code")
    subprocess.run(git + ["log", "-1", "--format=installed commit %H (%cs)"], check=True)"""


def repository(book: Path) -> dict:
    """``repository`` of ``book/_config.yml`` (url, branch, path_to_book)."""
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8")) or {}
    return config.get("repository", {}) or {}


def clone_name(book: Path) -> str:
    """The folder the install cell clones the repository into (its last URL component)."""
    return str(repository(book).get("url", "")).rstrip("/").rsplit("/", 1)[-1] or "repository"


def colab_cell(book: Path, revision: str | None = None) -> str:
    """The install cell every chapter must start with, for the configured repository, at
    ``revision`` (default: the configured branch)."""
    repo = repository(book)
    return COLAB_CELL_TEMPLATE.format(url=str(repo.get("url", "")).rstrip("/"),
                                      revision=revision or repo.get("branch", "main"),
                                      name=clone_name(book))


def pin_revision(nb, book: Path, revision: str) -> bool:
    """Pin a chapter notebook ``nb`` (a twin of ``book`` or an executed copy of it) to the
    commit ``revision``: its install cell then checks out ``revision``, so that a reader who
    downloads the rendered page's notebook and opens it on Colab installs the code that made
    its numbers. The Colab badge keeps opening the branch's notebook (a notebook served from
    GitHub cannot name its own commit). Returns whether the install cell was found and
    pinned; ``nb`` is changed in place."""
    cell = colab_cell(book)
    for c in nb.cells:
        if c.cell_type == "code" and c.source.strip() == cell:
            c.source = colab_cell(book, revision)
            return True
    return False


def _walk(book: Path, suffix: str) -> list[Path]:
    """Files under ``book`` ending in ``suffix``, skipping build and checkpoint folders."""
    return sorted(
        p
        for p in book.rglob(f"*{suffix}")
        if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(book).parts)
    )


def _front_matter(path: Path) -> dict:
    """The YAML header of a markdown file ({} when it has none or it is not YAML)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def is_paired_md(path: Path) -> bool:
    """True when ``path`` is a jupytext MyST notebook paired with an ``.ipynb``."""
    formats = str(_front_matter(path).get("jupytext", {}).get("formats", ""))
    return "ipynb" in [f.split(":")[0].strip() for f in formats.split(",")]


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def compare_cells(md_nb, ipynb_nb) -> list[str]:
    """Differences between the cells of two notebooks (type, source, tags); [] when in sync."""
    problems = []
    a, b = md_nb.cells, ipynb_nb.cells
    if len(a) != len(b):
        problems.append(f"{len(a)} cells in the .md but {len(b)} in the .ipynb")
    for i, (ca, cb) in enumerate(zip(a, b)):
        if ca.cell_type != cb.cell_type:
            problems.append(f"cell {i}: {ca.cell_type} in the .md, {cb.cell_type} in the .ipynb")
        elif ca.source != cb.source:
            first = ca.source.splitlines() or [""]
            problems.append(
                f"cell {i} ({ca.cell_type}, starting {first[0][:50]!r}): sources differ"
            )
        elif _tags(ca) != _tags(cb):
            problems.append(f"cell {i}: tags {_tags(ca)} in the .md, {_tags(cb)} in the .ipynb")
    return problems


def check_clean(nb) -> list[str]:
    """Code cells of a committed notebook must have no outputs and no execution count."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} carries {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} carries execution_count={cell.execution_count}")
    return problems


def colab_url(book: Path, ipynb: Path) -> str:
    """The Colab URL of ``ipynb`` built from ``book/_config.yml`` (as the launch button does)."""
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8")) or {}
    repo = config.get("repository", {})
    url = str(repo.get("url", "")).rstrip("/")
    prefix = "https://github.com/"
    if not url.startswith(prefix):
        raise ValueError(f"{_rel(book / '_config.yml')}: repository.url must be a GitHub URL")
    branch = repo.get("branch", "main")
    base = str(config.get("launch_buttons", {}).get("colab_url", "")).rstrip("/")
    if not base:
        raise ValueError(f"{_rel(book / '_config.yml')}: launch_buttons.colab_url is not set")
    path_to_book = str(repo.get("path_to_book", "")).strip("/")
    rel = ipynb.relative_to(book).as_posix()
    path = f"{path_to_book}/{rel}" if path_to_book else rel
    return f"{base}/github/{url[len(prefix) :]}/blob/{branch}/{path}"


def check_parameters_source(source: str) -> list[str]:
    """A flat parameters cell: only ``name = <literal>``, with profile "cpu" and an int seed."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [f"parameters cell does not parse: {err}"]
    problems, values = [], {}
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            problems.append(
                f"parameters cell line {node.lineno}: only `name = literal` assignments allowed"
            )
            continue
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            problems.append(
                f"parameters cell line {node.lineno}: {node.targets[0].id} is not a literal"
            )
    if "profile" not in values:
        problems.append("parameters cell does not set `profile`")
    elif values["profile"] != "cpu":
        problems.append(
            f'parameters cell: profile must default to "cpu", not {values["profile"]!r}'
        )
    if "seed" not in values:
        problems.append("parameters cell does not set `seed`")
    elif not isinstance(values["seed"], int) or isinstance(values["seed"], bool):
        problems.append(f"parameters cell: seed must be an int, not {values['seed']!r}")
    return problems


def check_conventions(nb, expected_colab_url: str, expected_cell: str) -> list[str]:
    """The book's notebook conventions (Colab cell, parameters cell, Colab badge, kernel)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or code[0].source.strip() != expected_cell:
        problems.append("the first code cell is not the Colab install cell (verbatim)")
    if len(code) < 2 or "parameters" not in _tags(code[1]):
        problems.append("the second code cell is not tagged `parameters`")
    else:
        problems += check_parameters_source(code[1].source)
    tagged = [i for i, c in enumerate(code) if "parameters" in _tags(c)]
    if len(tagged) > 1:
        problems.append(f"{len(tagged)} cells are tagged `parameters`; keep exactly one")
    badge = f"]({expected_colab_url})"
    if not any(c.cell_type == "markdown" and badge in c.source for c in nb.cells):
        problems.append(f"no markdown cell links the Colab badge to {expected_colab_url}")
    if not nb.metadata.get("kernelspec", {}).get("name"):
        problems.append("no kernelspec in the notebook metadata")
    return problems


def check_book(book: Path = BOOK) -> list[str]:
    """Every problem of every notebook pair under ``book``, as ``path: message`` lines."""
    book = book.resolve()
    problems = []
    paired = [p for p in _walk(book, ".md") if is_paired_md(p)]
    paired_twins = {p.with_suffix(".ipynb") for p in paired}
    for ipynb in _walk(book, ".ipynb"):
        if ipynb not in paired_twins:
            problems.append(
                f"{_rel(ipynb)}: no paired .md source (the .md is the source of truth; create it "
                f"with `jupytext --to md:myst --set-formats ipynb,md:myst {_rel(ipynb)}`)"
            )
    for md in paired:
        ipynb = md.with_suffix(".ipynb")
        if not ipynb.exists():
            problems.append(
                f"{_rel(md)}: missing twin {ipynb.name} (run python ci/check_notebooks.py "
                f"--write {_rel(md)})"
            )
            continue
        md_nb = jupytext.read(md)
        ipynb_nb = nbformat.read(ipynb, as_version=4)
        sync = compare_cells(md_nb, ipynb_nb)
        if sync:
            hint = f"out of sync with {md.name} (regenerate: python ci/check_notebooks.py --write)"
            problems += [f"{_rel(ipynb)}: {hint}: {p}" for p in sync]
        problems += [
            f"{_rel(ipynb)}: {p} (commit notebooks without outputs)" for p in check_clean(ipynb_nb)
        ]
        problems += [f"{_rel(md)}: {p}" for p in check_conventions(md_nb, colab_url(book, ipynb),
                                                                    colab_cell(book))]
    return problems


def write_pairs(book: Path, sources: list[Path]) -> list[Path]:
    """Regenerate the ``.ipynb`` twin of each ``.md`` (all paired ones when ``sources`` is empty).

    jupytext's ``--update`` keeps the cell ids of an existing twin; outputs and execution
    counts are then removed so the written notebook is clean.
    """
    mds = [s.resolve() for s in sources] or [p for p in _walk(book, ".md") if is_paired_md(p)]
    for md in mds:
        if md.suffix != ".md" or not md.exists():
            raise ValueError(f"--write expects existing .md sources, got {md}")
        if not is_paired_md(md):
            raise ValueError(f"{_rel(md)} has no jupytext `formats: ipynb,md:myst` header")
        ipynb = md.with_suffix(".ipynb")
        args = ["--quiet", "--to", "ipynb", str(md)]
        if ipynb.exists():
            args.insert(-1, "--update")
        jupytext_cli(args)
        nb = nbformat.read(ipynb, as_version=4)
        if check_clean(nb):
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            nbformat.write(nb, ipynb)
        print(f"wrote {_rel(ipynb)}")
    return mds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", type=Path, default=BOOK, help="book folder (default: book/)")
    parser.add_argument(
        "--write", action="store_true", help="regenerate the .ipynb twins from the .md first"
    )
    parser.add_argument("sources", nargs="*", type=Path, help=".md sources for --write")
    args = parser.parse_args(argv)
    if not (args.book / "_config.yml").is_file():
        parser.error(f"{args.book} is not a book folder (no _config.yml)")
    if args.sources and not args.write:
        parser.error("source files are only accepted with --write")
    if args.write:
        try:
            write_pairs(args.book, args.sources)
        except ValueError as err:
            parser.error(str(err))
    problems = check_book(args.book)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    n_pairs = sum(is_paired_md(p) for p in _walk(args.book.resolve(), ".md"))
    if problems:
        print(f"check_notebooks: {len(problems)} problem(s) in {n_pairs} pair(s)", file=sys.stderr)
        return 1
    print(f"check_notebooks: {n_pairs} notebook pair(s) in sync, clean and following conventions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
