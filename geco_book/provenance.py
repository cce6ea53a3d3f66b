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
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from geco_book.paths import REPO_ROOT

__all__ = ["git_commit", "git_dirty", "provenance", "training_span", "versions"]


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


def git_dirty(paths: tuple[str, ...] = ("geco_core", "data_builders"),
              untracked: bool = True) -> list[str] | None:
    """Files under ``paths`` (default: the library and data code) that differ from HEAD — the
    commit alone does not identify the code then; ``untracked=False`` leaves out files git
    does not track. None outside git."""
    out = _git("status", "--porcelain", *(() if untracked else ("--untracked-files=no",)),
               "--", *paths)
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


def training_span(records: Iterable[Mapping[str, Any]], command: str) -> dict[str, Any]:
    """When the runs that ``command`` trained were trained, from their records: ``n`` runs,
    ``start`` (the earliest record's ``created_utc`` less its ``wall_time_s``), ``end`` (the
    latest ``created_utc``), ``span_s`` (end − start: the command's wall time from its first
    run's start to its last run's end, so it leaves out the set-up before and any evaluation
    after the last run) and ``summed_s`` (the runs' training times added up). Records of other
    commands are left out; none left raises ``ValueError``.

    Example:
        >>> recs = [{"wall_time_s": 100.0, "provenance": {"command": "c",
        ...          "created_utc": "2026-12-07T10:01:40+00:00"}},
        ...         {"wall_time_s": 150.0, "provenance": {"command": "c",
        ...          "created_utc": "2026-12-07T10:03:00+00:00"}},
        ...         {"wall_time_s": 9.0, "provenance": {"command": "other",
        ...          "created_utc": "2026-12-08T00:00:00+00:00"}}]
        >>> t = training_span(recs, "c")
        >>> t["n"], t["span_s"], t["summed_s"], t["start"]
        (2, 180.0, 250.0, '2026-12-07T10:00:00+00:00')
    """
    mine = [r for r in records if r["provenance"]["command"] == command]
    if not mine:
        raise ValueError(f"command: no record was trained by {command!r}")
    ends = [datetime.fromisoformat(r["provenance"]["created_utc"]) for r in mine]
    starts = [e.timestamp() - float(r["wall_time_s"]) for e, r in zip(ends, mine)]
    start = datetime.fromtimestamp(min(starts), timezone.utc)
    end = max(ends)
    return {"n": len(mine), "start": start.isoformat(timespec="seconds"),
            "end": end.isoformat(timespec="seconds"),
            "span_s": round(end.timestamp() - min(starts), 1),
            "summed_s": round(sum(float(r["wall_time_s"]) for r in mine), 1)}
