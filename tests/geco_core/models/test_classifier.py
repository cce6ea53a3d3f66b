"""Tests of the MNIST classifier: cached weights (sha256, accuracy), features, errors."""

import json
import shutil

import pytest
import torch

from geco_core.models.classifier import (
    CLASSIFIER_FILES,
    WEIGHTS_PATH,
    MNISTClassifier,
    classifier_sha256,
    load_pretrained_classifier,
    sha256_file,
    weights_path,
)

META_PATH = WEIGHTS_PATH.with_suffix(".json")
#: Each cached classifier's training and held-out images: (train n, held-out n).
SIZES = {"mnist-60k": (60_000, 10_000), "mnist-test-10k": (9_000, 1_000)}


def _heldout(source: str):
    """The images a classifier's metadata reports its accuracy on, rebuilt from the vendored
    official test split: all 10,000 for the 60k classifier (trained on the official training
    split), the 1,000 with index i % 10 == 9 for the fallback one (trained on the others)."""
    mnist = pytest.importorskip("data_builders.mnist")
    x = mnist.read_idx(mnist.VENDOR_DIR / "t10k-images-idx3-ubyte.gz")
    y = mnist.read_idx(mnist.VENDOR_DIR / "t10k-labels-idx1-ubyte.gz")
    x = torch.from_numpy(x.copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(y.astype("int64"))
    return (x, y) if source == "mnist-60k" else (x[9::10], y[9::10])


@pytest.mark.parametrize("source", list(CLASSIFIER_FILES))
def test_cached_weights_verify_and_are_small(source):
    path = weights_path(source)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert sha256_file(path) == meta["sha256"] == classifier_sha256(source)
    assert path.stat().st_size < 1_000_000
    assert meta["heldout_accuracy"] >= (0.99 if source == "mnist-60k" else 0.98)
    assert meta["data"]["train"]["source"] == meta["data"]["heldout"]["source"] == source
    assert (meta["data"]["train"]["n"], meta["data"]["heldout"]["n"]) == SIZES[source]
    assert {"seed", "epochs"} <= set(meta["training"]) and "torch" in meta["versions"]
    net = load_pretrained_classifier(source=source)
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_the_default_classifier_is_the_60k_one_and_sources_are_checked():
    assert WEIGHTS_PATH == weights_path("mnist-60k")
    with pytest.raises(ValueError, match="^source: no MNIST classifier for data source 'cifar10'"):
        weights_path("cifar10")


@pytest.mark.parametrize("source", list(CLASSIFIER_FILES))
def test_heldout_accuracy_of_cached_weights(source):
    x, y = _heldout(source)
    assert len(y) == SIZES[source][1]
    net = load_pretrained_classifier(source=source)
    with torch.no_grad():
        acc = (net(x).argmax(-1) == y).sum().item() / len(y)
    meta = json.loads(weights_path(source).with_suffix(".json").read_text())
    assert acc >= 0.98
    assert abs(acc - meta["heldout_accuracy"]) < 1e-9


def test_corrupted_or_missing_weights_raise(tmp_path):
    w = tmp_path / "clf.pt"
    shutil.copy(WEIGHTS_PATH, w)
    shutil.copy(META_PATH, w.with_suffix(".json"))
    load_pretrained_classifier(w)  # an intact copy loads
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        load_pretrained_classifier(w)
    w.unlink()
    with pytest.raises(FileNotFoundError, match="--train"):
        load_pretrained_classifier(w)
    # a file that matches its (rewritten) sha256 but is not our state_dict
    torch.save({"foo": torch.zeros(3)}, w)
    meta = json.loads(w.with_suffix(".json").read_text())
    meta["sha256"] = sha256_file(w)
    w.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="does not fit"):
        load_pretrained_classifier(w)


def test_probs_features_and_input_gradients():
    net = load_pretrained_classifier()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    p = net.probs(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(3))
    assert net.features(x, 2).shape == (3, 16, 28, 28)
    assert net.features(x, 6).shape == (3, 32, 7, 7)
    torch.testing.assert_close(net.features(x, len(net.layers)), net(x))
    # the CLA / FRE constraints differentiate through the frozen classifier w.r.t. its input
    (p[:, 3].sum() + net.features(x, 5).square().sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(q.grad is None for q in net.parameters())
    with pytest.raises(ValueError, match="depth"):
        net.features(x, 0)
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(2, 3, 28, 28))


def test_untrained_network_differs_from_cached():
    torch.manual_seed(0)
    fresh = MNISTClassifier()
    cached = load_pretrained_classifier()
    x = torch.rand(2, 1, 28, 28)
    assert not torch.allclose(fresh.eval()(x), cached(x))
