"""MNIST loading: IDX reader, search order, the honest 10k fallback, checksums, downloads.

No test touches the network: downloads are served by a fake ``urlopen``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from data_builders import DataFallbackWarning, load_mnist
from data_builders import core as core_mod
from data_builders import mnist as mnist_mod
from data_builders.core import download_allowed, download_file
from data_builders.mnist import MNIST_MD5, read_idx

pytestmark = pytest.mark.filterwarnings("ignore::data_builders.DataFallbackWarning")
VENDOR = Path(mnist_mod.__file__).parent / "_vendor" / "mnist"




def write_idx(path: Path, arr: np.ndarray) -> Path:
    """An IDX file written by hand from the format description (uint8 data)."""
    arr = np.asarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def fake_full_mnist(folder: Path, marker: int, gz: bool = True) -> dict[str, bytes]:
    """A tiny "full" MNIST (30 train, 10 test) whose pixel (0, 0) of every image is ``marker``."""
    out = {}
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0] = marker
        images[:, 5, 5] = np.arange(n)
        suffix = ".gz" if gz else ""
        for kind, arr in (("images-idx3", images), ("labels-idx1", np.arange(n) % 10)):
            p = write_idx(folder / f"{prefix}-{kind}-ubyte{suffix}", arr)
            out[p.name] = p.read_bytes()
    return out


def accept_fake_md5s(monkeypatch, files: dict[str, bytes]) -> None:
    """Make the fake files "official": their md5 (gzip) or size and md5 (raw IDX)."""
    for name, data in files.items():
        md5 = hashlib.md5(data).hexdigest()
        if name.endswith(".gz"):
            monkeypatch.setitem(mnist_mod.MNIST_MD5, name, md5)
        else:
            monkeypatch.setitem(mnist_mod.MNIST_RAW, name, (len(data), md5))


def vendored_reference() -> tuple[np.ndarray, np.ndarray]:
    """The vendored test split decoded independently (fixed 16- and 8-byte IDX headers)."""
    img = gzip.decompress((VENDOR / "t10k-images-idx3-ubyte.gz").read_bytes())
    lab = gzip.decompress((VENDOR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(img, np.uint8, offset=16).reshape(-1, 28, 28), np.frombuffer(
        lab, np.uint8, offset=8
    )


# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, suffix):
    arr = np.random.default_rng(0).integers(0, 256, (4, 3, 2), dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / f"a{suffix}", arr)), arr)
    ints = np.array([-3, 70000, 5], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + ints.tobytes()
    (tmp_path / "b").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), [-3, 70000, 5])


def test_read_idx_rejects_corrupt_files(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((2, 3), np.uint8))
    (tmp_path / "trunc").write_bytes(good.read_bytes()[:-1])
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good.read_bytes()[2:])
    (tmp_path / "broken.gz").write_bytes(gzip.compress(good.read_bytes())[:-6])
    for name, words in (("trunc", "truncated"), ("magic", "magic"), ("broken.gz", "IDX")):
        with pytest.raises(ValueError, match=words) as e:
            read_idx(tmp_path / name)
        assert name in str(e.value)


# ------------------------------------------------------------------------ vendored split


def test_vendored_split_found_with_no_environment(monkeypatch):
    assert mnist_mod.VENDOR_DIR == VENDOR.resolve()
    monkeypatch.setattr(mnist_mod, "_warned_fallback", False)
    with pytest.warns(DataFallbackWarning):
        train = load_mnist("train", download=False)
    test = load_mnist("test", download=False)
    ref_x, ref_y = vendored_reference()
    for ds, n in ((train, 9000), (test, 1000)):
        assert ds.source == "mnist-test-10k" and ds.meta["mode"] == "test-10k"
        assert ds.meta["found_in"].startswith("vendored")
        assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32
        assert ds.labels.shape == (n,) and ds.labels.dtype == torch.long
        idx = ds.meta["file_indices"].numpy()
        np.testing.assert_array_equal((ds.x[:, 0] * 255).round().byte().numpy(), ref_x[idx])
        np.testing.assert_array_equal(ds.labels.numpy(), ref_y[idx])
        for stem, rec in ds.meta["files"].items():
            assert rec["verified"] and rec["md5"] == MNIST_MD5[stem + ".gz"]
    a, b = set(train.meta["file_indices"].tolist()), set(test.meta["file_indices"].tolist())
    assert not a & b and a | b == set(range(10_000))
    assert all(i % 10 == 9 for i in b)
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) == 1.0


def test_fallback_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(mnist_mod, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_mnist("train", download=False)
        load_mnist("test", download=False)
        load_mnist("train", download=False)
    fallback = [w for w in caught if issubclass(w.category, DataFallbackWarning)]
    assert len(fallback) == 1
    assert "mnist-test-10k" in str(fallback[0].message) and "9,000" in str(fallback[0].message)


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", download=False)


# ------------------------------------------------------------------------- search order


def test_search_order_root_geco_data_cache(monkeypatch, tmp_path):
    # the same (fake, accepted) raw set in three places: found_in tells which one was used
    files = fake_full_mnist(tmp_path / "root", marker=11, gz=False)
    fake_full_mnist(tmp_path / "env" / "mnist", marker=11, gz=False)  # per-dataset sub-folder
    fake_full_mnist(tmp_path / "xdg-cache" / "geco_book" / "mnist", marker=11, gz=False)
    accept_fake_md5s(monkeypatch, files)
    monkeypatch.setenv("GECO_DATA", str(tmp_path / "env"))

    def found_in(**kw):
        ds = load_mnist("train", download=False, **kw)
        assert ds.source == "mnist-60k" and len(ds) == 30
        np.testing.assert_array_equal(ds.labels.numpy(), np.arange(30) % 10)
        assert round(float(ds.x[0, 0, 0, 0]) * 255) == 11
        return ds.meta["found_in"]

    assert found_in(root=tmp_path / "root") == f"root ({tmp_path / 'root'})"
    assert found_in() == f"$GECO_DATA ({tmp_path / 'env' / 'mnist'})"
    monkeypatch.delenv("GECO_DATA")
    cache = tmp_path / "xdg-cache" / "geco_book" / "mnist"
    assert found_in() == f"cache ({cache})"
    assert load_mnist("test", download=False).x.shape == (10, 1, 28, 28)


def test_raw_idx_files_are_verified_by_size_and_md5(monkeypatch, tmp_path):
    # the vendored t10k pair, uncompressed: the official raw files, accepted and verified
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in VENDOR.iterdir():
        (raw / p.name[: -len(".gz")]).write_bytes(gzip.decompress(p.read_bytes()))
    ds = load_mnist("test", root=raw, download=False)
    assert ds.source == "mnist-test-10k" and ds.meta["found_in"] == f"root ({raw})"
    assert all(r["verified"] for r in ds.meta["files"].values())
    for stem, rec in ds.meta["files"].items():
        assert rec["md5"] == mnist_mod.MNIST_RAW[stem][1]
    ref_x, _ = vendored_reference()
    np.testing.assert_array_equal((ds.x[:, 0] * 255).round().byte().numpy(), ref_x[9::10])

    # a fake "full" set in raw IDX: accepted only when its checksums are declared official
    files = fake_full_mnist(tmp_path / "fake", marker=7, gz=False)
    with pytest.raises(ValueError, match="bytes but the official uncompressed") as e:
        load_mnist("test", root=tmp_path / "fake", download=False)
    assert str(tmp_path / "fake") in str(e.value)
    accept_fake_md5s(monkeypatch, files)
    ds = load_mnist("test", root=tmp_path / "fake", download=False)
    assert ds.source == "mnist-60k" and len(ds) == 10
    np.testing.assert_array_equal((ds.x[:, 0, 5, 5] * 255).round().numpy(), np.arange(10))


def test_raw_noise_with_a_valid_header_and_the_official_size_is_refused(tmp_path):
    # the attack: random bytes behind valid IDX headers, at the official sizes, used to load
    # as "mnist-60k"
    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    for prefix, n in (("train", 60_000), ("t10k", 10_000)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    assert (folder / "train-images-idx3-ubyte").stat().st_size == 47_040_016
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        load_mnist("train", root=folder, download=False)
    assert str(folder) in str(e.value) and "not the official one" in str(e.value)


def test_folder_with_only_t10k_is_used_before_vendored(tmp_path):
    for p in VENDOR.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    ds = load_mnist("test", root=tmp_path, download=False)
    assert ds.source == "mnist-test-10k" and ds.meta["found_in"] == f"root ({tmp_path})"


# ------------------------------------------------------------------- checksums, errors


def test_bad_checksum_is_a_clear_error(tmp_path):
    for p in VENDOR.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    actual = hashlib.md5(bytes(data)).hexdigest()
    with pytest.raises(ValueError) as e:
        load_mnist("test", root=tmp_path, download=False)
    msg = str(e.value)
    assert str(target) in msg and MNIST_MD5[target.name] in msg and actual in msg
    assert target.read_bytes() == bytes(data)  # a user's file is never touched


def test_missing_data_error_says_what_was_searched(monkeypatch, tmp_path):
    empty = tmp_path / "no-vendor"
    empty.mkdir()
    monkeypatch.setattr(mnist_mod, "VENDOR_DIR", empty)
    (tmp_path / "mine").mkdir()  # existing folders without MNIST
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("GECO_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as e:
        load_mnist("train", root=tmp_path / "mine", download=False)
    msg = str(e.value)
    for needle in (
        str(tmp_path / "mine"),
        str(tmp_path / "env" / "mnist"),
        str(tmp_path / "xdg-cache" / "geco_book" / "mnist"),
        f"vendored: {empty}",
        "train-images-idx3-ubyte.gz",
        "download=False",
        "GECO_DATA=FOLDER",
        "download=True",
    ):
        assert needle in msg, needle


@pytest.mark.parametrize("loader", ["mnist", "mnist-rotate", "cifar10", "celeba"])
def test_a_data_folder_that_does_not_exist_is_an_error_not_a_fallback(monkeypatch, tmp_path,
                                                                       loader):
    from data_builders import load_dataset

    missing, a_file = tmp_path / "typo", tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(FileNotFoundError, match=r"^root: the folder .*typo.* does not exist"):
        load_dataset(loader, root=missing, download=False)
    with pytest.raises(ValueError, match=r"^root: .*file\.txt.* is a file, not a folder"):
        load_dataset(loader, root=a_file, download=False)
    monkeypatch.setenv("GECO_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=r"^GECO_DATA: the folder .*typo.* does not exist"):
        load_dataset(loader, download=False)
    monkeypatch.setenv("GECO_DATA", str(a_file))
    with pytest.raises(ValueError, match=r"^GECO_DATA: .* is a file, not a folder"):
        load_dataset(loader, download=False)
    monkeypatch.setenv("GECO_DATA", "")  # empty: unset
    if loader.startswith("mnist"):
        assert load_dataset(loader, split="test", download=False, n=4).source == "mnist-test-10k"


def test_fallback_warning_names_the_folders_the_user_gave(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist_mod, "_warned_fallback", False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("GECO_DATA", str(tmp_path / "env"))
    with pytest.warns(DataFallbackWarning) as caught:
        load_mnist("train", root=tmp_path / "mine", download=False)
    msg = str(caught[0].message)
    assert f"root={tmp_path / 'mine'}" in msg and f"GECO_DATA={tmp_path / 'env'}" in msg
    assert "hold no full MNIST" in msg and "Pass root=" not in msg


def test_loaders_take_keyword_arguments_after_split():
    from data_builders import load_dataset

    with pytest.raises(TypeError, match="positional"):
        load_mnist("train", 0)
    with pytest.raises(TypeError, match="positional"):
        load_dataset("mnist", "train", 0)
    ds = load_dataset("mnist", "test", seed=1, download=False, n=3)
    assert len(ds) == 3 and ds.meta["seed"] == 1


# ------------------------------------------------------------------------- downloads


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, fail_after: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection dropped")
        return super().read(size)


def serve(monkeypatch, table: dict[str, bytes], fail_after: int | None = None) -> list[str]:
    """Replace urlopen by a fake server of ``table`` (url suffix → bytes); returns the log."""
    log = []

    def fake_urlopen(req, timeout=None):
        url = req.full_url
        log.append(url)
        for suffix, data in table.items():
            if url.endswith(suffix):
                return FakeResponse(data, fail_after)
        raise URLError(f"unreachable: {url}")

    monkeypatch.setattr(core_mod, "urlopen", fake_urlopen)
    return log


def test_download_file_checks_md5_and_is_atomic(monkeypatch, tmp_path):
    data = (VENDOR / "t10k-labels-idx1-ubyte.gz").read_bytes()
    good = hashlib.md5(data).hexdigest()
    log = serve(monkeypatch, {"/b/labels.gz": data})
    dest = tmp_path / "d" / "labels.gz"
    # first mirror unreachable, second serves the file
    assert download_file(["http://a/labels.gz", "http://b/labels.gz"], dest, good) == dest
    assert dest.read_bytes() == data and len(log) == 2
    assert sorted(p.name for p in dest.parent.iterdir()) == ["labels.gz"]

    wrong = "0" * 32
    dest2 = tmp_path / "e" / "labels.gz"
    with pytest.raises(ValueError) as e:
        download_file("http://b/labels.gz", dest2, wrong)
    assert "labels.gz" in str(e.value) and wrong in str(e.value) and good in str(e.value)
    assert list(dest2.parent.iterdir()) == []  # no half-written or temporary file

    serve(monkeypatch, {"/b/labels.gz": data}, fail_after=1)
    with pytest.raises(OSError, match="connection dropped"):
        download_file("http://b/labels.gz", dest2, good)
    assert list(dest2.parent.iterdir()) == []


def test_load_mnist_downloads_into_cache_and_replaces_corrupt_cache(monkeypatch, tmp_path):
    files = fake_full_mnist(tmp_path / "server", marker=5)
    accept_fake_md5s(monkeypatch, files)
    log = serve(monkeypatch, {"/" + name: data for name, data in files.items()})
    ds = load_mnist("train", download=True)
    cache = tmp_path / "xdg-cache" / "geco_book" / "mnist"
    assert ds.source == "mnist-60k" and len(ds) == 30 and ds.meta["found_in"] == f"cache ({cache})"
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == files
    assert all(url.startswith(mnist_mod.MNIST_MIRRORS[0]) for url in log) and len(log) == 4

    # found in the cache next time, without downloading
    log.clear()
    assert len(load_mnist("test", download=False)) == 10 and log == []

    # a corrupt cached file is an error offline, and is replaced when downloading is allowed
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist("train", download=False)
    load_mnist("train", download=True)
    assert (cache / "train-labels-idx1-ubyte.gz").read_bytes() == files[
        "train-labels-idx1-ubyte.gz"
    ]
    assert log == [mnist_mod.MNIST_MIRRORS[0] + "train-labels-idx1-ubyte.gz"]


def test_failed_auto_download_falls_back_but_explicit_download_raises(monkeypatch):
    serve(monkeypatch, {})  # every mirror unreachable
    monkeypatch.setenv("GECO_DOWNLOAD", "1")
    with pytest.warns(UserWarning, match="download failed"):
        ds = load_mnist("test", download=None)
    assert ds.source == "mnist-test-10k"
    with pytest.raises(OSError, match="could not download"):
        load_mnist("test", download=True)


def test_download_allowed_resolution(monkeypatch):
    assert download_allowed(True)[0] and not download_allowed(False)[0]
    assert not download_allowed(None)[0]  # GECO_DOWNLOAD=0 from the fixture; no probe made
    monkeypatch.setenv("GECO_DOWNLOAD", "1")
    assert download_allowed(None) == (True, "$GECO_DOWNLOAD=1")
    monkeypatch.delenv("GECO_DOWNLOAD")
    monkeypatch.setattr(core_mod, "network_available", lambda host: False)
    assert download_allowed(None) == (False, "download=None and no network is reachable")
    monkeypatch.setattr(core_mod, "network_available", lambda host: host == "pypi.org")
    assert download_allowed(None, ("mirror.example", "pypi.org")) == (
        True, "download=None and pypi.org is reachable")
    monkeypatch.setenv("GECO_DOWNLOAD", "maybe")
    with pytest.raises(ValueError, match="^GECO_DOWNLOAD: 'maybe'"):
        download_allowed(None)
    with pytest.raises(TypeError, match="^download must be True, False or None, got 'yes'"):
        download_allowed("yes")
