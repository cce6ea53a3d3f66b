"""Checkpoint integrity: every damaged or foreign file is refused with one line naming it."""

from __future__ import annotations

import errno
import hashlib
import io
import os

import pytest
import torch

from geco_core.checkpoint import (
    FORMAT_VERSION,
    READABLE_FORMATS,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 7, "w": torch.arange(1000.0)})
    return path


def test_round_trip(good):
    state = load_checkpoint(good)
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(1000.0))


def _refused(path, match):
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "--overwrite" in msg
    return msg


def test_flipped_bytes_are_refused_before_unpickling(good):
    blob = bytearray(good.read_bytes())
    for i in range(200, len(blob), max(len(blob) // 400, 1)):
        blob[i] ^= 0xFF
    good.write_bytes(bytes(blob))
    _refused(good, "corrupt")


def test_a_single_flipped_byte_is_refused(good):
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    good.write_bytes(bytes(blob))
    _refused(good, "corrupt")


def test_truncated_empty_text_and_random_files_are_refused(good, tmp_path):
    good.write_bytes(good.read_bytes()[:-10])
    _refused(good, "corrupt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _refused(empty, "empty")
    text = tmp_path / "text.pt"
    text.write_text("hello\nworld\n")
    _refused(text, "not a geco_core checkpoint")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(5000))
    msg = _refused(noise, "not a geco_core checkpoint")
    assert "weights_only=False" not in msg


def test_an_unchecksummed_torch_file_is_refused(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"format_version": 1, "step": 3}, old)  # what geco_core wrote before
    _refused(old, "not a geco_core checkpoint")


def test_a_header_with_another_format_is_refused(good):
    blob = good.read_bytes().replace(b"GECO-CHECKPOINT 3 ", b"GECO-CHECKPOINT 9 ", 1)
    good.write_bytes(blob)
    _refused(good, "format '9'")


def _write_format(path, version: int, state: dict) -> None:
    """A checkpoint as geco_core's format ``version`` lays it out (header, sha256, payload)."""
    buf = io.BytesIO()
    torch.save({"format_version": version, **state}, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    path.write_bytes(b"GECO-CHECKPOINT %d " % version + digest + b"\n" + payload)


def test_format_2_is_still_read_and_a_mismatched_payload_refused(tmp_path):
    assert FORMAT_VERSION == 3 and READABLE_FORMATS == (2, 3)
    old = tmp_path / "v2.pt"
    _write_format(old, 2, {"step": 7})  # the for-loop Adam's engine wrote these
    assert load_checkpoint(old)["step"] == 7
    blob = old.read_bytes().replace(b"GECO-CHECKPOINT 2 ", b"GECO-CHECKPOINT 3 ", 1)
    old.write_bytes(blob)  # header says 3, payload says 2
    _refused(old, "not a geco_core training checkpoint")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize("mode", ["oserror", "torch"])
def test_disk_full_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(
    good, full_disk, mode
):
    full_disk(fail_from=1, mode=mode)
    with pytest.raises(OSError) as e:
        save_checkpoint(good, {"step": 8, "w": torch.zeros(1000)})
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == f"[Errno 28] no space left on device while writing {good}"
    assert sorted(p.name for p in good.parent.iterdir()) == ["checkpoint.pt"]  # no .tmp
    state = load_checkpoint(good)  # the previous good checkpoint, intact
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(1000.0))
