"""The metrics log of a run: ``metrics.jsonl``, one JSON row every ``log_every`` steps.

Columns (the curves of Figure 3): ``step``, ``kl``, ``mse``, ``nll``, ``beta``, ``lambda``
(``lambda_0``, … for several constraints), ``c_ma``, ``wall_time`` first, then ``sigma``,
``loss``, ``c_hat``, ``grad_norm``, ``epoch``, ``lr``. Rows are averaged over the ranks of a
distributed run and written by rank 0 only. Read a log with :func:`read_log`.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / LOG_NAME
    >>> _ = p.write_text('{"step": 0, "kl": 1.5}\\n{"step": 10, "kl": 1.0}\\n{"step": 20')
    >>> truncate_log(p, 10)  # a resumed run restarts at step 10: later (and cut) rows go
    >>> read_log(p)["kl"].tolist()
    [1.5]
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from geco_base.io import write_text

__all__ = ["LOG_NAME", "append_row", "metrics_to_floats", "order_row", "read_log", "truncate_log"]

LOG_NAME = "metrics.jsonl"

_FIRST_COLS = ("step", "kl", "mse", "nll", "beta", "lambda", "c_ma", "wall_time")


def _flatten_metrics(metrics: Mapping[str, Tensor | float]) -> dict[str, Tensor]:
    """0-d tensors stay; vectors of length 1 become scalars, longer ones ``key_0, key_1, …``."""
    flat: dict[str, Tensor] = {}
    for k, v in metrics.items():
        v = torch.as_tensor(v).detach().float().reshape(-1)
        if v.numel() == 1:
            flat[k] = v[0]
        else:
            for i in range(v.numel()):
                flat[f"{k}_{i}"] = v[i]
    return flat


def metrics_to_floats(
    metrics: Mapping[str, Tensor | float], world_size: int, device: torch.device
) -> dict[str, float]:
    """One log row: every metric as a float, vectors split into ``key_i`` columns, averaged
    over the ranks (one all-reduce) when ``world_size > 1``.

    Example:
        >>> metrics_to_floats({"kl": torch.tensor(2.0), "lambda": torch.ones(2)}, 1, "cpu")
        {'kl': 2.0, 'lambda_0': 1.0, 'lambda_1': 1.0}
    """
    flat = _flatten_metrics(metrics)
    keys = list(flat)
    vec = torch.stack([flat[k].to(device) for k in keys])
    if world_size > 1:
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec = vec / world_size
    return dict(zip(keys, vec.cpu().double().tolist()))


def order_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the Figure-3 columns first (step, kl, mse, nll, beta, λ, C_ma, wall time)."""
    first = [k for k in _FIRST_COLS if k in row]
    return {k: row[k] for k in first + [k for k in row if k not in first]}


def json_default(v: Any) -> float:
    """``json.dumps`` fallback: numbers that are not Python floats (numpy, 0-d tensors)."""
    return float(v)


def truncate_log(path: Path, start_step: int) -> None:
    """Keep only rows of steps < ``start_step`` (rows a killed run wrote after its checkpoint
    are dropped, so the resumed log reads like an uninterrupted one); atomic."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            if json.loads(line)["step"] < start_step:
                keep.append(line)
        except (ValueError, KeyError):
            continue  # a line cut short by the kill
    write_text(path, "".join(line + "\n" for line in keep))


def read_log(path: str | os.PathLike):
    """The metrics log of a run (its ``out_dir`` or the ``metrics.jsonl`` file) as a pandas
    DataFrame (pandas is not a dependency of the library: ``pip install ".[chapters]"``).

    Columns: ``step``, ``kl``, ``mse``, ``nll``, ``beta``, ``lambda`` (``lambda_0``, … for
    several constraints), ``c_ma``, ``wall_time``, ``sigma``, ``loss``, ``grad_norm``, ``lr``…

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> _ = p.write_text('{"step": 0, "kl": 1.5}\\n{"step": 10, "kl": 1.0}\\n')
        >>> read_log(p)["kl"].tolist()
        [1.5, 1.0]
    """
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / LOG_NAME
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return pd.DataFrame.from_records(rows)


def append_row(log_file, row: dict[str, Any], log_path: Path) -> None:
    """One metrics row, flushed; a full disk is reported naming the log (the checkpoint, which
    is written atomically, still holds the last good state: resume from it)."""
    try:
        log_file.write(json.dumps(row, default=json_default) + "\n")
        log_file.flush()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on device while writing {log_path}; "
                          "free space and resume the run") from e
        raise
