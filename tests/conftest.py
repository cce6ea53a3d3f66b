"""Test-session settings shared by every test module."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GECO_DOWNLOAD", "0")  # tests never touch the network
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never see the user's data or checkpoints: a machine whose ~/.cache holds the official
# 60k split (or whose $GECO_DATA points at it) would otherwise change every data source the
# tests expect (the vendored 10k split) and the keys of the committed chapter-02 records.
_XDG = tempfile.mkdtemp(prefix="geco-tests-xdg-")
atexit.register(shutil.rmtree, _XDG, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = _XDG
os.environ.pop("GECO_DATA", None)
os.environ.pop("GECO_RUNS", None)

import torch  # noqa: E402

# The unit tests work on tiny tensors: one intra-op thread is faster than two (no fork/join per
# op) and keeps the two-process distributed tests from oversubscribing a 2-core machine.
torch.set_num_threads(1)
