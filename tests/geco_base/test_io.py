"""The one atomic writer: a reader sees the old file or the new one, never a part of one, and
no temporary file outlives the write."""

from __future__ import annotations

import errno

import pytest
import torch

from geco_base.io import atomic_write, write_bytes, write_text


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_replace_the_target_and_leave_no_temporary_file(tmp_path):
    p = tmp_path / "sub" / "a.bin"  # the folder is created
    write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    write_text(tmp_path / "t.json", "é\n")
    assert (tmp_path / "t.json").read_bytes() == "é\n".encode()
    with atomic_write(tmp_path / "w.pt") as f:
        torch.save({"w": torch.ones(2)}, f)
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.ones(2))
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_an_exception_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    during = []
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(p, "w") as f:
            f.write("new, half written")
            f.flush()
            during = _leftovers(tmp_path)  # the temporary file, beside the target
            assert p.read_text() == "old"  # not replaced before the block ends
            raise RuntimeError("boom")
    assert len(during) == 1 and during[0].startswith(".a.txt.")
    assert p.read_text() == "old"
    assert not (tmp_path / during[0]).exists() and _leftovers(tmp_path) == []
    # a KeyboardInterrupt (BaseException) is cleaned up the same way
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(p, "w") as f:
            f.write("x")
            raise KeyboardInterrupt
    assert p.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_missing_target_stays_missing_after_a_failed_write(tmp_path):
    p = tmp_path / "never.bin"
    with pytest.raises(ValueError):
        with atomic_write(p) as f:
            f.write(b"abc")
            raise ValueError("checksum mismatch")
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_disk_full_is_reported_with_the_path(tmp_path):
    p = tmp_path / "a.bin"
    with pytest.raises(OSError, match="no space left on device while writing") as e:
        with atomic_write(p) as f:
            f.write(b"a")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.errno == errno.ENOSPC and str(p) in str(e.value)
    assert _leftovers(tmp_path) == []


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "a", "a"):
            pass
