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

Training uses ``data_builders.load_mnist("train")`` and evaluates on ``load_mnist("test")``;
the source they come from picks the file written. Re-train with::

    python -m geco_core.models.classifier --train

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

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import geco_core
from geco_core.io import atomic_write, write_text
from geco_core.models.layers import check_images

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
#: The cached classifier of each MNIST data source (``ImageDataset.source``).
CLASSIFIER_FILES: dict[str, str] = {
    "mnist-60k": "mnist_classifier_60k.pt",
    "mnist-test-10k": "mnist_classifier.pt",
}
#: The default weights: the classifier of the official 60k training split.
WEIGHTS_PATH = ASSETS_DIR / CLASSIFIER_FILES["mnist-60k"]
TRAIN_HINT = "train it with: python -m geco_core.models.classifier --train"

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


# -- training ------------------------------------------------------------------------------
def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by an integer offset in [−max_shift, max_shift]² (zero fill)."""
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    off = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).to(x.device)
    rows = off[0, :, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = off[1, :, None] + torch.arange(w, device=x.device)  # [B, W]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, labels: Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``net`` on ``(x, labels)`` (eval mode)."""
    was_training = net.training
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (net(x[i : i + batch]).argmax(-1) == labels[i : i + batch]).sum().item()
    net.train(was_training)
    return correct / len(x)


def _load_splits():
    from data_builders import load_mnist

    return load_mnist("train"), load_mnist("test")


def train_classifier(
    out: str | os.PathLike | None = None,
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 2e-3,
    max_shift: int = 2,
    seed: int = 0,
    device: str | None = None,
) -> dict:
    """Train :class:`MNISTClassifier` on ``load_mnist("train")``, evaluate on
    ``load_mnist("test")``, and write the weights and their metadata JSON atomically
    (``out``, default the file of the data source found: :func:`weights_path`).

    Adam with a one-cycle learning-rate schedule, random ±``max_shift`` pixel shifts.
    Returns the metadata dict (also written to ``<out>.json``).
    """
    from tqdm.auto import tqdm

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, test = _load_splits()
    if train.source != test.source:
        raise RuntimeError(f"train split from {train.source!r}, test split from {test.source!r}")
    out = weights_path(train.source) if out is None else Path(out)
    x, y = train.x.to(dev), train.labels.to(dev)
    net = MNISTClassifier().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    t0 = time.perf_counter()
    net.train()
    bar = tqdm(range(epochs), desc="classifier", unit="epoch")
    for _ in bar:
        perm = torch.randperm(len(x), generator=gen).to(dev)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(net(random_shift(x[idx], max_shift, gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    train_s = time.perf_counter() - t0
    net = net.cpu()
    acc_test = accuracy(net, test.x, test.labels)
    acc_train = accuracy(net, train.x, train.labels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    with atomic_write(out) as f:
        torch.save(state, f)
    meta = {
        "file": out.name,
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "n_params": sum(p.numel() for p in net.parameters()),
        "heldout_accuracy": acc_test,
        "train_accuracy": acc_train,
        "data": {
            "train": {"source": train.source, "n": len(train.labels), "split": "train"},
            "heldout": {"source": test.source, "n": len(test.labels), "split": "test"},
            "description": {
                "train": train.meta.get("description", ""),
                "heldout": test.meta.get("description", ""),
            },
        },
        "training": {
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "Adam + OneCycleLR",
            "max_lr": lr,
            "augmentation": f"random integer shifts in [-{max_shift}, {max_shift}] px",
            "device": str(dev),
            "seconds": round(train_s, 1),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "geco_core": geco_core.__version__,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(meta, indent=2) + "\n"
    write_text(_meta_path(out), text)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m geco_core.models.classifier",
        description="Train the MNIST classifier used by the CLA/FRE constraints.",
    )
    ap.add_argument("--train", action="store_true", help="train and write the cached weights")
    ap.add_argument("--out", default=None,
                    help="weights file (.json beside it; default: the asset of the data source "
                    "found, geco_core/assets/" + " or ".join(CLASSIFIER_FILES.values()) + ")")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    args = ap.parse_args(argv)
    if not args.train:
        ap.print_help()
        return 2
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    meta = train_classifier(args.out, epochs=args.epochs, seed=args.seed, device=args.device)
    print(
        f"held-out accuracy {meta['heldout_accuracy']:.4f} on {meta['data']['heldout']['n']} "
        f"images ({meta['data']['heldout']['source']}); wrote {meta['file']} "
        f"({meta['bytes']} bytes, sha256 {meta['sha256'][:12]}…) in "
        f"{meta['training']['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
