#!/usr/bin/env python
"""Simulate a Colab reader who opens one chapter notebook in an empty folder.

A Colab reader has nothing but the ``.ipynb``: the chapter's first cell (its install cell,
``check_notebooks.COLAB_CELL_TEMPLATE``) must fetch the code and the committed records itself.
This script does what Colab would, on this machine:

1. makes a kernel that looks like Colab's: a virtual environment with the system's packages
   (Colab's preinstalled torch, numpy, …), its own kernelspec, and ``google.colab`` imported at
   start-up (a stand-in package), so that the install cell runs; ``$GECO_REPO_URL`` points
   the clone at this repository instead of GitHub; no ``$GECO_*`` setting of this machine
   reaches the kernel, and an empty ``$XDG_CACHE_HOME`` leaves the chapter to download its
   data as on a fresh Colab machine (so the simulation needs the network that the data
   downloads use, as Colab does);
2. runs the committed notebook of one chapter — as the Colab badge serves it, its install cell
   at the branch — alone in an empty folder at ``smoke`` (runs trained on the spot, in a
   throwaway ``$GECO_RUNS``);
3. then runs chapters at ``cpu``, one at a time and each alone in the same folder (the
   reader's next chapters reuse the clone), as the rendered book's download button serves
   them: pinned to HEAD (``check_notebooks.pin_revision``), so the clone moves from the
   branch to the commit; ``$GECO_NO_TRAINING`` is set, so any run of theirs that does not
   resolve to a committed record fails instead of training;
4. checks, from a probe cell appended to each copy, that ``geco_book``, ``geco_core`` and
   ``data_builders`` were imported from the clone in that folder (not from this machine's
   install), that the records found are the clone's committed ones, and the clone's commit.

The clone is of commits, so uncommitted changes are not tested: commit first.

Usage::

    python ci/colab_sim.py                  # 02_micro_mnist at smoke, every chapter at cpu
    python ci/colab_sim.py --smoke 01_theory --cpu 00_results 03_large_scale --keep
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
from check_notebooks import BOOK, REPO, clone_name, pin_revision, repository  # noqa: E402
from run_notebooks import CHAPTERS, chapter_notebooks, error_outputs, select  # noqa: E402

from geco_book.provenance import git_commit, git_dirty  # noqa: E402
from geco_book.store import NO_TRAINING_ENV  # noqa: E402

#: What the probe cell prints before its JSON line.
PROBE_TAG = "COLAB_SIM "
PROBE_CELL = f"""\
# Appended by ci/colab_sim.py (not part of the chapter): where the chapter's code came from.
import json, subprocess, data_builders, geco_book, geco_book.paths, geco_core
root = geco_book.paths.REPO_ROOT
git = ["git", "-C", str(root)]
print({PROBE_TAG!r} + json.dumps({{
    "modules": [m.__file__ for m in (geco_book, geco_core, data_builders)],
    "cache_root": str(geco_book.paths.cache_root()),
    "records": len(list((geco_book.paths.cache_root() / "runs").glob("*/record.json"))),
    "committed": len(subprocess.run(git + ["ls-files", "book/_cache/runs/*/record.json"],
                                    capture_output=True, text=True).stdout.split()),
    "revision": subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                               text=True).stdout.strip(),
}}))"""
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
           if not k.startswith("GECO_") and k not in ("MPLBACKEND", "VIRTUAL_ENV")}
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


def prepare(notebook: Path, folder: Path, revision: str | None) -> Path:
    """The committed ``notebook`` — pinned to ``revision`` when given, as the rendered book's
    copy is — with the probe cell appended, alone in ``folder``."""
    nb = nbformat.read(notebook, as_version=4)
    if revision and not pin_revision(nb, BOOK, revision):
        raise SystemExit(f"colab_sim: {notebook.name} has no install cell to pin")
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
    problems = [f"{Path(m).parent.name} came from {m}, not from the clone {clone}"
                for m in found["modules"] if not Path(m).resolve().is_relative_to(clone.resolve())]
    if Path(found["cache_root"]).resolve() != (clone / "book" / "_cache").resolve():
        problems.append(f"the records were read from {found['cache_root']}, not the clone's")
    if found["records"] == 0 or found["records"] != found["committed"]:
        problems.append(f"{found['records']} run records found, {found['committed']} committed "
                        f"in the clone")
    if found["revision"] != revision:
        problems.append(f"the clone is at {found['revision'] or '?'}, not at {revision}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", default="02_micro_mnist",
                        help="chapter run at the smoke profile first, as the badge serves it "
                             "(default: 02_micro_mnist)")
    parser.add_argument("--cpu", nargs="*", default=None,
                        help="chapters then run at the cpu profile from the committed records, "
                             "pinned to HEAD (default: every chapter)")
    parser.add_argument("--timeout", type=int, default=1_200, help="seconds per notebook")
    parser.add_argument("--keep", action="store_true", help="keep the simulation's folder")
    args = parser.parse_args(argv)
    notebooks = chapter_notebooks(CHAPTERS)
    try:
        smoke = select(notebooks, [args.smoke])[0]
        cpu = select(notebooks, args.cpu) if args.cpu else notebooks
    except ValueError as err:
        print(f"error: --smoke/--cpu: {err}", file=sys.stderr)
        return 2
    head = git_commit()
    branch = str(repository(BOOK).get("branch", "main"))
    tip = subprocess.run(["git", "-C", str(REPO), "rev-parse", "-q", "--verify",
                          f"refs/heads/{branch}"], capture_output=True, text=True).stdout.strip()
    if not head or not tip:
        print(f"error: colab_sim: needs a git checkout with a branch {branch!r} (the install "
              f"cell clones it)", file=sys.stderr)
        return 2
    if git_dirty((".",), untracked=False):
        print(f"colab_sim: note: testing the commit {head[:12]}; uncommitted changes are not "
              f"in the clone", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="colab-sim-"))
    content = root / "content"  # Colab's working folder
    clone = content / clone_name(BOOK)
    runs = [(smoke, "smoke", None, tip)] + [(nb, "cpu", head, head) for nb in cpu]
    try:
        env = colab_kernel(root)
        problems = []
        for notebook, profile, pin, expect in runs:
            src = prepare(notebook, content, pin)
            out = root / "executed" / f"{notebook.stem}.{profile}.ipynb"
            out.parent.mkdir(exist_ok=True)
            run_env = dict(env, **({NO_TRAINING_ENV: "1"} if profile == "cpu" else {}))
            wall = execute(src, out, profile, run_env, args.timeout)
            found = probe(out)
            bad = check_probe(found, clone, expect)
            problems += [f"{notebook.stem} at {profile}: {b}" for b in bad]
            print(f"colab_sim: {notebook.stem} at {profile} ({'pinned to HEAD' if pin else branch})"
                  f": {'ok' if not bad else 'FAILED'} in {wall:.0f} s ({found['records']} "
                  f"committed records, clone at {found['revision'][:12]})", flush=True)
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
