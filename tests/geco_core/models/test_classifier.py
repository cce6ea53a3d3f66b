"""Tests of the MNIST classifier: cached weights (sha256, accuracy), features, errors."""

import json
import shutil
import warnings

import pytest
import torch

from geco_core.models.classifier import (
    WEIGHTS_PATH,
    MNISTClassifier,
    load_pretrained_classifier,
    main,
    random_shift,
    sha256_file,
)

META_PATH = WEIGHTS_PATH.with_suffix(".json")


def _heldout():
    """The 1,000 images the cached weights never saw: the fallback's "test" split, or the same
    images (index i % 10 == 9 of the official test split) when the full MNIST is present."""
    load_mnist = pytest.importorskip("data_builders.mnist").load_mnist
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback's provenance warning
        ds = load_mnist("test", download=False)
    x, y = ds.x, ds.labels
    if ds.source == "mnist-60k":
        x, y = x[9::10], y[9::10]
    return x, y


def test_cached_weights_verify_and_are_small():
    meta = json.loads(META_PATH.read_text())
    assert sha256_file(WEIGHTS_PATH) == meta["sha256"]
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    assert meta["heldout_accuracy"] >= 0.98
    assert meta["data"]["heldout"]["n"] >= 1000 and "source" in meta["data"]["train"]
    assert {"seed", "epochs"} <= set(meta["training"]) and "torch" in meta["versions"]
    net = load_pretrained_classifier()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_heldout_accuracy_of_cached_weights():
    x, y = _heldout()
    assert len(y) == 1000
    net = load_pretrained_classifier()
    with torch.no_grad():
        acc = (net(x).argmax(-1) == y).sum().item() / len(y)
    assert acc >= 0.98
    assert abs(acc - json.loads(META_PATH.read_text())["heldout_accuracy"]) < 1e-9


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


def test_random_shift_is_a_translation():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(50, 1, 28, 28)
    x[:, 0, 10:14, 12:15] = torch.rand(50, 4, 3, generator=g)
    y = random_shift(x, 2, g)
    shifts = set()
    for b in range(50):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y[b], torch.roll(x[b], (dy, dx), dims=(1, 2)))
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # many different offsets are drawn
    assert torch.equal(random_shift(x, 0, g), x)


def test_cli_without_train_flag_prints_help(capsys):
    assert main([]) == 2
    assert "--train" in capsys.readouterr().out


def test_untrained_network_differs_from_cached():
    torch.manual_seed(0)
    fresh = MNISTClassifier()
    cached = load_pretrained_classifier()
    x = torch.rand(2, 1, 28, 28)
    assert not torch.allclose(fresh.eval()(x), cached(x))
