#!/usr/bin/env python
"""Execute the book's chapter notebooks with papermill at one profile.

Each ``book/chapters/NN_name.ipynb`` (the committed twin, without outputs) is run with
``-p profile P`` in its own papermill process, with ``book/chapters`` as working directory (as
when a reader opens it in Jupyter), and written to ``ci/_executed/P/NN_name.ipynb``; the book
build (``ci/build_book.py``) renders those executed copies. A notebook that raises, or runs past
its time limit, fails the run (exit status 1) after the others have run; its partial output is
kept for inspection. Each figure the chapter shows writes its legibility report to
``ci/_executed/P/NN_name.figures.jsonl`` (read by ``ci/check_figures.py``). Wall times are
printed and saved to ``ci/_executed/P/_timings.json``.

Usage::

    python ci/run_notebooks.py --profile smoke
    python ci/run_notebooks.py --profile cpu --only 02_micro_mnist
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = REPO / "book" / "chapters"
EXECUTED = REPO / "ci" / "_executed"
PROFILES = ("smoke", "cpu", "gpu")
#: Environment variable read by geco_book.figures.caption (kept in sync by a test).
FIGURE_REPORT_ENV = "GECO_FIGURE_REPORT"
#: Default wall-clock limit per notebook, in seconds (the cpu profile is "minutes on 2 cores").
NOTEBOOK_TIMEOUT_S = {"smoke": 600, "cpu": 3_600, "gpu": 12 * 3_600}
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
#: Mime types that myst-nb renders in preference to an image (so the output is not a figure).
RICHER_THAN_IMAGE = (
    "application/vnd.jupyter.widget-view+json",
    "application/javascript",
    "text/html",
)


def executed_folder(description: str, argv: list[str] | None = None) -> Path:
    """The ``--executed`` folder of a check of rendered notebooks (``--profile``'s
    ``ci/_executed/<profile>`` by default), parsed from ``argv``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of executed notebooks (default: ci/_executed/<profile>)")
    args = parser.parse_args(argv)
    return args.executed or EXECUTED / args.profile


def figure_report_path(executed: Path) -> Path:
    """Where the render of ``executed`` writes its figures' legibility reports (JSON lines,
    one per figure shown by ``geco_book.figures.caption.show_figure``)."""
    return executed.with_name(f"{executed.stem}.figures.jsonl")


def chapter_notebooks(chapters: Path = CHAPTERS) -> list[Path]:
    """The committed chapter notebooks, in file-name (= chapter) order."""
    return sorted(p for p in chapters.glob("*.ipynb") if p.is_file())


def select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Notebooks named in ``only`` (a stem such as ``02_micro_mnist`` or a unique prefix)."""
    if not only:
        return notebooks
    chosen = []
    names = [p.stem for p in notebooks]
    for name in only:
        stem = Path(name).stem
        matches = [p for p in notebooks if p.stem == stem] or [
            p for p in notebooks if p.stem.startswith(stem)
        ]
        if len(matches) != 1:
            why = "matches several" if matches else "matches none"
            raise ValueError(
                f"--only {name!r} {why} of the chapter notebooks: {', '.join(names) or 'none'}"
            )
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _shown_outputs(nb):
    """Outputs of code cells that the book shows (cells tagged remove-output/remove-cell
    skipped)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & {"remove-output", "remove-cell"}:
            continue
        yield from cell.get("outputs", [])


def _is_bare_image(out) -> bool:
    data = out.get("data", {})
    return any(m in data for m in IMAGE_MIMES) and not any(m in data for m in RICHER_THAN_IMAGE)


def count_image_outputs(nb) -> int:
    """Outputs that the book renders as figures: bare images and captioned figures
    (``geco_book.figures.caption.show_figure``: an HTML ``<figure>`` with a ``<figcaption>``)."""
    return sum(
        _is_bare_image(out) or "<figcaption" in str(out.get("data", {}).get("text/html", ""))
        for out in _shown_outputs(nb)
    )


def count_uncaptioned_figures(nb) -> int:
    """Image outputs shown without a caption (a bare ``plt.show()`` or auto-displayed figure):
    every figure of the book is shown with ``geco_book.figures.caption.show_figure``."""
    return sum(_is_bare_image(out) for out in _shown_outputs(nb))


