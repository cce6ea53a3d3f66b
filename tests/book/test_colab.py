"""The Colab path from a bare notebook: the install cell, its pinning to a commit in the
rendered book (ci/check_notebooks.py, ci/build_book.py) and the checks of CI's Colab
simulation (ci/colab_sim.py; the simulation itself runs in ci/test.sh)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
sys.path.insert(0, str(REPO / "ci"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_notebooks = _load("check_notebooks")
colab_sim = _load("colab_sim")
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("ipynb", sorted((BOOK / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_pinning_changes_the_install_cell_and_the_badge_only(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    before = [c.source for c in nb.cells]
    assert check_notebooks.pin_revision(nb, BOOK, ipynb, SHA) == 2
    changed = {c.cell_type: (a, c.source) for a, c in zip(before, nb.cells) if a != c.source}
    assert sum(a != c.source for a, c in zip(before, nb.cells)) == 2
    (cell_before, cell), (badge_before, badge) = changed["code"], changed["markdown"]
    assert f'REVISION = "{SHA}"' in cell and 'REVISION = "main"' in cell_before
    assert cell == check_notebooks.colab_cell(BOOK, SHA)
    assert f"/blob/{SHA}/book/chapters/{ipynb.name})" in badge
    assert badge == badge_before.replace("/blob/main/", f"/blob/{SHA}/")
    # a pinned notebook is pinned once: nothing left to pin to another commit
    assert check_notebooks.pin_revision(nb, BOOK, ipynb, "f" * 40) == 0


def test_the_install_cell_clones_installs_and_imports_from_the_clone(tmp_path):
    """Run the install cell as Colab would (google.colab importable), with git and pip
    replaced by recorders: it clones $GECO_REPO_URL into the working folder, checks out
    REVISION, installs the clone editable with the chapters' extras and puts it first on
    sys.path; without google.colab it does nothing."""
    cell = check_notebooks.colab_cell(BOOK, SHA)
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text("")
    probe = (
        "import json, subprocess, sys\n"
        "calls = []\n"
        "subprocess.run = lambda cmd, check: calls.append(cmd)\n"
        f"exec({cell!r})\n"
        "print(json.dumps({'calls': calls, 'path0': sys.path[0]}))\n"
    )
    env = {"PYTHONPATH": str(fake), "GECO_REPO_URL": "/some/repo", "PATH": "/usr/bin:/bin"}
    for colab, expect_calls in ((True, 3), (False, 0)):
        code = ("import google.colab\n" if colab else "") + probe
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True).stdout
        got = json.loads(out)
        assert len(got["calls"]) == expect_calls
        if colab:
            clone = str(tmp_path / check_notebooks.clone_name(BOOK))
            assert got["calls"][0][-2:] == ["/some/repo", clone]
            assert got["calls"][1][-3:] == ["checkout", "-q", SHA]
            assert got["calls"][2][1:] == ["-m", "pip", "install", "-q", "-e",
                                           f"{clone}[chapters]"]
            assert got["path0"] == clone


def test_the_simulation_and_the_store_name_the_same_variables():
    from geco_book.store import NO_TRAINING_ENV

    assert colab_sim.NO_TRAINING_ENV == NO_TRAINING_ENV
    cell = check_notebooks.colab_cell(BOOK)
    assert f'os.environ.get("{colab_sim.REPO_URL_ENV}", REPO_URL)' in cell


def test_the_probe_check_names_what_did_not_come_from_the_clone(tmp_path):
    clone = tmp_path / "content" / "repo"
    good = {"geco_book": str(clone / "geco_book" / "__init__.py"),
            "cache_root": str(clone / "book" / "_cache"), "records": 3, "revision": SHA}
    assert colab_sim.check_probe(good, clone, SHA) == []
    bad = dict(good, geco_book="/usr/lib/site-packages/geco_book/__init__.py",
               cache_root="/elsewhere/_cache", records=0, revision="")
    problems = colab_sim.check_probe(bad, clone, SHA)
    assert len(problems) == 4
    assert "not from the clone" in problems[0] and "not the clone's" in problems[1]
    assert "no committed run records" in problems[2] and f"not at {SHA}" in problems[3]
