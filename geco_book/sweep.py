"""Train a list of configs through the run store, in worker processes, with a progress bar.

:func:`run_sweep` skips every config the store already holds, trains the others in
``workers`` spawned processes (one torch thread each by default: two single-threaded runs
on two cores beat one two-threaded run at the book's batch sizes), and returns one
:class:`~geco_book.store.Run` per config, in order.

Interrupted sweeps continue where they stopped. A record is written only when its run has
finished, and an unfinished run resumes from its last checkpoint, so rerunning the same
sweep trains only what is missing. Workers never outlive the sweep: on Linux each asks the
kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), so even a SIGKILL of the
sweep leaves no stray processes, and each also watches its parent's pid; Ctrl-C or an error
terminates them before the exception propagates.

Example:
    >>> import tempfile
    >>> from geco_book.store import RunStore
    >>> from geco_core.train import TrainConfig
    >>> cfgs = [TrainConfig(model="conv_vae", dataset="micro-mnist", steps=2, batch_size=7,
    ...                     lr=1e-3, seed=s, progress=False, dataset_kwargs={"n": 7},
    ...                     model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16})
    ...         for s in (0, 1)]
    >>> store = RunStore(tempfile.mkdtemp(), tempfile.mkdtemp())
    >>> runs = run_sweep(cfgs, store=store, workers=1, progress=False)
    >>> [r.trained for r in runs], [r.trained for r in run_sweep(cfgs, store=store,
    ...                                                              progress=False)]
    ([True, True], [False, False])
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from geco_book.store import Run, RunStore, _as_config, default_store, run_key
from geco_core.checks import check_int

__all__ = ["SweepError", "run_sweep", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (None: unchanged); the
    chapters evaluate with the threads their runs trained with.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SweepError(RuntimeError):
    """A run of a sweep failed; the message names it and carries the worker's traceback."""


def _die_with_parent(parent: int) -> None:
    """Make this process die when ``parent`` does: the kernel's parent-death signal on Linux,
    plus a watcher thread that polls the parent's pid (other systems, and a parent that died
    before the signal was armed)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _worker(parent: int, threads: int | None, records: str, checkpoints: str, tasks, results):
    _die_with_parent(parent)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    store = RunStore(records, checkpoints)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, config, command = item
        try:
            run = store.get_or_train(config, command=command)
            results.put((index, run.key, run.trained, None))
        except BaseException:  # report every failure, then stop this worker
            results.put((index, None, False, traceback.format_exc()))
            return


def run_sweep(
    configs: Sequence[Any],
    *,
    store: RunStore | None = None,
    workers: int = 2,
    threads: int | None = 1,
    progress: bool = True,
    desc: str = "sweep",
    command: str | None = None,
) -> list[Run]:
    """Train (or load) every config; one :class:`~geco_book.store.Run` per config, in order.

    Args:
        configs: :class:`geco_core.train.TrainConfig` objects or dicts.
        store: default :func:`~geco_book.store.default_store`.
        workers: processes training at once (1: train in this process).
        threads: torch intra-op threads per worker (None: torch's default).
        progress: a tqdm bar over the runs; desc: its label.
        command: kept in each new record's provenance.

    Raises:
        SweepError: a run failed (its traceback is in the message); runs already finished
            stay stored.
    """
    from tqdm import tqdm

    check_int(workers, "workers")
    if threads is not None:
        check_int(threads, "threads")
    store = default_store() if store is None else store
    cfgs = [_as_config(c) for c in configs]
    keys = [run_key(c) for c in cfgs]
    out: list[Run | None] = [store.load(k) for k in keys]
    todo = [i for i, r in enumerate(out) if r is None]
    first = {}
    for i in todo:  # the same config twice trains once
        first.setdefault(keys[i], i)
    unique = sorted(first.values())
    bar = tqdm(total=len(cfgs), initial=len(cfgs) - len(todo), desc=desc, disable=not progress,
               file=sys.stderr)
    try:
        if unique and (workers == 1 or len(unique) == 1):
            with torch_threads(threads):  # in this process: the same threads as a worker's
                for i in unique:
                    bar.set_postfix_str(keys[i])
                    out[i] = store.get_or_train(cfgs[i], command=command)
                    bar.update(1)
        elif unique:
            _parallel(cfgs, unique, out, store, workers, threads, command, bar)
        for i in todo:
            if out[i] is None:  # a duplicate of a config trained above
                out[i] = store.load(keys[i])
                bar.update(1)
    finally:
        bar.close()
    return out  # type: ignore[return-value]


def _parallel(cfgs, unique, out, store, workers, threads, command, bar) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for i in unique:
        tasks.put((i, cfgs[i].to_dict(), command))
    n = min(workers, len(unique))
    for _ in range(n):
        tasks.put(None)
    procs = [
        ctx.Process(
            target=_worker,
            args=(os.getpid(), threads, str(store.records), str(store.checkpoints), tasks,
                  results),
            daemon=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    try:
        remaining = set(unique)
        while remaining:
            try:
                index, key, trained, err = results.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise SweepError("every worker exited before the sweep finished") from None
                continue
            if err is not None:
                raise SweepError(f"run {run_key(cfgs[index])} failed:\n{err}")
            remaining.discard(index)
            run = store.load(key)
            run.trained = trained
            out[index] = run
            bar.set_postfix_str(key)
            bar.update(1)
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