def error_outputs(nb) -> list[str]:
    """``ename: evalue`` of every error output of an executed notebook."""
    return [
        f"{out.get('ename', '?')}: {out.get('evalue', '')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Interrupt papermill (it shuts its kernel down), then kill its process group."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(
    source: Path,
    output: Path,
    profile: str,
    timeout_s: float,
    kernel: str | None,
    verbose: bool,
) -> tuple[str, float, str]:
    """Run one notebook; returns (status, wall seconds, log tail). status: ok|failed|timeout."""
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(source),
        str(output),
        "-p",
        "profile",
        profile,
        "--cwd",
        str(source.parent),
        "--no-progress-bar",
        "--execution-timeout",
        str(int(timeout_s)),
    ]
    if kernel:
        cmd += ["--kernel", kernel]
    if verbose:
        cmd.append("--log-output")
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    # A non-interactive MPLBACKEND (e.g. Agg, exported by .ci/run for the unit tests) would
    # reach the kernel and silently drop every figure; let ipykernel pick its inline backend.
    env.pop("MPLBACKEND", None)
    # Each figure the chapter shows appends its legibility report here (ci/check_figures.py).
    report = figure_report_path(output)
    report.unlink(missing_ok=True)
    env[FIGURE_REPORT_ENV] = str(report)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=None if verbose else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout_s)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        _stop(proc)
        log, _ = proc.communicate()
        status = "timeout"
    except KeyboardInterrupt:
        _stop(proc)
        raise
    wall = time.perf_counter() - start
    tail = "\n".join((log or "").splitlines()[-60:])
    if status == "ok":
        nb = nbformat.read(output, as_version=4)
        errors = error_outputs(nb)
        if errors:
            status, tail = "failed", "error outputs: " + "; ".join(errors)
        elif bare := count_uncaptioned_figures(nb):
            status = "failed"
            tail = (f"{bare} figure(s) shown without a caption: show every figure with "
                    "geco_book.figures.caption.show_figure(fig, caption)")
    return status, wall, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, choices=PROFILES, help="run profile")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this chapter (stem like 02_micro_mnist or a unique prefix); repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="wall-clock limit per notebook in seconds (default: "
        + ", ".join(f"{p} {s} s" for p, s in NOTEBOOK_TIMEOUT_S.items())
        + ")",
    )
    parser.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    parser.add_argument("--out", type=Path, default=None, help="default: ci/_executed/PROFILE")
    parser.add_argument(
        "--chapters", type=Path, default=CHAPTERS, help="notebook folder (default: book/chapters)"
    )
    parser.add_argument("--verbose", action="store_true", help="stream cell outputs while running")
    args = parser.parse_args(argv)
    timeout_s = args.timeout if args.timeout is not None else NOTEBOOK_TIMEOUT_S[args.profile]
    if timeout_s <= 0:
        parser.error(f"--timeout must be positive, got {timeout_s}")
    notebooks = chapter_notebooks(args.chapters)
    if not notebooks:
        parser.error(f"no chapter notebooks in {args.chapters}")
    try:
        chosen = select(notebooks, args.only)
    except ValueError as err:
        parser.error(str(err))
    out_dir = (args.out or EXECUTED / args.profile).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.only:  # drop executed copies of chapters that no longer exist
        for stale in set(out_dir.glob("*.ipynb")) - {out_dir / p.name for p in notebooks}:
            stale.unlink()

    timings_path = out_dir / "_timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings = {
        k: v for k, v in timings.get("notebooks", {}).items() if k in {p.stem for p in notebooks}
    }
    print(f"run_notebooks: profile={args.profile}, {len(chosen)} notebook(s) -> {out_dir}")
    failures = []
    total = time.perf_counter()
    for source in chosen:
        output = out_dir / source.name
        print(f"  {source.stem:<28s} ...", end="", flush=True)
        status, wall, tail = run_one(
            source, output, args.profile, timeout_s, args.kernel, args.verbose
        )
        figures = count_image_outputs(nbformat.read(output, as_version=4)) if output.exists() else 0
        print(f" {status:<7s} {wall:7.1f} s  ({figures} figure output(s))", flush=True)
        timings[source.stem] = {"status": status, "wall_s": round(wall, 2), "figures": figures}
        if status != "ok":
            failures.append(source.stem)
            limit = f" (limit {timeout_s:.0f} s)" if status == "timeout" else ""
            print(f"--- {source.stem}: {status}{limit}; partial output: {output}", file=sys.stderr)
            print(tail, file=sys.stderr)
            print("---", file=sys.stderr)
    total = time.perf_counter() - total
    summary = {
        "profile": args.profile,
        "timeout_s": timeout_s,
        "notebooks": dict(sorted(timings.items())),
    }
    timings_path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"run_notebooks: {len(chosen) - len(failures)}/{len(chosen)} ok in {total:.1f} s")
    if failures:
        print(f"run_notebooks: FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
