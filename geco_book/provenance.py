"""Where a result came from: git commit, package versions, machine, command.

Example:
    >>> p = provenance(command="python -m geco_book.chapters.micro_mnist")
    >>> sorted(p)[:4]
    ['command', 'cpu_count', 'created_utc', 'device']
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

from geco_book.paths import REPO_ROOT

__all__ = ["git_commit", "git_dirty", "provenance", "versions"]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the repository, or None outside a git checkout."""
    return (_git("rev-parse", "HEAD") or "").strip() or None


def git_dirty() -> list[str] | None:
    """Files of the library and data code that differ from HEAD (the commit alone does not
    identify the code then). None outside git."""
    out = _git("status", "--porcelain", "--", "geco_core", "data_builders")
    if out is None:
        return None
    return sorted(line[3:].strip() for line in out.splitlines() if line.strip())


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages that shape the numbers."""
    import numpy
    import torch

    import geco_core

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "geco_core": geco_core.__version__,
    }
    return out


def provenance(command: str | None = None, **extra: Any) -> dict[str, Any]:
    """A provenance record: time, command, git commit (and uncommitted library files),
    versions, machine (device, cpu count, torch threads) and ``extra``."""
    import torch

    return {
        "command": command if command is not None else " ".join(sys.argv),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "git_uncommitted": git_dirty(),
        "versions": versions(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }
