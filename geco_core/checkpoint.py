"""Checkpoints that resume a training run exactly: atomic writes, ``weights_only`` loads.

A checkpoint is one ``dict`` of tensors, numbers, strings, lists and dicts only, so that
``torch.load(path, weights_only=True)`` (no pickled code) can read it back:

- ``model``, ``optimizer``, ``objective`` (GECO's λ, C_ma and t; a learned σ), state dicts;
- ``rng``: one entry per rank (torch CPU, CUDA if any, numpy, python ``random``), each a dict
  of tensors — see :func:`capture_rng_state`;
- ``step`` (the next step to run), ``wall_time`` (seconds trained so far), ``world_size``;
- ``config``: the run's configuration as a plain ``dict``, checked on resume by
  :func:`check_config` so that a run never silently continues with other settings.

Writes go through :func:`geco_base.io.atomic_write` (a temporary file beside ``path``, flushed,
fsync'ed, then renamed over it with ``os.replace``): a run killed mid-write (SIGKILL,
pre-emption) leaves the previous checkpoint intact.

Integrity: the file is a one-line header ``GECO-CHECKPOINT 3 <sha256>`` followed by the
``torch.save`` payload; :func:`load_checkpoint` verifies the sha256 before unpickling anything
and refuses a truncated, edited, foreign or older (unchecksummed) file with a
:class:`CheckpointError` whose one-line message names the file and what to do.

Format 3 (this version) is format 2 written by the engine whose optimiser is the fused Adam
(:func:`geco_core.train.make_optimizer`): the header changed so that an older geco_core, which
reads format 2 only, refuses these checkpoints rather than loading fused-Adam moments into
parameters of another memory layout (on CPU the fused kernel would read them in the wrong
order without an error). This version reads formats 2 and 3 (:data:`READABLE_FORMATS`).

Example:
    >>> import tempfile, os, torch
    >>> d = tempfile.mkdtemp()
    >>> save_checkpoint(os.path.join(d, "c.pt"), {"step": 3, "w": torch.ones(2)})
    >>> load_checkpoint(os.path.join(d, "c.pt"))["step"]
    3
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from geco_base.io import atomic_write

__all__ = [
    "CheckpointError",
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "check_config",
]

#: The format this version writes (see the module docstring).
FORMAT_VERSION = 3
#: The formats this version reads: 2 (the for-loop Adam's engine) and 3.
READABLE_FORMATS = (2, 3)
_MAGIC = b"GECO-CHECKPOINT"
_REMEDY = "start again with --overwrite (fit(..., overwrite=True)) or restore a good copy"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: unreadable, truncated, edited or foreign."""


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (stamped with ``format_version``) to ``path`` atomically
    (:func:`geco_base.io.atomic_write`), behind a header holding its sha256."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with atomic_write(path) as f:
        f.write(_MAGIC + b" %d " % FORMAT_VERSION + digest + b"\n")
        f.write(payload)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Verify and read a checkpoint: the sha256 of the payload must match its header, then
    ``torch.load(..., weights_only=True)`` (no code is unpickled).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is empty, truncated, edited, not a geco_core checkpoint, or of
            another format version; the message is one line naming the file and the remedy.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    with open(path, "rb") as f:
        blob = f.read()
    head, sep, payload = blob.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != _MAGIC:
        what = "is empty" if not blob else "is not a geco_core checkpoint (no header)"
        raise CheckpointError(f"checkpoint {path} {what}; {_REMEDY}")
    if parts[1] not in [str(v).encode() for v in READABLE_FORMATS]:
        raise CheckpointError(
            f"checkpoint {path} has format {parts[1].decode(errors='replace')!r}, this "
            f"geco_core reads {' and '.join(map(str, READABLE_FORMATS))}; {_REMEDY}"
        )
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise CheckpointError(
            f"checkpoint {path} is corrupt (sha256 of its content differs from its header); "
            f"{_REMEDY}"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # verified bytes that torch cannot read: still one line
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}); "
                              f"{_REMEDY}") from None
    if not isinstance(state, dict) or str(state.get("format_version")).encode() != parts[1]:
        raise CheckpointError(f"checkpoint {path} is not a geco_core training checkpoint; "
                              f"{_REMEDY}")
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
