"""Checkpoints that resume a training run exactly: atomic writes, ``weights_only`` loads.

A checkpoint is one ``dict`` of tensors, numbers, strings, lists and dicts only, so that
``torch.load(path, weights_only=True)`` (no pickled code) can read it back:

- ``model``, ``optimizer``, ``objective`` (GECO's λ, C_ma and t; a learned σ), state dicts;
- ``rng``: one entry per rank (torch CPU, CUDA if any, numpy, python ``random``), each a dict
  of tensors — see :func:`capture_rng_state`;
- ``step`` (the next step to run), ``wall_time`` (seconds trained so far), ``world_size``;
- ``config``: the run's configuration as a plain ``dict``, checked on resume by
  :func:`check_config` so that a run never silently continues with other settings.

Writes go to ``path + ".tmp"`` first, are flushed to disk, then renamed over ``path`` with
``os.replace`` (atomic on POSIX): a run killed mid-write (SIGKILL, pre-emption) leaves the
previous checkpoint intact.

Example:
    >>> import tempfile, os, torch
    >>> d = tempfile.mkdtemp()
    >>> save_checkpoint(os.path.join(d, "c.pt"), {"step": 3, "w": torch.ones(2)})
    >>> load_checkpoint(os.path.join(d, "c.pt"))["step"]
    3
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "check_config",
]

FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (stamped with ``format_version``) to ``path`` atomically: a tmp file,
    flushed and fsync'ed, then ``os.replace``."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``; no code is unpickled."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} is not a geco_core training checkpoint (format_version "
            f"{FORMAT_VERSION} expected)"
        )
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every random number generator a training step may touch, as tensors and numbers.

    torch CPU (ByteTensor), each CUDA device (list of ByteTensors, empty without CUDA), numpy's
    global MT19937 state and python ``random``'s, converted to int64 tensors so that the result
    survives a ``weights_only`` load.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "numpy_name": str(np_name),
        "python_internal": torch.tensor(py_internal, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": None if py_gauss is None else float(py_gauss),
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = list(state.get("cuda", []))
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"checkpoint holds {len(cuda_states)} CUDA RNG states, this machine has "
                f"{torch.cuda.device_count()} devices"
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    keys = state["numpy_keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(
        (
            state["numpy_name"],
            keys,
            int(state["numpy_pos"]),
            int(state["numpy_has_gauss"]),
            float(state["numpy_gauss"]),
        )
    )
    internal = tuple(int(v) for v in state["python_internal"].tolist())
    random.setstate((int(state["python_version"]), internal, state["python_gauss"]))


def check_config(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    may_differ: Iterable[str] = (),
    path: str = "checkpoint",
) -> None:
    """Refuse to resume when the configuration changed (except the keys in ``may_differ``).

    Raises:
        ValueError: listing every differing key with its saved and current value; a different
            ``model`` gets its own message first (a checkpoint of another model).
    """
    if saved.get("model") != current.get("model"):
        raise ValueError(
            f"refusing to resume: {path} holds a {saved.get('model')!r} model, but this run "
            f"builds {current.get('model')!r}; use another out_dir or the same model"
        )
    skip = set(may_differ)
    keys = sorted((set(saved) | set(current)) - skip)
    diffs = [
        f"  {k}: checkpoint={saved.get(k, '<missing>')!r}, now={current.get(k, '<missing>')!r}"
        for k in keys
        if saved.get(k, "<missing>") != current.get(k, "<missing>")
    ]
    if diffs:
        raise ValueError(
            f"refusing to resume from {path}: the configuration differs\n"
            + "\n".join(diffs)
            + f"\n(only {sorted(skip)} may change on resume; start a new out_dir otherwise)"
        )
