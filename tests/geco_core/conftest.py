"""Fixtures shared by the geco_core tests."""

from __future__ import annotations

import errno
import os

import pytest

from geco_base import io as geco_io

_HEADER = b"GECO-CHECKPOINT"


class _FullDiskFile:
    """A file object whose writes fail with ENOSPC half-way through a checkpoint's payload."""

    def __init__(self, f, disk: FullDisk) -> None:
        self._f, self._disk, self._armed = f, disk, False

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def write(self, data):
        if isinstance(data, bytes) and data.startswith(_HEADER):
            self._disk.checkpoint_writes += 1
            self._armed = self._disk.checkpoint_writes >= self._disk.fail_from
        elif self._armed:
            if self._disk.mode == "torch":  # what torch.save writing to a file reports
                raise RuntimeError(
                    "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"
                )
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)


class FullDisk:
    """From the ``fail_from``-th checkpoint write on, the disk is full (see ``full_disk``)."""

    def __init__(self, fail_from: int, mode: str = "oserror") -> None:
        self.fail_from, self.mode, self.checkpoint_writes = fail_from, mode, 0


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(fail_from=k, mode="oserror" | "torch")``: every file opened by
    :func:`geco_base.io.atomic_write` fails from the k-th checkpoint written on, with
    ``OSError(ENOSPC)`` after half the payload, or with torch's "enforce fail at
    inline_container.cc" RuntimeError."""
    real_fdopen = os.fdopen

    def install(fail_from: int = 1, mode: str = "oserror") -> FullDisk:
        disk = FullDisk(fail_from, mode)
        monkeypatch.setattr(
            geco_io.os, "fdopen", lambda fd, *a, **k: _FullDiskFile(real_fdopen(fd, *a, **k), disk)
        )
        return disk

    return install
