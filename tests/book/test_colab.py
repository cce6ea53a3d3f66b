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
def test_pinning_changes_the_install_cell_only(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    before = [c.source for c in nb.cells]
    assert check_notebooks.pin_revision(nb, BOOK, SHA)
    changed = [(a, c) for a, c in zip(before, nb.cells) if a != c.source]
    assert len(changed) == 1
    (cell_before, cell), = changed
    assert cell.cell_type == "code" and cell.source == check_notebooks.colab_cell(BOOK, SHA)
    assert f'REVISION = "{SHA}"' in cell.source and 'REVISION = "main"' in cell_before
    # the badge keeps opening the branch's notebook (GitHub serves no notebook at its own sha)
    assert any(check_notebooks.colab_url(BOOK, ipynb) in c.source for c in nb.cells)
    # a pinned notebook is pinned once: nothing left to pin to another commit
    assert not check_notebooks.pin_revision(nb, BOOK, "f" * 40)


def _run_install_cell(tmp_path, revision: str, colab: bool, branches=("main",), clone=False):
    """Execute the install cell with git and pip replaced by a recorder; ``branches``: the
    remote's branches (what ``git rev-parse --verify origin/X`` finds)."""
    cell = check_notebooks.colab_cell(BOOK, revision)
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (fake / "google" / "colab" / "__init__.py").write_text("")
    if clone:
        (tmp_path / check_notebooks.clone_name(BOOK)).mkdir(exist_ok=True)
    probe = (
        "import json, subprocess, sys, types\n"
        "calls = []\n"
        f"branches = {list(branches)!r}\n"
        "def run(cmd, check=False, capture_output=False):\n"
        "    calls.append(cmd)\n"
        "    found = 'rev-parse' in cmd and cmd[-1].split('/', 1)[-1] in branches\n"
        "    return types.SimpleNamespace(returncode=0 if found or 'rev-parse' not in cmd else 1)\n"
        "subprocess.run = run\n"
        f"exec({cell!r})\n"
        "print(json.dumps({'calls': calls, 'path': sys.path}))\n"
    )
    env = {"PYTHONPATH": str(fake), "GECO_REPO_URL": "/some/repo", "PATH": "/usr/bin:/bin"}
    code = ("import google.colab\n" if colab else "") + probe
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_the_install_cell_clones_checks_out_installs_and_imports_from_the_clone(tmp_path):
    """On Colab (google.colab importable) the cell clones $GECO_REPO_URL into the working
    folder, fetches, checks out the remote branch's head (never a stale local branch) or the
    pinned commit, installs the clone editable with the chapters' extras, puts it first on
    sys.path once, and prints the commit; without google.colab it does nothing."""
    clone = str(tmp_path / check_notebooks.clone_name(BOOK))
    git = ["git", "-C", clone]
    got = _run_install_cell(tmp_path, "main", colab=True)
    assert got["calls"] == [
        ["git", "clone", "-q", "/some/repo", clone],
        git + ["fetch", "-q", "origin"],
        git + ["rev-parse", "-q", "--verify", "origin/main"],
        git + ["checkout", "-q", "--detach", "origin/main"],
        [sys.executable, "-m", "pip", "install", "-q", "-e", f"{clone}[chapters]"],
        git + ["log", "-1", "--format=installed commit %H (%cs)"]]
    assert got["path"][0] == clone and got["path"].count(clone) == 1
    # a pinned commit, in a clone an earlier chapter made: fetched and checked out, no clone
    got = _run_install_cell(tmp_path, SHA, colab=True, clone=True)
    assert ["git", "clone", "-q", "/some/repo", clone] not in got["calls"]
    assert git + ["fetch", "-q", "origin"] in got["calls"]
    assert git + ["checkout", "-q", "--detach", SHA] in got["calls"]
    assert _run_install_cell(tmp_path, "main", colab=False)["calls"] == []


def test_the_simulation_and_the_store_name_the_same_variables():
    from geco_book.store import NO_TRAINING_ENV

    assert colab_sim.NO_TRAINING_ENV == NO_TRAINING_ENV
    cell = check_notebooks.colab_cell(BOOK)
    assert f'os.environ.get("{colab_sim.REPO_URL_ENV}", REPO_URL)' in cell


def test_the_probe_check_names_what_did_not_come_from_the_clone(tmp_path):
    clone = tmp_path / "content" / "repo"
    good = {"modules": [str(clone / p / "__init__.py")
                        for p in ("geco_book", "geco_core", "data_builders")],
            "cache_root": str(clone / "book" / "_cache"), "records": 3, "committed": 3,
            "revision": SHA}
    assert colab_sim.check_probe(good, clone, SHA) == []
    host = "/usr/lib/python3/site-packages/geco_core/__init__.py"
    bad = dict(good, modules=[good["modules"][0], host, good["modules"][2]],
               cache_root="/elsewhere/_cache", records=2, revision="")
    problems = colab_sim.check_probe(bad, clone, SHA)
    assert len(problems) == 4
    assert problems[0].startswith("geco_core came from /usr/lib")
    assert "not the clone's" in problems[1]
    assert "2 run records found, 3 committed" in problems[2] and f"not at {SHA}" in problems[3]
    assert "0 run records found" in colab_sim.check_probe(dict(good, records=0, committed=0),
                                                          clone, SHA)[0]
