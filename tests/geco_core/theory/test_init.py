"""The geco_core.theory package: its re-exports and its independence from the book."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import geco_core.theory as theory
from geco_core import metrics
from geco_core.theory import (
    _arrays,
    equipartition,
    fixed_points,
    grid,
    lipschitz,
    lipschitz_bounds,
    phase,
    tilings,
)

MODULES = (grid, fixed_points, phase, tilings, equipartition, lipschitz, lipschitz_bounds)


def test_doctests():
    for module in (theory, _arrays):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_every_public_name_is_re_exported_once():
    names = [name for module in MODULES for name in module.__all__]
    assert len(names) == len(set(names))  # one home per name
    assert sorted(names) == sorted(theory.__all__)
    for module in MODULES:
        for name in module.__all__:
            assert getattr(theory, name) is getattr(module, name), name


def test_tile_average_kl_does_not_clash_with_the_model_level_estimator():
    assert not hasattr(theory, "average_kl")
    assert theory.tile_average_kl is not metrics.average_kl


def test_the_library_never_imports_the_book():
    folder = Path(theory.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            else:
                continue
            assert not any(t.split(".")[0] == "geco_book" for t in targets), (path.name, targets)
