"""Resuming a run: the checks that a checkpoint belongs to the run that continues it.

:func:`load_resumable` refuses a checkpoint of another configuration (except the fields of
:data:`~geco_core.train.config.RESUME_MAY_DIFFER`), another world size or engine version, or a
forged step; :func:`check_data` refuses one trained on other data than the run loads now.
Every refusal is a one-line ``ValueError`` starting "refusing to resume" (the CLI prefixes
``--resume:``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geco_core import checkpoint as ckpt
from geco_core.train.config import ENGINE_VERSION, RESUME_MAY_DIFFER, TrainConfig

__all__ = ["DataMismatchError", "check_data", "load_resumable"]


class DataMismatchError(ValueError):
    """A resume was refused: the checkpoint was trained on other data than ``fit`` now loads
    (its recorded dataset, split, source, size or sha256 differ)."""


def check_data(saved: Mapping[str, Any], data_record: Mapping[str, Any], ckpt_path: Path) -> None:
    """Refuse to resume on other data than the checkpoint's (a one-line message naming each
    difference). ``data_root``, ``download`` and ``$GECO_DATA`` may change between sessions —
    what must not change is the data they lead to."""
    before = saved.get("data")
    if before is None:
        warnings.warn(
            f"{ckpt_path} records no data fingerprint (written before geco_core recorded one); "
            "resuming without checking that the training data are the same",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    keys = ("dataset", "split", "source", "n", "sha256")

    def show(k: str, v: Any) -> str:
        return f"{v[:12]}…" if k == "sha256" and isinstance(v, str) else repr(v)

    diffs = [
        f"{k} {show(k, before.get(k))} -> {show(k, data_record.get(k))}"
        for k in keys
        if before.get(k) != data_record.get(k)
    ]
    if diffs:
        raise DataMismatchError(
            f"refusing to resume from {ckpt_path}: the training data differ from the "
            f"checkpoint's ({'; '.join(diffs)}); check data_root/--data-root, $GECO_DATA and "
            "download, or start a new out_dir"
        )


def load_resumable(ckpt_path: Path, cfg: TrainConfig, world: int) -> dict[str, Any]:
    """The checkpoint to resume from, after checking it belongs to this run."""
    saved = ckpt.load_checkpoint(ckpt_path)
    # A field the engine gained after the checkpoint was written counts as its default (the
    # run store keys runs the same way: a new field at its default changes no run).
    defaults = TrainConfig.defaults()
    saved_cfg = {**{k: v for k, v in defaults.items() if k not in saved["config"]},
                 **saved["config"]}
    ckpt.check_config(saved_cfg, cfg.to_dict(), RESUME_MAY_DIFFER, path=str(ckpt_path))
    if saved.get("world_size", 1) != world:
        raise ValueError(
            f"refusing to resume: {ckpt_path} was written by a run with world_size="
            f"{saved.get('world_size', 1)}, this run has {world} (the batches and RNG "
            "streams depend on it)"
        )
    if saved.get("engine_version") != ENGINE_VERSION:
        raise ValueError(
            f"refusing to resume: {ckpt_path} was written by engine version "
            f"{saved.get('engine_version')}, this is {ENGINE_VERSION} (the numbers differ); "
            "start a new out_dir"
        )
    step = saved.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= cfg.steps:
        raise ValueError(
            f"refusing to resume: {ckpt_path} says it stopped at step {step!r}, which is not "
            f"an int in [0, steps={cfg.steps}] (a forged or damaged checkpoint, or a run "
            "longer than this one); start a new out_dir or pass overwrite"
        )
    return saved
