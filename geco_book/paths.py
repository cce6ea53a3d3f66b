"""Where the book keeps things, resolved from this package (never from the working directory).

- :func:`cache_root` — the committed, small results every chapter renders from:
  ``<repository>/book/_cache`` (override with ``$GECO_BOOK_CACHE``).
- :func:`runs_root` — checkpoints and other large run files, outside the repository:
  ``$GECO_RUNS``, else ``$XDG_CACHE_HOME/geco/runs``, else ``~/.cache/geco/runs``.

The same rule holds from the repository root, from ``book/chapters`` (where Jupyter runs a
chapter), in CI and on Colab (where the repository is cloned and installed editable).

Example:
    >>> cache_root().name, cache_root().parent.name
    ('_cache', 'book')
    >>> runs_root().is_absolute()
    True
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "cache_root", "runs_root", "shown"]

#: The repository this package lives in (``geco_book/..``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_root() -> Path:
    """The committed results folder: ``$GECO_BOOK_CACHE`` or ``<repo>/book/_cache``."""
    env = os.environ.get("GECO_BOOK_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "book" / "_cache"


def runs_root() -> Path:
    """The checkpoints folder: ``$GECO_RUNS``, else ``$XDG_CACHE_HOME/geco/runs``, else
    ``~/.cache/geco/runs``."""
    env = os.environ.get("GECO_RUNS")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "geco" / "runs").resolve()


def shown(path: str | Path) -> str:
    """``path`` as a rendered page should print it: relative to the repository when inside it,
    ``$GECO_RUNS/…`` when under :func:`runs_root`, else as it is (no rendering machine's
    absolute folders in the book).

    Example:
        >>> shown(cache_root() / "runs"), shown(runs_root() / "smoke")
        ('book/_cache/runs', '$GECO_RUNS/smoke')
    """
    p = Path(path).expanduser().resolve()
    for root, name in ((REPO_ROOT, None), (runs_root(), "$GECO_RUNS")):
        if p.is_relative_to(root):
            rel = p.relative_to(root).as_posix()
            return rel if name is None else f"{name}/{rel}" if rel != "." else name
    return str(path)
