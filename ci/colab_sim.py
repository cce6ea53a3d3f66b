#!/usr/bin/env python
"""Simulate a Colab reader who opens one chapter notebook in an empty folder.

A Colab reader has nothing but the ``.ipynb``: the chapter's first cell (its install cell,
``check_notebooks.COLAB_CELL_TEMPLATE``) must fetch the code and the committed records itself.
This script does what Colab would, on this machine and offline:

1. copies the committed notebook, pinned to this checkout's commit as the rendered book pins
   it (``check_notebooks.pin_revision``), into an empty folder, alone;
2. makes a kernel that looks like Colab's: a virtual environment with the system's packages
   (Colab's preinstalled torch, numpy, …), its own kernelspec, and ``google.colab`` imported at
   start-up (a stand-in package), so that the install cell runs; ``$GECO_REPO_URL`` points
   the clone at this repository instead of GitHub, and an empty ``$XDG_CACHE_HOME`` leaves
   the chapter to fetch its data as on a fresh Colab machine;
3. runs the notebook at ``smoke`` (runs trained on the spot, in a throwaway ``$GECO_RUNS``),
   then a chapter at ``cpu`` in the same folder (the reader's second chapter reuses the clone)
   with ``$GECO_NO_TRAINING`` set, so any cpu-profile run that does not resolve to a committed
   record fails instead of training;
4. checks, from a probe cell appended to each copy, that the chapter imported ``geco_book`` from
   the clone in that folder (not from this machine's install) and read the clone's committed
   records, at the pinned commit.

The clone is of the commit (HEAD), so uncommitted changes are not tested: commit first.

Usage::

    python ci/colab_sim.py                                  # 02_micro_mnist smoke, 00_results cpu
    python ci/colab_sim.py --smoke 01_theory --cpu 03_large_scale --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import BOOK, REPO, clone_name, pin_revision  # noqa: E402
from run_notebooks import CHAPTERS, chapter_notebooks, error_outputs, select  # noqa: E402

#: What the probe cell prints before its JSON line.
PROBE_TAG = "COLAB_SIM "
PROBE_CELL = f"""\
# Appended by ci/colab_sim.py (not part of the chapter): where the chapter's code came from.
import json, subprocess, geco_book, geco_book.paths
print({PROBE_TAG!r} + json.dumps({{
    "geco_book": geco_book.__file__,
    "cache_root": str(geco_book.paths.cache_root()),
    "records": len(list((geco_book.paths.cache_root() / "runs").glob("*/record.json"))),
    "revision": subprocess.run(["git", "-C", str(geco_book.paths.REPO_ROOT), "rev-parse", "HEAD"],
                               capture_output=True, text=True).stdout.strip(),
}}))"""
NO_TRAINING_ENV = "GECO_NO_TRAINING"  # geco_book.store.NO_TRAINING_ENV (checked by a test)
REPO_URL_ENV = "GECO_REPO_URL"  # read by the install cell


def _run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def colab_kernel(root: Path) -> dict[str, str]:
    """A Colab-like kernel under ``root``: a venv over the system's packages with its own
    kernelspec ``colab-sim``, and ``google.colab`` imported when the kernel starts. Returns the
    environment the notebook runs in."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name",
          "colab-sim", "--display-name", "Python 3 (Colab simulation)"],
         stdout=subprocess.DEVNULL)
    fake = root / "fake-colab" / "google" / "colab"  # `google` stays a namespace package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""Stand-in for Colab\'s module (ci/colab_sim.py)."""\n')
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # as on Colab\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "GECO_FIGURE_REPORT", "GECO_BOOK_CACHE", NO_TRAINING_ENV,
                        "VIRTUAL_ENV")}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(root / "fake-colab"),
        "IPYTHONDIR": str(root / "ipython"),
        "JUPYTER_PATH": str(venv / "share" / "jupyter"),
        "GECO_RUNS": str(root / "runs"),
        "XDG_CACHE_HOME": str(root / "cache"),  # no data yet, as on a fresh Colab machine
        REPO_URL_ENV: str(REPO),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    return env


def prepare(notebook: Path, folder: Path, revision: str) -> Path:
    """The committed ``notebook`` pinned to ``revision``, with the probe cell appended, alone in
    ``folder``."""
    nb = nbformat.read(notebook, as_version=4)
    if pin_revision(nb, BOOK, notebook, revision) != 2:
        raise SystemExit(f"colab_sim: {notebook.name} has no install cell and Colab badge to pin")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_CELL))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / notebook.name
    nbformat.write(nb, out)
    return out


