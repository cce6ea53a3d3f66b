"""The paper's MNIST variants (§4.1, Appendix E.1) and the rotation they use.

Every item is checked against the MNIST images it claims to be made of (``meta["indices"]``
into ``load_mnist(split)``) and against the label relation of the paper. No network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from data_builders import DATASETS, ImageDataset, load_dataset, load_mnist, rotate_images

pytestmark = pytest.mark.filterwarnings("ignore::data_builders.DataFallbackWarning")
MNIST_VARIANTS = [n for n in DATASETS if n not in ("cifar10", "celeba")]
N = 400


@pytest.fixture(scope="module")
def pools():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GECO_DOWNLOAD", "0")
        mp.delenv("GECO_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", "/nonexistent-geco-cache")
        return {s: load_mnist(s, download=False) for s in ("train", "test")}


def build(name, split="train", seed=0, n=N):
    return load_dataset(name, split=split, seed=seed, download=False, n=n)


def digits(pool: ImageDataset, idx: torch.Tensor) -> torch.Tensor:
    """Reference: the pool images ``idx`` [n] as ``[n, 28, 28]``."""
    return pool.x[idx, 0]


def check_triplet_items(ds, pool, relation):
    idx = ds.meta["indices"]
    assert idx.shape == (len(ds), 3) and ds.labels.shape == (len(ds), 3)
    assert torch.equal(ds.labels, pool.labels[idx])
    l0, l1, l2 = ds.labels.unbind(1)
    assert torch.equal(l2, (l0 + l1) % 10 if relation == "sum" else l0)
    assert (idx[:, 2] != idx[:, 0]).all() and (idx[:, 2] != idx[:, 1]).all()
    assert ds.source == pool.source == "mnist-test-10k"
    return idx


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_triplets(pools, split):
    ds, pool = build("mnist-triplets", split), pools[split]
    idx = check_triplet_items(ds, pool, "sum")
    assert ds.context is None and ds.x.shape == (N, 3, 28, 28) and ds.split == split
    for k in range(3):
        assert torch.equal(ds.x[:, k], digits(pool, idx[:, k]))
    assert ds.meta["x_label_columns"] == (0, 1, 2)


def test_mnist_sum(pools):
    ds, pool = build("mnist-sum"), pools["train"]
    idx = check_triplet_items(ds, pool, "sum")
    assert ds.context.shape == (N, 2, 28, 28) and ds.x.shape == (N, 1, 28, 28)
    assert torch.equal(ds.context[:, 0], digits(pool, idx[:, 0]))
    assert torch.equal(ds.context[:, 1], digits(pool, idx[:, 1]))
    assert torch.equal(ds.x[:, 0], digits(pool, idx[:, 2]))
    assert ds.meta["x_label_columns"] == (2,)
    # the relation is not trivially satisfied: all ten target classes occur
    assert set(ds.labels[:, 2].tolist()) == set(range(10))


def test_mnist_sum_hard(pools):
    ds, pool = build("mnist-sum-hard"), pools["train"]
    idx = check_triplet_items(ds, pool, "sum")
    assert ds.context.shape == (N, 1, 28, 28) and ds.x.shape == (N, 2, 28, 28)
    assert torch.equal(ds.context[:, 0], digits(pool, idx[:, 2]))
    assert torch.equal(ds.x[:, 0], digits(pool, idx[:, 0]))
    assert torch.equal(ds.x[:, 1], digits(pool, idx[:, 1]))
    assert ds.meta["x_label_columns"] == (0, 1)


def test_mnist_rotate(pools):
    ds, pool = build("mnist-rotate"), pools["train"]
    idx = check_triplet_items(ds, pool, "same-as-l0")
    assert ds.context.shape == (N, 2, 28, 28) and ds.x.shape == (N, 1, 28, 28)
    assert torch.equal(ds.context[:, 0], digits(pool, idx[:, 0]))
    assert torch.equal(ds.context[:, 1], digits(pool, idx[:, 1]))
    # I2 is another instance of the same class as I0: never the same pixels
    diff = (digits(pool, idx[:, 0]) - digits(pool, idx[:, 2])).abs().flatten(1).amax(1)
    assert (diff > 0).all()
    # target = I2 rotated counter-clockwise by l1 * 30 degrees; reference: scipy.ndimage
    l1 = ds.labels[:, 1]
    i2 = digits(pool, idx[:, 2]).double().numpy()
    ref = np.stack(
        [
            ndimage.rotate(im, 30.0 * int(a), reshape=False, order=1, mode="grid-constant")
            for im, a in zip(i2, l1)
        ]
    )
    np.testing.assert_allclose(ds.x[:, 0].numpy(), ref, atol=1e-5)
    # and exactly torch.rot90 for the right angles (l1 = 0, 3, 6, 9)
    for k in (0, 3, 6, 9):
        sel = l1 == k
        assert sel.any()
        rot = torch.rot90(digits(pool, idx[sel, 2]), k // 3, dims=(-2, -1))
        torch.testing.assert_close(ds.x[sel, 0], rot, atol=1e-5, rtol=0)
    assert set(l1.tolist()) == set(range(10))
    assert ds.meta["rotate_deg_per_label"] == 30.0


def test_color_mnist(pools):
    n = 3000
    ds, pool = build("color-mnist", n=n), pools["train"]
    idx = ds.meta["indices"]
    assert ds.x.shape == (n, 3, 28, 28) and ds.labels.shape == (n, 3) and ds.context is None
    for c in range(3):  # each channel is the MNIST image whose label is stored
        assert torch.equal(ds.x[:, c], digits(pool, idx[:, c]))
        assert torch.equal(ds.labels[:, c], pool.labels[idx[:, c]])
    assert (idx[:, 0] != idx[:, 1]).all() and (idx[:, 0] != idx[:, 2]).all()
    assert (idx[:, 1] != idx[:, 2]).all()
    # 1,000 modes drawn independently: 3,000 items hit ~1000 (1 - e^-3) ≈ 950 of them
    modes = (100 * ds.labels[:, 0] + 10 * ds.labels[:, 1] + ds.labels[:, 2]).unique()
    assert 900 < len(modes) <= 1000


def test_micro_mnist(pools):
    ds = load_dataset("micro-mnist", seed=3, download=False)
    pool = pools["train"]
    idx = ds.meta["indices"]
    assert len(ds) == 7 and ds.labels.shape == (7,) and len(set(idx.tolist())) == 7
    assert torch.equal(ds.x, pool.x[idx]) and torch.equal(ds.labels, pool.labels[idx])
    assert ds.name == "micro-mnist" and ds.source == "mnist-test-10k"
    assert len(load_dataset("micro-mnist", download=False, n=12)) == 12


def test_plain_mnist_and_subset(pools):
    full = load_dataset("mnist", split="test", download=False)
    assert torch.equal(full.x, pools["test"].x)
    sub = load_dataset("mnist", split="test", download=False, n=50, seed=1)
    assert torch.equal(sub.x, pools["test"].x[sub.meta["indices"]])
    with pytest.raises(ValueError, match="n="):
        load_dataset("mnist", split="test", download=False, n=1001)


@pytest.mark.parametrize("name", MNIST_VARIANTS)
def test_same_seed_same_tensors_other_seed_different(name):
    n = 7 if name == "micro-mnist" else 64
    a, b, c = build(name, seed=5, n=n), build(name, seed=5, n=n), build(name, seed=6, n=n)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert (a.context is None) == (b.context is None)
    if a.context is not None:
        assert torch.equal(a.context, b.context)
    assert not torch.equal(a.x, c.x)
    assert a.meta["seed"] == 5 and len(a) == n


def test_default_size_is_the_pool(pools):
    ds = load_dataset("mnist-sum", split="test", download=False)
    assert len(ds) == len(pools["test"]) == 1000


def test_unknown_names_and_options():
    with pytest.raises(ValueError) as e:
        load_dataset("mnist-product", download=False)
    for name in DATASETS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="unknown option.*'m'.*valid options: \\['n'\\]"):
        load_dataset("mnist-sum", download=False, m=3)
    with pytest.raises(ValueError, match="n must be"):
        build("mnist-sum", n=0)


# ------------------------------------------------------------------------------ rotation


def test_rotate_identity_full_turn_and_rot90():
    x = torch.rand(6, 2, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rotate_images(x, 0.0), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_images(x, 360.0), x, atol=1e-4, rtol=0)
    for k in (1, 2, 3):
        torch.testing.assert_close(
            rotate_images(x, 90.0 * k), torch.rot90(x, k, dims=(-2, -1)), atol=1e-5, rtol=0
        )
    # per-item angles
    angles = torch.tensor([0.0, 90.0, 180.0, 270.0, -90.0, 450.0])
    out = rotate_images(x, angles)
    for i, k in enumerate([0, 1, 2, 3, 3, 1]):
        torch.testing.assert_close(out[i], torch.rot90(x[i], k, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotate_non_square_keeps_pixels_square():
    img = torch.zeros(1, 1, 11, 17)
    img[0, 0, 5, 11] = 1.0  # 3 px right of the centre (5, 8)
    out = rotate_images(img, 90.0)[0, 0]
    assert out[2, 8] == pytest.approx(1.0, abs=1e-5)  # now 3 px above it
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)


def test_rotate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="images"):
        rotate_images(torch.zeros(28, 28), 10.0)
    with pytest.raises(ValueError, match="angles_deg"):
        rotate_images(torch.zeros(3, 1, 28, 28), torch.zeros(2))


# ------------------------------------------------------------------------ ImageDataset


def test_image_dataset_checks_and_moves():
    x = torch.zeros(4, 1, 8, 8)
    ds = ImageDataset(x=x, labels=torch.arange(4), context=torch.zeros(4, 2, 8, 8), name="t")
    assert len(ds) == 4 and ds.to("cpu").x.device.type == "cpu"
    assert "x=[4, 1, 8, 8]" in repr(ds) and "tensor(" not in repr(ds)
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(x=x, labels=torch.arange(3))
    with pytest.raises(ValueError, match="context"):
        ImageDataset(x=x, labels=torch.arange(4), context=torch.zeros(4, 1, 7, 8))
    with pytest.raises(ValueError, match="float"):
        ImageDataset(x=x.long(), labels=torch.arange(4))


def test_fingerprint_identifies_the_data():
    a, b = build("mnist-sum", seed=0, n=32), build("mnist-sum", seed=0, n=32)
    fp = a.fingerprint()
    assert fp == b.fingerprint()  # the same data: the same fingerprint
    assert fp["dataset"] == "mnist-sum" and fp["split"] == "train" and fp["n"] == 32
    assert fp["source"] == a.source and len(fp["sha256"]) == 64
    assert build("mnist-sum", seed=1, n=32).fingerprint()["sha256"] != fp["sha256"]
    changed = ImageDataset(
        x=a.x, labels=a.labels, context=1 - a.context, source=a.source, name=a.name, split=a.split
    )
    assert changed.fingerprint()["sha256"] != fp["sha256"]  # the context counts too
    assert build("mnist-sum", split="test", n=32).fingerprint()["split"] == "test"


@pytest.fixture
def official_layout(monkeypatch, tmp_path):
    """A "full" MNIST folder: 300 fake training images (noise, declared official for the test:
    unlike every real digit) and the official t10k files; returns (folder, train pool)."""
    import gzip
    import hashlib

    from data_builders import mnist as mnist_mod

    folder = tmp_path / "full-mnist"
    folder.mkdir()
    rng = np.random.default_rng(1)
    arrays = {"images-idx3": (rng.random((300, 28, 28)) < 0.3).astype(np.uint8) * 255,
              "labels-idx1": (np.arange(300) % 10).astype(np.uint8)}
    for kind, arr in arrays.items():
        raw = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.tobytes()
        data = gzip.compress(raw, mtime=0)
        (folder / f"train-{kind}-ubyte.gz").write_bytes(data)
        monkeypatch.setitem(mnist_mod.MNIST_MD5, f"train-{kind}-ubyte.gz",
                            hashlib.md5(data).hexdigest())
    for p in mnist_mod.VENDOR_DIR.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder, load_mnist("train", root=folder, download=False)


@pytest.mark.parametrize("name", MNIST_VARIANTS)
def test_on_the_official_split_every_training_item_is_made_of_training_images(
        name, official_layout):
    """With the 60k split present, a variant's train split holds only training-split digits
    (every 28×28 plane of x and context, the rotated target of MNIST-rotate aside) and says
    so (``source="mnist-60k"``, the pool it drew from)."""
    folder, train = official_layout
    n = 7 if name == "micro-mnist" else 40
    ds = load_dataset(name, split="train", seed=0, root=folder, download=False, n=n)
    assert ds.source == "mnist-60k" and train.source == "mnist-60k"
    assert ds.meta["pool"].startswith("load_mnist('train')")
    pool = {bytes(p.numpy().tobytes()) for p in (train.x[:, 0] * 255).round().to(torch.uint8)}
    planes = [ds.x[:, c] for c in range(ds.x.shape[1])]
    if name == "mnist-rotate":
        planes = []  # the target is a rotation; its context holds the raw digits
    if ds.context is not None:
        planes += [ds.context[:, c] for c in range(ds.context.shape[1])]
    assert planes or name == "mnist-rotate"
    for plane in planes:
        for img in (plane * 255).round().to(torch.uint8):
            assert bytes(img.numpy().tobytes()) in pool
