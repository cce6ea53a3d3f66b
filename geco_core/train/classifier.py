"""Training the MNIST classifier of the CLA / FRE constraints (Table 1): the part of
:mod:`geco_core.models.classifier` that reads data, so it lives with the training engine.

:func:`train_classifier` trains :class:`~geco_core.models.classifier.MNISTClassifier` on
``data_builders.load_mnist("train")`` (Adam, one-cycle schedule, random pixel shifts),
evaluates it on ``load_mnist("test")`` and writes the weights of the data source found
(:func:`~geco_core.models.classifier.weights_path`) with their metadata, atomically. CLI::

    python -m geco_core.train.classifier --train

Example:
    >>> import torch
    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 1.0
    >>> y = random_shift(x, 1, torch.Generator().manual_seed(0))
    >>> y.sum().item(), y.shape
    (1.0, torch.Size([1, 1, 3, 3]))
"""

from __future__ import annotations

import argparse
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
from geco_base.io import atomic_write, write_text
from geco_core.models.classifier import (
    CLASSIFIER_FILES,
    MNISTClassifier,
    _meta_path,
    sha256_file,
    weights_path,
)

__all__ = ["accuracy", "main", "random_shift", "train_classifier"]


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
        prog="python -m geco_core.train.classifier",
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
