#!/usr/bin/env bash
# Set up a fresh machine (or a Colab/conda env) for this project. Idempotent.
# - installs the CPU build torch==2.13.0 only when torch is absent (an existing torch is kept,
#   so Colab keeps its CUDA build and nothing pulls gigabytes of CUDA wheels);
# - installs this project editable with its test and book extras;
# - installs Debian's chromium for the real-browser check of the built book, when apt is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev,book]"
if [ "${GECO_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser check will be skipped" >&2
fi
"$PY" -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
