"""One command for the sweep behind chapters 03 and 04: train, evaluate, record.

Chapter 04 trains nothing: it evaluates chapter 03's VAE+NVP and ConvDRAW models. Its
evaluations need the models' checkpoints, which live outside the repository (``$GECO_RUNS``)
and do not survive a change of machine, so they are computed in the sweep that trains the
models: each run's chapter-03 evaluation (every stage) and, for chapter 04's models, chapter
04's (:func:`geco_book.chapters.marginal_kl.evaluate_in_sweep`) are written into its record
right after it is trained, in the worker that trained it. Commit ``book/_cache/runs`` as runs
finish: a later machine resumes from the committed records, retraining only runs without
one. ::

    python -m geco_book.chapters.regenerate --profile cpu

Measured at the cpu profile (two workers, two cores, mnist-60k), over two sessions: 71 of its
123 stage runs in 1 h 44 min, the other 52 (resumed from the committed records) in 4,473 s, ≈ 3 h in
all; rendering both chapters from the records afterwards trains nothing. ``--profile smoke``
runs the whole sweep in ≈ 20 s.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence

from geco_base.checks import OneLineParser, count_arg
from geco_book.chapters import large_scale as ch03
from geco_book.chapters import marginal_kl as ch04
from geco_book.profiles import PROFILES

__all__ = ["main", "regenerate"]


def regenerate(profile: str = "cpu", *, workers: int | None = None, progress: bool = True,
               store=None, command: str | None = None):
    """Chapter 03's :func:`~geco_book.chapters.large_scale.run_chapter` with chapter 04's
    evaluations as its sweep hook, then chapter 04's
    :func:`~geco_book.chapters.marginal_kl.run_chapter` (which now only reads them):
    ``(chapter 03 result, chapter 04 result, wall seconds)``."""
    t0 = time.perf_counter()
    over = {} if workers is None else {"workers": workers}
    r3 = ch03.run_chapter(profile, store=store, progress=progress,
                          command=command or f"python -m geco_book.chapters.regenerate "
                                             f"--profile {profile}",
                          also=functools.partial(ch04.evaluate_in_sweep, profile=profile),
                          **over)
    r4 = ch04.run_chapter(profile, store=store, progress=progress, **over)
    return r3, r4, time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geco_book.chapters.regenerate --profile cpu [--workers N]``."""
    p = OneLineParser(prog="python -m geco_book.chapters.regenerate",
                      description="Train and evaluate chapters 03 and 04 (resumable).")
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--workers", type=count_arg, default=None, help="parallel training processes")
    args = p.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m geco_book.chapters.regenerate", *argv_list])
    r3, r4, wall = regenerate(args.profile, workers=args.workers, command=command)
    print(f"chapter 03: {r3.provenance['n_runs']} runs ({r3.provenance['n_stage_runs']} with "
          f"stages), trained now: {len(r3.provenance['trained_now'])}; chapter 04: "
          f"{len(r4.rows)} models, evaluated now: {r4.provenance['evaluated_now']}; "
          f"wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    from geco_book.chapters.regenerate import main as _main

    raise SystemExit(_main())
