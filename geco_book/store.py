"""The run store: every chapter trains through :func:`get_or_train` (train-or-load by a key).

A run is keyed by :func:`run_key`: the sha256 of the training config (the fields that change
the numbers), the data source actually used, the classifier asset when a constraint reads it,
and :data:`geco_core.train.ENGINE_VERSION`, which the library bumps whenever a change alters
the numbers a config produces. Nothing else makes a stored run stale: editing a comment, a
docstring, the CLI or a figure keeps every result (a smoke-scale regression test pins the
engine's numbers so that a numerical change without a version bump fails the tests).

Two places per run:

- the **record**, small and committed, under ``cache_root()/runs/<key>/``: ``record.json``
  (key, engine version, config, data, final metrics, wall time, provenance, file sha256s),
  ``metrics.jsonl`` (the training log) and ``eval/`` (the chapters' evaluations of the run,
  each keyed by its own settings: :meth:`Run.evaluation`);
- the **checkpoint**, large and never committed, under ``runs_root()/<key>/`` (the engine's
  ``out_dir``). A chapter that finds every evaluation it needs in the record never loads it.

A run killed mid-training resumes from its last checkpoint on the next call; a record is
written last, atomically, so a run is either stored whole or not at all. A longer version of a
stored run (the same config with more ``steps``) continues from the shorter run's checkpoint
(:meth:`RunStore.prefix_of`), so measures against steps cost no more than the longest run.

CLI::

    python -m geco_book.store list            # stored runs, one line each
    python -m geco_book.store train KEY [...]  # (re)train stored runs, e.g. to get checkpoints

Example:
    >>> import tempfile
    >>> from geco_core.train import TrainConfig
    >>> cfg = TrainConfig(model="conv_vae", dataset="micro-mnist", steps=2, batch_size=7,
    ...                   lr=1e-3, progress=False, dataset_kwargs={"n": 7},
    ...                   model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16})
    >>> store = RunStore(tempfile.mkdtemp(), tempfile.mkdtemp())
    >>> run = store.get_or_train(cfg)
    >>> run.trained, store.get_or_train(cfg).trained, run.step
    (True, False, 2)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geco_base.checks import OneLineParser, check_choice
from geco_base.io import write_bytes, write_text
from geco_book.integrity import (
    canonical,
    check_complete_log,
    evaluation_sha,
    expected_log_steps,
    final_mismatch,
    read_evaluation,
    sha256_bytes,
)
from geco_book.paths import cache_root, runs_root
from geco_book.provenance import provenance

__all__ = [
    "MissingCheckpointError",
    "NO_TRAINING_ENV",
    "TrainingDiverged",
    "TrainingRefused",
    "check_key",
    "record_key",
    "NON_KEY_FIELDS",
    "Run",
    "RunStore",
    "default_store",
    "get_or_train",
    "run_key",
    "store_for",
]

#: TrainConfig fields that do not change a run's numbers, left out of :func:`run_key`: where
#: files go, progress bars, the checkpoint period (resumes are bitwise exact within one
#: engine), the device choice, how the data is found (the data *source* that was found is in
#: the key), and whether the model is compiled (the same function in fused kernels: equal to
#: the eager run within float rounding, like another device or thread count —
#: tests/geco_core/train/test_compile.py). ``precision`` is in the key: bfloat16 gives other
#: numbers, not float rounding (its default, float32, is left out like every default, so the
#: keys stored before the field existed stand).
NON_KEY_FIELDS: tuple[str, ...] = (
    "out_dir",
    "progress",
    "ckpt_every",
    "device",
    "data_root",
    "download",
    "compile",
)

#: Constraints that read the pretrained MNIST classifier (its sha256 joins their key).
_CLASSIFIER_CONSTRAINTS = ("cla", "fre")
_KEY_RE = re.compile(r"[0-9a-f]{16}")
#: An evaluation's name (:meth:`Run.evaluation`): one file-name component, never a path.
_EVAL_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_MNIST_DATASETS = ("mnist", "micro-mnist", "mnist-triplets", "mnist-sum", "mnist-sum-hard",
                   "mnist-rotate", "color-mnist")


class TrainingDiverged(ValueError):
    """A run ended with non-finite final metrics (NaN or ±inf): the store records nothing."""


class MissingCheckpointError(FileNotFoundError):
    """A stored run's checkpoint is needed but absent (it lives outside the repository)."""


