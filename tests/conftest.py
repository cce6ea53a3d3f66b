"""Test-session settings shared by every test module."""

import os

os.environ.setdefault("GECO_DOWNLOAD", "0")  # tests never touch the network
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# The unit tests work on tiny tensors: one intra-op thread is faster than two (no fork/join per
# op) and keeps the two-process distributed tests from oversubscribing a 2-core machine.
torch.set_num_threads(1)
