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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from geco_base.checks import check_int
from geco_book.paths import shown
from geco_book.store import Run, RunStore, _as_config, default_store, run_key

__all__ = ["SweepError", "run_chains", "run_sweep", "torch_threads"]


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


#: How long the parent waits for the first spawned worker to report that it started.
START_TIMEOUT_S = 300.0
_STARTED = -1


def _worker(parent: int, threads: int | None, records: str, checkpoints: str, tasks, results,
            after):
    _die_with_parent(parent)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    store = RunStore(records, checkpoints)
    results.put((_STARTED, None, None))  # the parent waits at most START_TIMEOUT_S for this
    while True:
        item = tasks.get()
        if item is None:
            return
        index, chain, command = item
        try:
            runs = _train_chain(store, chain, command, after)
            results.put((index, [(run.key, run.trained) for run in runs], None))
        except BaseException:  # report every failure, then stop this worker
            results.put((index, None, traceback.format_exc()))
            return


def _train_chain(store: RunStore, chain, command, after, bar=None) -> list[Run]:
    """Train (or load) ``chain``'s configs in order, calling ``after`` on each run."""
    runs = []
    for config in chain:
        if bar is not None:
            bar.set_postfix_str(run_key(config))
        run = store.get_or_train(config, command=command)
        if after is not None:
            after(run)
        runs.append(run)
        if bar is not None:
            bar.update(1)
    return runs


def run_sweep(
    configs: Sequence[Any],
    *,
    store: RunStore | None = None,
    workers: int = 2,
    threads: int | None = 1,
    progress: bool = True,
    desc: str = "sweep",
    command: str | None = None,
    after: Callable[[Run], Any] | None = None,
) -> list[Run]:
    """Train (or load) every config; one :class:`~geco_book.store.Run` per config, in order.

    Args:
        configs: :class:`geco_core.train.TrainConfig` objects or dicts.
        store: default :func:`~geco_book.store.default_store`.
        workers: processes training at once (1: train in this process).
        threads: torch intra-op threads per worker (None: torch's default).
        progress: a tqdm bar over the runs, shown when some run trains; desc: its label.
        command: kept in each new record's provenance.
        after: called with each run, trained or loaded, in the process that trained it
            (:func:`run_chains`).

    Raises:
        SweepError: a run failed (its traceback is in the message); runs already finished
            stay stored.
    """
    return [chain[0] for chain in run_chains(
        [[c] for c in configs], store=store, workers=workers, threads=threads,
        progress=progress, desc=desc, command=command, after=after)]


def run_chains(
    chains: Sequence[Sequence[Any]],
    *,
    store: RunStore | None = None,
    workers: int = 2,
    threads: int | None = 1,
    progress: bool = True,
    desc: str = "sweep",
    command: str | None = None,
    after: Callable[[Run], Any] | None = None,
) -> list[list[Run]]:
    """Train (or load) chains of configs: one worker trains a chain's configs in order, so a
    chain of one config at growing ``steps`` (the stages of a run) continues each stage from
    the previous one's checkpoint (:meth:`~geco_book.store.RunStore.prefix_of`; every stage's
    ``steps`` a multiple of ``log_every``, so that the continued log is a whole run's). Chains
    are handed out in order (put the longest first).

    ``after`` (a picklable callable: a module-level function or a ``functools.partial`` of
    one) is called with every run of a chain, trained or loaded, in the process that trained
    it and right after it, while its checkpoint is on this machine: the place for the
    evaluations a chapter caches in the run's record, so that they are committed with it and
    no later machine needs the checkpoint. A chain whose runs are all stored and need nothing
    from ``after`` costs only ``after``'s cache lookups.

    Example:
        >>> import tempfile
        >>> from geco_book.store import RunStore
        >>> from geco_core.train import TrainConfig
        >>> stages = [TrainConfig(model="conv_vae", dataset="micro-mnist", steps=n,
        ...                       batch_size=7, lr=1e-3, log_every=1, progress=False,
        ...                       dataset_kwargs={"n": 7}, model_kwargs={"latent_dim": 2,
        ...                       "channels": [4, 8], "hidden": 16}) for n in (2, 4)]
        >>> store = RunStore(tempfile.mkdtemp(), tempfile.mkdtemp())
        >>> [[r.step for r in chain] for chain in run_chains([stages], store=store,
        ...                                                   workers=1, progress=False)]
        [[2, 4]]
        >>> store.load(run_key(stages[1])).record["continued_from"] == run_key(stages[0])
        True
    """
    from tqdm import tqdm

    check_int(workers, "workers")
    if threads is not None:
        check_int(threads, "threads")
    store = default_store() if store is None else store
    cfgs = [[_as_config(c) for c in chain] for chain in chains]
    if any(not chain for chain in cfgs):
        raise ValueError("chains: every chain needs at least one config")
    out: list[list[Run] | None] = [None] * len(cfgs)
    total = sum(len(c) for c in cfgs)
    note = _missing_note([c for chain in cfgs for c in chain], store, workers, desc)
    if note:
        print(note, file=sys.stderr, flush=True)
    # A bar only when something trains: a chapter rendering from its records stays quiet.
    bar = tqdm(total=total, desc=desc, disable=not progress or note is None, file=sys.stderr)
    try:
        if workers == 1 or len(cfgs) == 1:
            with torch_threads(threads):  # in this process: the same threads as a worker's
                for i, chain in enumerate(cfgs):
                    out[i] = _train_chain(store, chain, command, after, bar)
        else:
            _parallel(cfgs, out, store, workers, threads, command, after, bar)
    finally:
        bar.close()
    return out  # type: ignore[return-value]


