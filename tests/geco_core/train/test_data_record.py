"""A run records the data it trains on (checkpoint and config.json) and a resume on other data
— another data_root, another $GECO_DATA — is refused with one line naming what differs."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest

from data_builders import mnist as mnist_mod
from geco_core import checkpoint as ckpt
from geco_core.train import fit, load_run, main

pytestmark = pytest.mark.usefixtures("quiet", "isolated_data")


def test_checkpoint_and_config_json_record_the_data(tmp_path, tiny):
    res = fit(tiny(steps=2, out_dir=str(tmp_path / "run")))
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    record = state["data"]
    assert record["dataset"] == "mnist" and record["split"] == "train" and record["n"] == 32
    assert record["source"] == "mnist-test-10k" and len(record["sha256"]) == 64
    on_disk = json.loads((tmp_path / "run" / "config.json").read_text())
    assert on_disk["data"] == record
    assert {k: v for k, v in on_disk.items() if k != "data"} == res.config.to_dict()
    # the same config loads the same data: same fingerprint
    from geco_core.train.builders import load_data

    assert load_data(res.config).fingerprint() == record
    assert load_run(tmp_path / "run")[3] == 2


def test_resume_with_another_data_root_is_refused(tmp_path, tiny, fake_full_mnist):
    out = str(tmp_path / "run")
    fit(tiny(steps=2, out_dir=out))  # on the vendored 10k split
    with pytest.raises(ValueError) as e:
        fit(tiny(steps=4, out_dir=out, data_root=str(fake_full_mnist)), resume=True)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("refusing to resume from")
    assert "the training data differ" in msg
    assert "source 'mnist-test-10k' -> 'mnist-60k'" in msg and "sha256" in msg
    assert "split" not in msg.split("(")[1] and "n 32" not in msg  # only what differs
    assert ckpt.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2  # untouched


def test_resume_with_another_geco_data_is_refused(monkeypatch, tmp_path, tiny, fake_full_mnist):
    out = str(tmp_path / "run")
    fit(tiny(steps=2, out_dir=out))
    monkeypatch.setenv("GECO_DATA", str(fake_full_mnist))  # was not checked at all
    with pytest.raises(
        ValueError, match="the training data differ.*source 'mnist-test-10k' -> 'mnist-60k'"
    ):
        fit(tiny(steps=4, out_dir=out), resume=True)
    monkeypatch.delenv("GECO_DATA")
    assert fit(tiny(steps=4, out_dir=out), resume=True).step == 4  # the same data: resumes


def test_resume_on_the_same_source_but_other_images_is_refused(
    monkeypatch, tmp_path, tiny, fake_full_mnist
):
    # dataset, split, n and source equal, pixels different: only the checksum tells them apart
    out = str(tmp_path / "run")
    fit(tiny(steps=2, out_dir=out, data_root=str(fake_full_mnist)))
    other = tmp_path / "inverted-mnist"
    shutil.copytree(fake_full_mnist, other)
    images = other / "train-images-idx3-ubyte.gz"
    raw = np.frombuffer(gzip.decompress(images.read_bytes()), np.uint8)
    data = gzip.compress(raw[:16].tobytes() + (255 - raw[16:]).tobytes(), mtime=0)
    images.write_bytes(data)
    monkeypatch.setitem(mnist_mod.MNIST_MD5, images.name, hashlib.md5(data).hexdigest())
    with pytest.raises(ValueError) as e:
        fit(tiny(steps=4, out_dir=out, data_root=str(other)), resume=True)
    differences = str(e.value).split("differ from the checkpoint's (")[1]
    assert differences.startswith("sha256 ") and "source" not in differences


def test_a_checkpoint_without_a_data_record_resumes_with_a_warning(tmp_path, tiny):
    out = tmp_path / "run"
    fit(tiny(steps=2, out_dir=str(out)))
    state = ckpt.load_checkpoint(out / "checkpoint.pt")
    del state["data"]  # written before the data were recorded
    state.pop("format_version")
    ckpt.save_checkpoint(out / "checkpoint.pt", state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(tiny(steps=4, out_dir=str(out)), resume=True)
    assert res.step == 4
    assert any("records no data fingerprint" in str(w.message) for w in caught)
    assert "data" in ckpt.load_checkpoint(out / "checkpoint.pt")


def test_cli_refuses_a_resume_on_another_data_root_in_one_line(tmp_path, fake_full_mnist, capsys):
    argv = [
        "--dataset-kwargs", "n=16", "--batch-size", "8", "--steps", "2", "--device", "cpu",
        "--model-kwargs", '{"latent_dim": 2, "channels": [4, 8], "hidden": 16}',
        "--no-progress", "--download", "false", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    main(argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*argv, "--steps", "4", "--resume", "--data-root", str(fake_full_mnist)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1
    assert lines[0].startswith("error: --resume: refusing to resume from")
    assert "data differ" in lines[0]