def execute(source: Path, output: Path, profile: str, env: dict[str, str],
            timeout_s: int) -> float:
    """Run ``source`` with papermill on the ``colab-sim`` kernel in its own folder."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(source), str(output), "-p", "profile", profile,
         "--kernel", "colab-sim", "--cwd", str(source.parent), "--no-progress-bar",
         "--execution-timeout", str(timeout_s)],
        env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"colab_sim: {source.name} at {profile} failed after {wall:.0f} s:\n"
                         f"{tail}")
    return wall


def probe(executed: Path) -> dict:
    """The probe cell's JSON from an executed copy (and no error output anywhere)."""
    nb = nbformat.read(executed, as_version=4)
    if errors := error_outputs(nb):
        raise SystemExit(f"colab_sim: {executed.name}: error outputs: {'; '.join(errors)}")
    for out in nb.cells[-1].get("outputs", []):
        for line in str(out.get("text", "")).splitlines():
            if line.startswith(PROBE_TAG):
                return json.loads(line[len(PROBE_TAG):])
    raise SystemExit(f"colab_sim: {executed.name}: the probe cell printed nothing")


def check_probe(found: dict, clone: Path, revision: str) -> list[str]:
    """What is wrong with the probe's answer: code, records or commit not the clone's."""
    problems = []
    if not Path(found["geco_book"]).resolve().is_relative_to(clone.resolve()):
        problems.append(f"geco_book came from {found['geco_book']}, not from the clone {clone}")
    if Path(found["cache_root"]).resolve() != (clone / "book" / "_cache").resolve():
        problems.append(f"the records were read from {found['cache_root']}, not the clone's")
    if found["records"] == 0:
        problems.append("the clone has no committed run records")
    if found["revision"] != revision:
        problems.append(f"the clone is at {found['revision'] or '?'}, not at {revision}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", default="02_micro_mnist",
                        help="chapter run at the smoke profile first (default: 02_micro_mnist)")
    parser.add_argument("--cpu", default="00_results",
                        help="chapter then run at the cpu profile from the committed records "
                             "(default: 00_results, which loads every chapter's results)")
    parser.add_argument("--timeout", type=int, default=1_200, help="seconds per notebook")
    parser.add_argument("--keep", action="store_true", help="keep the simulation's folder")
    args = parser.parse_args(argv)
    try:
        smoke, cpu = (select(chapter_notebooks(CHAPTERS), [n])[0] for n in (args.smoke, args.cpu))
    except ValueError as err:
        print(f"error: --smoke/--cpu: {err}", file=sys.stderr)
        return 2
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    if not revision:
        print("error: colab_sim: not a git checkout (the install cell clones a commit)",
              file=sys.stderr)
        return 2
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    if dirty:
        print(f"colab_sim: note: testing the commit {revision[:12]}; uncommitted changes are not "
              f"in the clone", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="colab-sim-"))
    content = root / "content"  # Colab's working folder
    clone = content / clone_name(BOOK)
    try:
        env = colab_kernel(root)
        problems = []
        for notebook, profile in ((smoke, "smoke"), (cpu, "cpu")):
            src = prepare(notebook, content, revision)
            out = root / "executed" / f"{notebook.stem}.{profile}.ipynb"
            out.parent.mkdir(exist_ok=True)
            run_env = dict(env, **({NO_TRAINING_ENV: "1"} if profile == "cpu" else {}))
            wall = execute(src, out, profile, run_env, args.timeout)
            found = probe(out)
            bad = check_probe(found, clone, revision)
            problems += [f"{notebook.stem} at {profile}: {b}" for b in bad]
            print(f"colab_sim: {notebook.stem} at {profile}: {'ok' if not bad else 'FAILED'} in "
                  f"{wall:.0f} s (geco_book from {Path(found['geco_book']).parent}, "
                  f"{found['records']} committed records, commit {found['revision'][:12]})",
                  flush=True)
            src.unlink()  # the next chapter is opened alone too
        for p in problems:
            print(f"colab_sim: ERROR {p}", file=sys.stderr)
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"colab_sim: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
