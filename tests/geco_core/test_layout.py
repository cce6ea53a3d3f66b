"""The paper library stands alone: no module of geco_core or data_builders imports the book's
experiment code (geco_book), names a repository path, or exceeds ~700 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import data_builders
import geco_core

PACKAGES = [Path(geco_core.__file__).parent, Path(data_builders.__file__).parent]
MODULES = sorted(p for root in PACKAGES for p in root.rglob("*.py"))


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
