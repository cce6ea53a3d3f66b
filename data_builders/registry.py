"""Every dataset of the book by name: :func:`load_dataset`.

Example:
    >>> ds = load_dataset("micro-mnist", seed=0, download=False)
    >>> len(ds), ds.labels.shape
    (7, torch.Size([7]))
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from data_builders import variants
from data_builders.celeba import load_celeba
from data_builders.cifar import load_cifar10
from data_builders.core import ImageDataset

__all__ = ["DATASETS", "ONE_DIGIT_TARGETS", "SPLITS", "load_dataset"]

#: name → builder ``(split, *, seed, root, download, **options) -> ImageDataset`` (every
#: argument after ``split`` keyword-only, as in :func:`load_dataset`).
DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "mnist": variants.mnist,
    "micro-mnist": variants.micro_mnist,
    "mnist-triplets": variants.mnist_triplets,
    "mnist-sum": variants.mnist_sum,
    "mnist-sum-hard": variants.mnist_sum_hard,
    "mnist-rotate": variants.mnist_rotate,
    "color-mnist": variants.color_mnist,
    "cifar10": load_cifar10,
    "celeba": load_celeba,
}


#: The splits of each dataset (``("train", "test")`` unless listed).
SPLITS: dict[str, tuple[str, ...]] = {name: ("train", "test") for name in DATASETS}
SPLITS["celeba"] = ("train", "valid", "test")

#: Datasets whose target ``x`` is one 1×28×28 MNIST digit with one label: what the pretrained
#: MNIST classifier of the CLA constraint (and of ``FRE(features="classifier")``) can read.
#: (MNIST-triplets and Color-MNIST stack three digits, MNIST-sum-hard two; CIFAR-10 and CelebA
#: are not digits.)
ONE_DIGIT_TARGETS: tuple[str, ...] = ("mnist", "micro-mnist", "mnist-sum", "mnist-rotate")

_COMMON = ("seed", "root", "download")


def options(name: str) -> list[str]:
    """The options (``**kw`` of :func:`load_dataset`) dataset ``name`` accepts.

    Example:
        >>> options("celeba")
        ['n', 'size', 'crop', 'cache']
    """
    params = inspect.signature(DATASETS[name]).parameters.values()
    return [
        p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON
    ]


def load_dataset(
    name: str,
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    **kw,
) -> ImageDataset:
    """Build the dataset ``name`` (see :data:`DATASETS`) for ``split``, seeded by ``seed``.

    Every argument after ``split`` is keyword-only (as in :func:`data_builders.load_mnist`):
    ``load_dataset("mnist", "train", seed=0)``.

    ``kw`` are the builder's options: ``n`` (number of items; every dataset), plus ``size``,
    ``crop`` and ``cache`` for ``"celeba"``. MNIST-based datasets follow the data search of
    :func:`data_builders.load_mnist` (``root``, ``$GECO_DATA``, cache, download, vendored 10k).

    Raises:
        ValueError: unknown ``name`` or option (the message lists the valid ones).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; valid names: {', '.join(DATASETS)}")
    builder = DATASETS[name]
    valid = options(name)
    unknown = sorted(set(kw) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for dataset {name!r}; valid options: {valid}"
        )
    return builder(split, seed=seed, root=root, download=download, **kw)
