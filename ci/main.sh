#!/usr/bin/env bash
# The README's main command: set up, run every chapter at the cpu profile, build the book
# (HTML under book/_build/html) and check it in headless Chromium (screenshots under
# book/_build/screenshots). Prints the wall time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PROFILE=${GECO_PROFILE:-cpu}

step() {
  local start=$SECONDS
  echo "[ci/main] $*"
  "$@"
  echo "[ci/main] done in $((SECONDS - start)) s: $*"
}

step bash ci/setup.sh
step "$PY" ci/check_notebooks.py
step "$PY" ci/run_notebooks.py --profile "$PROFILE"
step "$PY" ci/build_book.py --profile "$PROFILE"
step "$PY" ci/browser_check.py
echo "[ci/main] book: book/_build/html/index.html (profile $PROFILE), total $SECONDS s"