#: Set (not to ``0``), the store trains nothing: a run it lacks raises :class:`TrainingRefused`
#: (renders from the committed records alone, e.g. ``ci/colab_sim.py`` at the cpu profile).
NO_TRAINING_ENV = "GECO_NO_TRAINING"


class TrainingRefused(RuntimeError):
    """A run the store lacks was asked for while ``$GECO_NO_TRAINING`` is set."""


@functools.lru_cache(maxsize=8)
def _mnist_source(data_root: str | None, download: bool | None) -> str:
    from data_builders import load_mnist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mnist(split="test", root=data_root, download=download).source


@functools.lru_cache(maxsize=4)
def _classifier_sha256(source: str) -> str:
    from geco_core.models.classifier import classifier_sha256

    return classifier_sha256(source)


def _as_config(config: Any):
    from geco_core.train import TrainConfig

    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return TrainConfig.from_dict(config)
    raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    from geco_core.train import TrainConfig

    return TrainConfig.defaults()


def key_fields(
    config: Any, *, data_source: str | None = None, engine_version: int | None = None
) -> dict[str, Any]:
    """What :func:`run_key` hashes: the config's fields that differ from their defaults,
    without :data:`NON_KEY_FIELDS`; the data source; the classifier's sha256 (CLA/FRE runs);
    and the engine version. ``data_source`` and ``engine_version`` replace the ones this
    machine would use (:func:`record_key` checks a record by its own).

    Leaving default-valued fields out keeps every stored key when the engine gains a field
    with a default. Changing the *value* of an existing default changes the numbers of the
    configs that rely on it, so it is a numerical change of the engine: bump
    :data:`geco_core.train.ENGINE_VERSION` with it.
    """
    from geco_core.train import ENGINE_VERSION

    cfg = _as_config(config)
    defaults = _defaults()
    d = {k: v for k, v in cfg.to_dict().items()
         if k not in NON_KEY_FIELDS and not (k in defaults and v == defaults[k])}
    if data_source is not None:
        d["data_source"] = data_source
    elif cfg.dataset in _MNIST_DATASETS:
        d["data_source"] = _mnist_source(cfg.data_root, cfg.download)
    else:
        d["data_source"] = cfg.dataset
    if cfg.objective == "geco" and any(c in _CLASSIFIER_CONSTRAINTS for c in cfg.constraints):
        d["classifier_sha256"] = _classifier_sha256(d["data_source"])
    d["engine_version"] = ENGINE_VERSION if engine_version is None else engine_version
    return d


def run_key(config: Any, *, data_source: str | None = None) -> str:
    """The store key of a training config: 16 hex digits of a sha256 (see :func:`key_fields`;
    ``data_source``: the key on that MNIST source instead of this machine's).

    Example:
        >>> from geco_core.train import TrainConfig
        >>> a = TrainConfig(dataset="micro-mnist", progress=False)
        >>> b = TrainConfig(dataset="micro-mnist", progress=True, out_dir="/elsewhere")
        >>> run_key(a) == run_key(b), run_key(a) == run_key(TrainConfig(dataset="micro-mnist",
        ...                                                              seed=1))
        (True, False)
    """
    return sha256_bytes(canonical(key_fields(config, data_source=data_source)).encode())[:16]


def check_key(key: Any) -> str:
    """``key`` if it is a run key (16 lowercase hex digits, as :func:`run_key` makes them and
    ``python -m geco_book.store list`` prints them); ``ValueError`` naming it otherwise, so
    that no other string (``../x``, an absolute path) ever becomes a path in the store.

    Example:
        >>> check_key("0123456789abcdef")
        '0123456789abcdef'
        >>> check_key("../../etc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: key: '../../etc' is not a run key (16 hex digits, ...)
    """
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(
            f"key: {key!r} is not a run key (16 hex digits, as `python -m geco_book.store "
            "list` prints)"
        )
    return key