def _missing_note(cfgs: Sequence[Any], store: RunStore, workers: int, desc: str) -> str | None:
    """One line announcing the runs the store lacks, before they train: how many, and an
    estimate of the wall time from the stored runs of the same model and steps in this sweep
    (None when nothing is missing)."""
    stored: dict[tuple[str, int], list[float]] = {}
    missing = []
    for c in cfgs:
        run = store.load(run_key(c))
        if run is None:
            missing.append(c)
        else:
            stored.setdefault((c.model, c.steps), []).append(float(run.wall_time))
    if not missing:
        return None
    est, unknown = 0.0, 0
    for c in missing:
        times = stored.get((c.model, c.steps))
        if times:
            est += sum(times) / len(times)
        else:
            unknown += 1
    when = (f"≈ {est / 60 / max(min(workers, len(missing)), 1):.0f} min on {workers} "
            f"worker(s), from this sweep's stored runs of the same model and steps"
            if est else "no stored run of the same model and steps to estimate the time from")
    if est and unknown:
        when += f", {unknown} of them not estimated"
    return (f"{desc}: training {len(missing)} of {len(cfgs)} runs the store "
            f"({shown(store.records)}) lacks — {when}")


def _parallel(cfgs, out, store, workers, threads, command, after, bar) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for i, chain in enumerate(cfgs):
        tasks.put((i, [c.to_dict() for c in chain], command))
    n = min(workers, len(cfgs))
    for _ in range(n):
        tasks.put(None)
    procs = [
        ctx.Process(
            target=_worker,
            args=(os.getpid(), threads, str(store.records), str(store.checkpoints), tasks,
                  results, after),
            daemon=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    try:
        remaining = set(range(len(cfgs)))
        started, t0 = 0, time.monotonic()
        while remaining:
            try:
                index, done, err = results.get(timeout=1.0)
            except queue.Empty:
                exited = not any(p.is_alive() for p in procs)
                if not started and (exited or time.monotonic() - t0 > START_TIMEOUT_S):
                    raise SweepError(
                        f"no worker started ({'all exited' if exited else 'waited '}"
                        f"{'' if exited else f'{START_TIMEOUT_S:g} s'}); a script that starts "
                        f"a sweep needs its code under `if __name__ == \"__main__\":` (workers "
                        f"are spawned and re-import the main module)") from None
                if exited:
                    raise SweepError("every worker exited before the sweep finished") from None
                continue
            if index == _STARTED:
                started += 1
                continue
            if err is not None:
                raise SweepError(f"run {run_key(cfgs[index][0])} (chain {index}) failed:\n"
                                 f"{err}")
            remaining.discard(index)
            runs = []
            for key, trained in done:
                run = store.load(key)
                run.trained = trained
                runs.append(run)
            out[index] = runs
            bar.set_postfix_str(done[-1][0])
            bar.update(len(done))
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
