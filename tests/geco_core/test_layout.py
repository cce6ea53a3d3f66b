"""The paper library stands alone: no module of geco_base, geco_core or data_builders imports
the book's experiment code (geco_book), names a repository path, or exceeds ~700 lines; and its
floors stack one way: geco_base (checks, the atomic writer) imports neither of the others,
data_builders (the data) imports nothing of geco_core, and of geco_core only the training
engine (geco_core.train) reads data: the paper's parts (GECO, constraints, objectives, models,
metrics, theory) import no data code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import data_builders
import geco_base
import geco_core

PACKAGES = [Path(p.__file__).parent for p in (geco_base, geco_core, data_builders)]
MODULES = sorted(p for root in PACKAGES for p in root.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports anywhere (module level or in a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _floor(path: Path) -> str:
    """Which floor a library module is on: geco_base, data_builders, the training engine
    (geco_core.train) or the paper's parts (the rest of geco_core)."""
    package = path.relative_to(Path(geco_core.__file__).parents[1]).parts
    if package[0] == "geco_core":
        return "engine" if package[1] == "train" else "paper"
    return package[0]


#: What each floor may import of the library's packages.
MAY_IMPORT = {"geco_base": {"geco_base"}, "data_builders": {"geco_base", "data_builders"},
              "paper": {"geco_base", "geco_core"},
              "engine": {"geco_base", "geco_core", "data_builders"}}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_floors_import_one_way(path):
    library = {"geco_base", "geco_core", "data_builders", "geco_book"}
    floor = _floor(path)
    bad = (_imported(path) & library) - MAY_IMPORT[floor]
    assert not bad, f"{path} ({floor}) imports {sorted(bad)}"


def test_the_floor_rule_sees_every_floor():
    assert {_floor(p) for p in MODULES} == set(MAY_IMPORT)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_library_module_never_imports_the_book(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n == "geco_book" or n.startswith("geco_book.") for n in names), path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_library_module_is_small_and_names_no_book_path(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 700, f"{path} has {len(text.splitlines())} lines"
    assert "book/_cache" not in text and "_REPO" not in text, path


def _requirement_names(requirements) -> set[str]:
    """Import names of PEP 508 requirement strings ("cooper-optim>=1.0" → "cooper")."""
    import re

    dist_to_module = {"cooper-optim": "cooper", "pillow": "PIL"}
    out = set()
    for r in requirements:
        dist = re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower()
        out.add(dist_to_module.get(dist, dist.replace("-", "_")))
    return out


def _pyproject() -> dict:
    import tomllib

    root = Path(geco_core.__file__).resolve().parents[1]
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_library_imports_only_its_declared_dependencies(path):
    """`pip install .` (no extras) must give a working library: every module-level import of
    geco_core / data_builders is the standard library, the two packages or a declared
    dependency; an import inside a function may also be an optional extra's (cooper-optim for
    the cooper Lagrangians, pillow for CelebA, pandas for `read_log`'s DataFrame). Doctest
    examples are not imports of the module."""
    import sys

    project = _pyproject()["project"]
    core = _requirement_names(project["dependencies"]) | {"geco_base", "geco_core",
                                                          "data_builders"}
    extras = project["optional-dependencies"]
    optional = _requirement_names(extras["alternatives"] + extras["celeba"] + ["pandas"])
    allowed = core | set(sys.stdlib_module_names)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        ok = allowed if id(node) in top else allowed | optional
        bad = [r for r in roots if r not in ok]
        assert not bad, f"{path}:{node.lineno} imports {bad}, not a declared dependency"


def test_the_library_declares_no_unused_dependency():
    """Every core dependency is imported somewhere in the library (zuko was declared and
    never imported)."""
    used = set().union(*(_imported(p) for p in MODULES))
    declared = _requirement_names(_pyproject()["project"]["dependencies"])
    assert declared <= used, declared - used


def test_every_library_module_imports_without_the_extras():
    """Every module of geco_core and data_builders imports in an interpreter where the
    extras' packages (and the book's) cannot be imported — as after `pip install .`."""
    import subprocess
    import sys

    code = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {"pandas", "matplotlib", "seaborn", "cooper", "zuko", "PIL", "geco_book"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (blocked)")
sys.meta_path.insert(0, Block())
import data_builders, geco_base, geco_core
n = 0
for pkg in (geco_base, geco_core, data_builders):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.endswith("__main__"):
            continue
        importlib.import_module(m.name)
        n += 1
print(n)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) > 30