def record_key(record: Mapping[str, Any]) -> str:
    """The key a record's own config hashes to, with the data source and engine version the
    record says it was trained with (so a record made on the official split checks on a
    machine that only has the fallback). Raises ``ValueError`` when the record holds no valid
    config."""
    try:
        cfg = _as_config(record["config"])
        fields = key_fields(cfg, data_source=record["data"]["source"],
                            engine_version=int(record["engine_version"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the record holds no valid config ({type(e).__name__}: {e})") from e
    return sha256_bytes(canonical(fields).encode())[:16]


@dataclass
class Run:
    """One stored run: its record (always) and its checkpoint (when present).

    Attributes:
        key: :func:`run_key`; record_dir: the committed folder; run_dir: the checkpoint folder.
        record: the parsed ``record.json``; trained: whether this call trained it.
    """

    key: str
    record_dir: Path
    run_dir: Path
    record: dict[str, Any]
    trained: bool = False
    _log: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def config(self):
        """The run's :class:`geco_core.train.TrainConfig`."""
        from geco_core.train import TrainConfig

        return TrainConfig.from_dict(self.record["config"])

    @property
    def metrics(self) -> dict[str, float]:
        """The last training step's metrics."""
        return dict(self.record["final"])

    @property
    def step(self) -> int:
        return int(self.record["step"])

    @property
    def wall_time(self) -> float:
        return float(self.record["wall_time_s"])

    def log(self):
        """The training log (a DataFrame, one row every ``log_every`` steps): read once per
        :class:`Run` (the record is immutable once stored), a copy returned each call."""
        from geco_core.train import read_log

        if self._log is None:
            self._log = read_log(self.record_dir / "metrics.jsonl")
        return self._log.copy()

    def log_gaps(self) -> str | None:
        """None when the committed log holds every step the engine logs in this run
        (:func:`expected_log_steps`), else what is missing (records made before the store
        checked this may lack rows)."""
        steps = [int(json.loads(line)["step"])
                 for line in (self.record_dir / "metrics.jsonl").read_text().splitlines() if line]
        want = expected_log_steps(self.step, int(self.record["config"]["log_every"]))
        if steps == want:
            return None
        return f"log holds {len(steps)} of the {len(want)} rows a whole run logs"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def load_model(self, device: str = "cpu"):
        """The trained model from the checkpoint; :class:`MissingCheckpointError` names the
        command that recreates it when it is absent (e.g. on a fresh clone)."""
        from geco_core.train import load_run

        if not self.checkpoint_path.is_file():
            raise MissingCheckpointError(
                f"run {self.key}: no checkpoint at {self.checkpoint_path} (checkpoints are not "
                f"committed); recreate it with: python -m geco_book.store train {self.key} (from "
                f"any folder; in a notebook cell, after a '!')"
            )
        model, _objective, config, step = load_run(self.run_dir, device=device)
        mine, theirs = self.record["config"], config.to_dict()
        differ = sorted(k for k in mine if k not in NON_KEY_FIELDS and mine[k] != theirs.get(k))
        if differ or step != self.step:
            what = f"config fields {differ}" if differ else f"step {step} (record: {self.step})"
            raise ValueError(
                f"{self.checkpoint_path}: the checkpoint is not run {self.key}'s ({what} "
                f"differ from its record); delete it and recreate it with: python -m "
                f"geco_book.store train {self.key}"
            )
        return model

    def has_evaluation(self, name: str, settings: Mapping[str, Any]) -> bool:
        """Whether :meth:`evaluation` ``(name, settings)`` is cached in the record."""
        return self._evaluation_base(name, settings).with_suffix(".json").is_file()

    def _evaluation_base(self, name: str, settings: Mapping[str, Any]) -> Path:
        if not isinstance(name, str) or not _EVAL_NAME_RE.fullmatch(name):
            raise ValueError(f"name: {name!r} is not an evaluation name (letters, digits, '_', "
                             "'-' and '.', not starting with '.'): it becomes a file name "
                             "inside the record")
        tag = sha256_bytes(canonical({"name": name, **dict(settings)}).encode())[:12]
        return self.record_dir / "eval" / f"{name}-{tag}"

    def evaluation(
        self,
        name: str,
        settings: Mapping[str, Any],
        compute: Callable[[Run], tuple[dict[str, Any], dict[str, np.ndarray]]],
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """An evaluation of this run, cached in the record under ``eval/``.

        Keyed by ``name`` and the canonical JSON of ``settings`` (include an evaluation
        version there). ``compute(run)`` returns ``(metrics, arrays)``: JSON-able numbers and
        numpy arrays; it is called only when the cache lacks this evaluation.
        """
        base = self._evaluation_base(name, settings)
        jpath, npath = base.with_suffix(".json"), base.with_suffix(".npz")
        if jpath.is_file():
            entry = read_evaluation(jpath)
            arrays: dict[str, np.ndarray] = {}
            if entry.get("npz_sha256"):
                if not npath.is_file():
                    raise ValueError(f"{npath}: missing, though {jpath.name} names its sha256; "
                                     "delete both to recompute them")
                blob = npath.read_bytes()
                if sha256_bytes(blob) != entry["npz_sha256"]:
                    raise ValueError(f"{npath}: sha256 differs from {jpath.name}; delete both")
                with np.load(io.BytesIO(blob)) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            return entry["metrics"], arrays
        metrics, arrays = compute(self)
        entry = {"name": name, "settings": dict(settings), "metrics": metrics, "npz_sha256": None}
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            write_bytes(npath, buf.getvalue())
            entry["npz_sha256"] = sha256_bytes(buf.getvalue())
        entry = json.loads(json.dumps(entry, default=float))
        entry["sha256"] = evaluation_sha(entry)
        write_text(jpath, json.dumps(entry, indent=1) + "\n")
        return json.loads(json.dumps(metrics, default=float)), arrays


class RunStore:
    """Records under ``records`` (committed) and checkpoints under ``checkpoints``.

    Args:
        records: default ``cache_root()/runs``; checkpoints: default :func:`runs_root`.
    """

    def __init__(self, records: str | Path | None = None, checkpoints: str | Path | None = None):
        self.records = Path(records) if records is not None else cache_root() / "runs"
        self.checkpoints = Path(checkpoints) if checkpoints is not None else runs_root()

    def __repr__(self) -> str:
        return f"RunStore(records={str(self.records)!r}, checkpoints={str(self.checkpoints)!r})"

    def _run(self, key: str, record: dict[str, Any], trained: bool = False) -> Run:
        return Run(key, self.records / key, self.checkpoints / key, record, trained)

    def get(self, config: Any) -> Run | None:
        """The stored run of ``config``, or None when it has none (or a damaged one)."""
        key = run_key(config)
        return self.load(key)

    def load(self, key: str) -> Run | None:
        """The stored run ``key``, or None when absent or damaged (:meth:`damage`)."""
        check_key(key)
        record, why = self._read(key)
        return None if why else self._run(key, record)

    def damage(self, key: str) -> str | None:
        """Why the stored run ``key`` is not served (None when it is, or is absent): a record
        or log that cannot be read, a log whose sha256 is not the record's, a record of
        another key, or a config that does not hash to its key (an edited record)."""
        check_key(key)
        why = self._read(key)[1]
        return None if why == "absent" else why

    def _read(self, key: str) -> tuple[dict[str, Any], str | None]:
        d = self.records / key
        if not (d / "record.json").is_file():
            return {}, "absent"
        try:
            record = json.loads((d / "record.json").read_text())
            log = (d / "metrics.jsonl").read_bytes()
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
            return {}, f"unreadable ({type(e).__name__}: {e})"
        named = record.get("key") if isinstance(record, dict) else None
        if named != key:
            return {}, f"record.json names key {named!r}"
        files = record.get("files")
        if not isinstance(files, dict) or files.get("metrics.jsonl") != sha256_bytes(log):
            return {}, "metrics.jsonl does not match the sha256 in record.json"
        why = final_mismatch(record, log)
        if why:
            return {}, why
        try:
            actual = record_key(record)
        except ValueError as e:
            return {}, str(e)
        if actual != key:
            return {}, f"its config hashes to {actual}, not to its key (an edited record)"
        return record, None

    def keys(self) -> list[str]:
        """Keys of every stored run (folders named like a key, holding a record)."""
        if not self.records.is_dir():
            return []
        return sorted(p.name for p in self.records.iterdir()
                      if _KEY_RE.fullmatch(p.name) and (p / "record.json").is_file())

    def get_or_train(self, config: Any, *, command: str | None = None) -> Run:
        """The stored run of ``config``, training it first when the store has none.

        Training resumes from the run's checkpoint when a killed attempt left one, writes the
        checkpoint under :attr:`checkpoints` and the record (last, atomically) under
        :attr:`records`. ``command`` is kept in the provenance.
        """
        cfg = _as_config(config)
        key = run_key(cfg)
        run = self.load(key)
        if run is not None:
            return run
        return self._train(key, cfg, command)

    def forget(self, config: Any) -> None:
        """Delete the record and the checkpoint of ``config``'s run (if any)."""
        key = run_key(config)
        shutil.rmtree(self.records / key, ignore_errors=True)
        shutil.rmtree(self.checkpoints / key, ignore_errors=True)

    def retrain(self, key: str) -> Run:
        """Train the stored run ``key`` again from its recorded config (e.g. to recreate its
        checkpoint); the record is rewritten.

        The engine reproduces a record bitwise only when nothing that reorders its float
        operations changed since (``ENGINE_VERSION``'s policy, :mod:`geco_core.train.config`):
        when the new final numbers differ from the old record's, the record's cached
        evaluations (``eval/``, computed from the earlier checkpoint) are deleted with it, so
        that a chapter recomputes them from the model that now exists.
        """
        run = self.load(key)
        if run is None:
            why = self.damage(key)
            raise ValueError(f"key: no stored run {key!r} in {self.records}"
                             + (f" (damaged: {why})" if why else ""))
        shutil.rmtree(self.checkpoints / key, ignore_errors=True)
        old = _trained_numbers(run.record["final"])
        new = self._train(key, run.config, f"python -m geco_book.store train {key}", reuse=False)
        if _trained_numbers(new.record["final"]) != old:
            shutil.rmtree(self.records / key / "eval", ignore_errors=True)
        return new

    def prefix_of(self, config: Any) -> Run | None:
        """The longest stored run that is a prefix of ``config``: the same config but fewer
        ``steps``, trained on the same data source by the same engine version, with its
        checkpoint present. The engine's trajectory does not depend on
        the total number of steps (no schedule reads it) and resumes are bitwise exact (a
        checkpoint of the earlier for-loop-Adam engine: to float rounding), so
        training ``config`` from that checkpoint gives the numbers of a run from scratch
        (bitwise when both run eager; to float rounding when ``compile``'s auto rule compiles
        one and not the other — it looks at the steps still to go)."""
        cfg = _as_config(config)
        want = key_fields(cfg)
        want.pop("steps", None)
        best: Run | None = None
        for key in self.keys():
            run = self.load(key)
            if run is None or not run.checkpoint_path.is_file():
                continue
            other = run.config
            if other.steps >= cfg.steps or (best is not None and other.steps <= best.step):
                continue
            # The donor's own data source and engine version, as recorded: computing them for
            # this machine would let a run trained on the 10k fallback continue as a run on
            # the official split once that appears (and the resume would then refuse it).
            have = key_fields(other, data_source=run.record["data"]["source"],
                              engine_version=int(run.record["engine_version"]))
            have.pop("steps", None)
            if have == want and run.step == other.steps:
                best = run
        return best

    def _train(self, key: str, cfg: Any, command: str | None, reuse: bool = True) -> Run:
        """Train ``key`` holding its lock; with ``reuse``, a record another process wrote
        while this one waited for the lock is returned instead."""
        if os.environ.get(NO_TRAINING_ENV, "").strip() not in ("", "0"):
            raise TrainingRefused(f"run {key} ({cfg.objective} {cfg.model} on {cfg.dataset}, "
                                  f"{cfg.steps} steps) is not in the store {self.records} and "
                                  f"${NO_TRAINING_ENV} forbids training it")
        out = self.checkpoints / key
        out.mkdir(parents=True, exist_ok=True)
        with _key_lock(out / ".lock", key):
            done = self.load(key) if reuse else None
            return done if done is not None else self._train_locked(key, cfg, command)

    def _train_locked(self, key: str, cfg: Any, command: str | None) -> Run:
        from geco_core.train import DataMismatchError, fit

        out = self.checkpoints / key
        cfg = dataclasses.replace(cfg, out_dir=str(out))
        resume = (out / "checkpoint.pt").is_file()
        donor = None if resume else self.prefix_of(cfg)
        if donor is not None:  # continue a shorter run of the same config
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(donor.checkpoint_path, out / "checkpoint.pt")
            shutil.copyfile(donor.run_dir / "metrics.jsonl", out / "metrics.jsonl")
            resume = True
        try:
            res = _fit_quietly(fit, cfg, resume)
        except DataMismatchError as e:
            if donor is not None:
                raise
            # A partial checkpoint in this key's folder trained on other data than the key's
            # cannot belong to this run (the key holds the data source): left by an interrupted
            # run of an earlier store that continued across data sources. Kept aside, not
            # deleted; the run trains from the start.
            stale = out / f"checkpoint.stale-{int(time.time())}.pt"
            (out / "checkpoint.pt").replace(stale)
            (out / "metrics.jsonl").unlink(missing_ok=True)
            warnings.warn(f"run {key}: {e}; moved it to {stale.name} and training from the "
                          "start", RuntimeWarning, stacklevel=2)
            resume = False
            res = _fit_quietly(fit, cfg, resume)
        log = Path(res.log_path).read_bytes()
        check_complete_log(log, cfg, int(res.step), Path(res.log_path))
        bad = {k: v for k, v in res.metrics.items() if not math.isfinite(float(v))}
        if bad:  # a diverged run is not a result: never recorded, never served
            raise TrainingDiverged(f"run {key}: training ended with non-finite metrics {bad}; "
                                   "nothing recorded (lower the lr, or set max_grad_norm)")
        fields = key_fields(cfg)
        record = {
            "key": key,
            "engine_version": fields["engine_version"],
            "config": {k: v for k, v in cfg.to_dict().items() if k != "out_dir"},
            "data": {"dataset": cfg.dataset, "source": fields["data_source"]},
            "final": {k: float(v) for k, v in res.metrics.items()},
            "step": int(res.step),
            "wall_time_s": round(float(res.wall_time), 3),
            "resumed": resume,
            "continued_from": None if donor is None else donor.key,
            "provenance": provenance(command, device_used=str(res.device)),
            "files": {"metrics.jsonl": sha256_bytes(log)},
        }
        d = self.records / key
        write_bytes(d / "metrics.jsonl", log)
        write_text(d / "record.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
        return self._run(key, record, trained=True)


def _fit_quietly(fit, cfg, resume: bool):
    with warnings.catch_warnings():
        # The fallback to the vendored MNIST split is recorded as the run's data source.
        warnings.simplefilter("ignore", UserWarning)
        return fit(cfg, resume=resume, overwrite=not resume)


@contextlib.contextmanager
def _key_lock(path: Path, key: str):
    """Hold an exclusive lock on ``path`` (POSIX ``flock``) while run ``key`` trains: a second
    process asking for the same key waits (saying so on stderr) and then finds the record.
    The kernel releases the lock when its holder dies, so a killed run never blocks."""
    import fcntl

    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"run {key}: another process is training it (lock {path}); waiting for it",
                  file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _trained_numbers(final: Mapping[str, float]) -> dict[str, float]:
    """A record's final metrics without the wall time (the one that differs between runs)."""
    return {k: v for k, v in final.items() if k != "wall_time"}


def store_for(profile: str) -> RunStore:
    """The store a chapter uses at ``profile``: the book's committed store for ``cpu`` and
    ``gpu``; for ``smoke`` (CI's quick run) a throwaway store under ``runs_root()/smoke``, so
    smoke results never mix with the book's.

    Example:
        >>> store_for("smoke").records.parent.name
        'smoke'
    """
    from geco_book.profiles import PROFILES

    check_choice(profile, "profile", PROFILES)
    if profile == "smoke":
        return RunStore(runs_root() / "smoke" / "records", runs_root() / "smoke" / "checkpoints")
    return default_store()


def default_store() -> RunStore:
    """The book's store: records in ``cache_root()/runs``, checkpoints in ``runs_root()``."""
    return RunStore()


def get_or_train(config: Any, *, command: str | None = None) -> Run:
    """:meth:`RunStore.get_or_train` on :func:`default_store`."""
    return default_store().get_or_train(config, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m geco_book.store", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="stored runs, one line each")
    t = sub.add_parser("train", help="(re)train stored runs from their recorded configs")
    t.add_argument("keys", nargs="+")
    args = p.parse_args(argv)
    store = default_store()
    if args.cmd == "list":
        for key in store.keys():
            run = store.load(key)
            if run is None:
                print(f"{key}  damaged: {store.damage(key)}; delete {store.records / key}")
                continue
            c = run.record["config"]
            ckpt = "ckpt" if run.checkpoint_path.is_file() else "no-ckpt"
            gaps = run.log_gaps()
            print(f"{key}  {c['model']:9s} {c['dataset']:12s} {c['objective']:8s} "
                  f"steps={run.step} seed={c['seed']} {ckpt}" + (f"  ({gaps})" if gaps else ""))
        return 0
    for key in args.keys:
        try:
            check_key(key)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if store.load(key) is None:
            why = store.damage(key)
            print(f"error: key: no stored run {key!r} in {store.records}"
                  + (f" (damaged: {why})" if why else ""), file=sys.stderr)
            return 2
    for key in args.keys:
        before = _trained_numbers(store.load(key).record["final"])
        run = store.retrain(key)
        after = _trained_numbers(run.record["final"])
        note = ""
        if after != before:
            diff = max((abs(v - before[k]) / max(abs(before[k]), 1e-12)
                        for k, v in after.items() if k in before), default=0.0)
            note = (f"; final metrics differ from the earlier record's (largest relative "
                    f"difference {diff:.1e}): its cached evaluations were deleted")
        print(f"{key}: trained {run.step} steps in {run.wall_time:.1f} s{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
