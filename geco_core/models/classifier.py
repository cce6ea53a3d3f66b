"""The small conv MNIST classifier of Table 1 (CLA constraint) and its first layers (FRE features).

Table 1 of the paper: "For the CLA constraint, c(x) is a simple convolutional MNIST classifier
that outputs class probabilities" — :meth:`MNISTClassifier.probs`; the FRE constraint compares
features f(x) of the first layers of a classification network — :meth:`MNISTClassifier.features`
(the paper used a CIFAR-10 ResNet for colour data; for MNIST we use this network's first
layers).

Cached weights, one network per MNIST data source (:data:`CLASSIFIER_FILES`), each a
``state_dict`` (< 1 MB) with a ``.json`` beside it (its sha256, held-out accuracy, data source,
seed, versions); :func:`load_pretrained_classifier` checks the sha256 and loads with
``weights_only=True``:

- ``mnist_classifier_60k.pt``: trained on the official 60k training split, evaluated on the
  official 10k test split (``source="mnist-60k"``); what runs on the official MNIST use;
- ``mnist_classifier.pt``: trained on 9,000 images of the official 10k test split and
  evaluated on the disjoint other 1,000 (image i held out iff i % 10 == 9;
  ``source="mnist-test-10k"``), the fallback when only the vendored test split is there. It is
  kept for the runs made on that fallback: a classifier trained on test images must not
  score a model evaluated on the official test split.

The network needs no data code; training it does, so it lives with the training engine
(:mod:`geco_core.train.classifier`: trained on ``load_mnist("train")``, evaluated on
``load_mnist("test")``, the source they come from picking the file written). Re-train with::

    python -m geco_core.train.classifier --train

References:
    Rezende & Viola, "Taming VAEs" (2018), Table 1 (CLA, FRE), Fig. 8 (CLA on Micro-MNIST).
    LeCun et al., "Gradient-based learning applied to document recognition" (1998).

Example:
    >>> import torch
    >>> net = MNISTClassifier()
    >>> x = torch.rand(2, 1, 28, 28)
    >>> net(x).shape, net.probs(x).sum(-1).round().tolist(), net.features(x, 2).shape
    (torch.Size([2, 10]), [1.0, 1.0], torch.Size([2, 16, 28, 28]))
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from geco_core.models.layers import check_images

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
#: The cached classifier of each MNIST data source (``ImageDataset.source``).
CLASSIFIER_FILES: dict[str, str] = {
    "mnist-60k": "mnist_classifier_60k.pt",
    "mnist-test-10k": "mnist_classifier.pt",
}
#: The default weights: the classifier of the official 60k training split.
WEIGHTS_PATH = ASSETS_DIR / CLASSIFIER_FILES["mnist-60k"]
TRAIN_HINT = "train it with: python -m geco_core.train.classifier --train"

# Fixed input standardisation (MNIST pixel mean / std); part of the network, not of the data.
_MEAN, _STD = 0.1307, 0.3081


class MNISTClassifier(nn.Module):
    """LeNet-style conv classifier: two 5×5 conv + ReLU + 2×2 max-pool blocks, then an MLP.

    ``self.layers`` (an ``nn.Sequential``), by index: 0 conv(1→16), 1 ReLU, 2 pool (14×14),
    3 conv(16→32), 4 ReLU, 5 pool (7×7), 6 flatten, 7 linear(1568→64), 8 ReLU, 9 dropout,
    10 linear(64→10). Input: images ``[B, 1, 28, 28]`` in [0, 1]. About 114k parameters.

    Example:
        >>> MNISTClassifier().features(torch.rand(3, 1, 28, 28), depth=5).shape
        torch.Size([3, 32, 14, 14])
    """

    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, 10),
        )

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must have shape [B, 1, 28, 28], got {list(x.shape)}")
        check_images(self, x, "x")
        return (x - _MEAN) / _STD

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, 10]``."""
        return self.layers(self._check(x))

    def probs(self, x: Tensor) -> Tensor:
        """Class probabilities c(x) ``[B, 10]`` (the CLA constraint's classifier)."""
        return torch.softmax(self(x), dim=-1)

    def features(self, x: Tensor, depth: int = 5) -> Tensor:
        """Activations after the first ``depth`` modules of ``self.layers`` (FRE features f(x)).

        depth 2: conv1+ReLU ``[B, 16, 28, 28]``; 3: pooled ``[B, 16, 14, 14]``; 5: conv2+ReLU
        ``[B, 32, 14, 14]``; 6: pooled ``[B, 32, 7, 7]``; up to 11 (the logits).
        """
        if not 1 <= depth <= len(self.layers):
            raise ValueError(f"depth must be in 1..{len(self.layers)}, got {depth}")
        return self.layers[:depth](self._check(x))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def weights_path(source: str = "mnist-60k") -> Path:
    """The cached weights of the classifier for MNIST data of ``source``
    (:data:`CLASSIFIER_FILES`).

    Example:
        >>> weights_path("mnist-test-10k").name
        'mnist_classifier.pt'
    """
    if source not in CLASSIFIER_FILES:
        raise ValueError(
            f"source: no MNIST classifier for data source {source!r}; sources: "
            f"{', '.join(CLASSIFIER_FILES)}"
        )
    return ASSETS_DIR / CLASSIFIER_FILES[source]


def classifier_sha256(source: str = "mnist-60k") -> str:
    """The recorded sha256 of the cached classifier for ``source`` (from its ``.json``; what a
    run store keys CLA/FRE runs by)."""
    meta = _meta_path(weights_path(source))
    if not meta.is_file():
        raise FileNotFoundError(f"classifier file {meta} is missing; {TRAIN_HINT}")
    return json.loads(meta.read_text())["sha256"]


def load_pretrained_classifier(
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    source: str = "mnist-60k",
) -> MNISTClassifier:
    """The cached classifier, sha256-verified, in eval mode with frozen parameters.

    Args:
        path: weights file (default: the one of ``source``, :func:`weights_path`); its
            metadata is the ``.json`` next to it.
        device: where to put it (default CPU).
        source: the data source (``ImageDataset.source``) of the images it will score:
            ``"mnist-60k"`` (default) or ``"mnist-test-10k"``.

    Raises:
        FileNotFoundError: weights or metadata missing (the message says how to train them).
        RuntimeError: sha256 mismatch (corrupted or replaced file) or unloadable weights.

    Example:
        >>> clf = load_pretrained_classifier()
        >>> clf.probs(torch.rand(1, 1, 28, 28)).shape, clf.training
        (torch.Size([1, 10]), False)
    """
    weights = Path(path) if path is not None else weights_path(source)
    meta_file = _meta_path(weights)
    for p in (weights, meta_file):
        if not p.is_file():
            raise FileNotFoundError(f"classifier file {p} is missing; {TRAIN_HINT}")
    meta = json.loads(meta_file.read_text())
    expected, actual = meta.get("sha256"), sha256_file(weights)
    if actual != expected:
        raise RuntimeError(
            f"sha256 mismatch for {weights}: expected {expected} (from {meta_file.name}), got "
            f"{actual}; the weights are corrupted or replaced; {TRAIN_HINT}"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = MNISTClassifier()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"{weights} does not fit MNISTClassifier ({e}); {TRAIN_HINT}") from e
    net.eval().requires_grad_(False)
    return net.to(device) if device is not None else net
