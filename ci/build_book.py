#!/usr/bin/env python
"""Build the HTML book from the notebooks executed by ``ci/run_notebooks.py``.

Jupyter Book itself executes nothing (``execute_notebooks: "off"`` in ``book/_config.yml``).
This script

1. checks that every chapter notebook has an executed copy in ``ci/_executed/PROFILE/``, run at
   that profile, without error outputs, and with the same cells as the committed notebook (so a
   stale copy is never rendered);
2. stages the book: copies ``book/`` (without ``_build``) to ``book/_build/_src`` and puts the
   executed copies in place of the committed, output-free ``chapters/*.ipynb``;
3. runs ``jupyter-book build book/_build/_src --path-output book -W -n --keep-going``, so the
   HTML lands in ``book/_build/html`` and any Sphinx warning fails the build;
   Each page's install cell is pinned to the checkout's commit when the checkout is clean (no
   tracked file differs from HEAD): the page's notebook installs the code that made its
   numbers;
4. writes ``book/_build/book_manifest.json`` (each page's title, HTML file and number of figure
   outputs) for ``ci/browser_check.py``.

Usage::

    python ci/run_notebooks.py --profile cpu && python ci/build_book.py --profile cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import pin_revision  # noqa: E402
from run_notebooks import PROFILES, count_image_outputs, error_outputs  # noqa: E402

from geco_book.provenance import git_commit, git_dirty  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
EXECUTED = REPO / "ci" / "_executed"
IGNORE = shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__", ".jupyter_cache")


class BuildError(RuntimeError):
    """The book cannot be built as asked (missing, stale or failed executed notebooks)."""


def toc_files(book: Path) -> list[str]:
    """Docnames of ``_toc.yml`` in reading order (root first)."""
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    names: list[str] = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [
        str(Path(n).with_suffix("")) if Path(n).suffix in (".md", ".ipynb") else n for n in names
    ]


def _first_heading(lines: list[str]) -> str | None:
    for line in lines:
        if line.startswith("# "):
            return line[2:].strip()
    return None


def page_title(book: Path, docname: str) -> str:
    """The first level-1 heading of a page (a notebook's first markdown heading)."""
    ipynb, md = book / f"{docname}.ipynb", book / f"{docname}.md"
    if ipynb.exists():
        nb = nbformat.read(ipynb, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown" and (title := _first_heading(cell.source.splitlines())):
                return title
    elif md.exists():
        if title := _first_heading(md.read_text(encoding="utf-8").splitlines()):
            return title
    else:
        raise BuildError(f"_toc.yml names {docname!r} but neither {md} nor {ipynb} exists")
    raise BuildError(f"{docname}: no '# Title' heading")


def _code_sources(nb) -> list[tuple[str, str]]:
    """(cell type, source) of every cell except the one papermill injects."""
    return [
        (c.cell_type, c.source)
        for c in nb.cells
        if "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]


def check_executed(committed: Path, executed: Path, profile: str) -> nbformat.NotebookNode:
    """Load ``executed`` after checking it is a clean, current run of ``committed``."""
    hint = f"run `python ci/run_notebooks.py --profile {profile} --only {committed.stem}`"
    if not executed.exists():
        raise BuildError(f"{committed.stem}: no executed copy {executed}; {hint}")
    nb = nbformat.read(executed, as_version=4)
    ran_with = nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")
    if ran_with != profile:
        raise BuildError(f"{executed} was run with profile={ran_with!r}, not {profile!r}; {hint}")
    if errors := error_outputs(nb):
        raise BuildError(f"{executed} has error outputs ({'; '.join(errors)}); fix it, then {hint}")
    if nb.metadata.get("papermill", {}).get("exception"):
        raise BuildError(f"{executed} recorded an exception during execution; {hint}")
    if _code_sources(nb) != _code_sources(nbformat.read(committed, as_version=4)):
        raise BuildError(f"{executed} is stale (its cells differ from {committed.name}); {hint}")
    return nb


def pinned_revision() -> str | None:
    """The commit the pages pin: HEAD when no tracked file differs from it (an uncommitted
    change would make "the code that made its numbers" a commit that does not hold them);
    None — the pages keep the branch, and a note says so — otherwise or outside git."""
    commit = git_commit()
    if commit and not git_dirty((".",), untracked=False):
        return commit
    print(f"build_book: note: pages not pinned to a commit "
          f"({'uncommitted changes' if commit else 'not a git checkout'}); their install "
          f"cells keep the branch", file=sys.stderr)
    return None


def stage(book: Path, stage_dir: Path, executed_dir: Path, profile: str,
          revision: str | None = None) -> dict[str, int]:
    """Copy the book to ``stage_dir`` with executed notebooks; returns figures per chapter.

    With ``revision`` (a commit), every page's install cell checks it out
    (``check_notebooks.pin_revision``): the page's notebook (its download button) installs the
    code that made its numbers."""
    committed = sorted((book / "chapters").glob("*.ipynb"))
    if not committed:
        raise BuildError(f"no chapter notebooks in {book / 'chapters'}")
    executed = {p.stem: check_executed(p, executed_dir / p.name, profile) for p in committed}
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    shutil.copytree(book, stage_dir, ignore=IGNORE)
    for name, nb in executed.items():
        if revision and not pin_revision(nb, book, revision):
            raise BuildError(f"{name}: no install cell to pin to {revision}; run python "
                             f"ci/check_notebooks.py")
        nbformat.write(nb, stage_dir / "chapters" / f"{name}.ipynb")
    return {f"chapters/{name}": count_image_outputs(nb) for name, nb in executed.items()}


def jupyter_book_build(stage_dir: Path, path_output: Path) -> int:
    """``jupyter-book build`` with warnings as errors; returns its exit status."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(stage_dir),
        "--path-output",
        str(path_output),
        "--builder",
        "html",
        "--all",
        "-W",
        "-n",
        "--keep-going",
    ]
    print("build_book: " + " ".join(["jupyter-book"] + cmd[3:]), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", choices=PROFILES, help="default: cpu")
    parser.add_argument(
        "--executed", type=Path, default=None, help="executed notebooks (default: ci/_executed/P)"
    )
    args = parser.parse_args(argv)
    executed_dir = (args.executed or EXECUTED / args.profile).resolve()
    build = BOOK / "_build"
    stage_dir = build / "_src"
    start = time.perf_counter()
    try:
        docnames = toc_files(BOOK)
        titles = {d: page_title(BOOK, d) for d in docnames}
        figures = stage(BOOK, stage_dir, executed_dir, args.profile, pinned_revision())
    except BuildError as err:
        print(f"build_book: ERROR {err}", file=sys.stderr)
        return 1
    for old in ("html", ".doctrees", "jupyter_execute"):
        shutil.rmtree(build / old, ignore_errors=True)
    status = jupyter_book_build(stage_dir, BOOK)
    wall = time.perf_counter() - start
    if status != 0:
        print(
            f"build_book: FAILED (jupyter-book exit status {status}) after {wall:.1f} s",
            file=sys.stderr,
        )
        return 1
    html = build / "html"
    pages = []
    for docname in docnames:
        page = html / f"{docname}.html"
        if not page.is_file():
            print(f"build_book: ERROR the build has no {page}", file=sys.stderr)
            return 1
        pages.append(
            {
                "docname": docname,
                "title": titles[docname],
                "html": f"{docname}.html",
                "figures": figures.get(docname, 0),
                "executed": str(executed_dir / f"{Path(docname).name}.ipynb")
                if docname in figures
                else None,
            }
        )
    manifest = {"profile": args.profile, "html_dir": str(html), "pages": pages}
    (build / "book_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(
        f"build_book: {len(pages)} page(s), profile={args.profile}, HTML in {html} ({wall:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
