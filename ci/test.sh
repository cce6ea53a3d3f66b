#!/usr/bin/env bash
# The README's test command: set up, lint, unit tests, the notebook pairs, every chapter at the
# smoke profile (papermill, then again under pytest --nbval-lax), the book build with warnings
# as errors, and the headless-Chromium check. Prints the wall time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

step() {
  local start=$SECONDS
  echo "[ci/test] $*"
  "$@"
  echo "[ci/test] done in $((SECONDS - start)) s: $*"
}

step bash ci/setup.sh
step "$PY" -m ruff check --no-cache .
step "$PY" -m pytest
step "$PY" ci/check_notebooks.py
step "$PY" ci/run_notebooks.py --profile smoke
step "$PY" ci/check_results_page.py --profile smoke
step "$PY" ci/check_figures.py --profile smoke
step "$PY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
  -p no:cacheprovider ci/_executed/smoke
step "$PY" ci/build_book.py --profile smoke
step "$PY" ci/browser_check.py
step "$PY" ci/colab_sim.py
echo "[ci/test] all steps passed in $SECONDS s"
