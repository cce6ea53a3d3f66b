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

__all__ = ["DATASETS", "load_dataset"]

#: name → builder ``(split, seed, root, download, **options) -> ImageDataset``.
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


def _options(builder: Callable[..., ImageDataset]) -> list[str]:
    params = inspect.signature(builder).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def load_dataset(
    name: str,
    split: str = "train",
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    **kw,
) -> ImageDataset:
    """Build the dataset ``name`` (see :data:`DATASETS`) for ``split``, seeded by ``seed``.

    ``kw`` are the builder's options: ``n`` (number of items; every dataset), plus ``size``,
    ``crop`` and ``cache`` for ``"celeba"``. MNIST-based datasets follow the data search of
    :func:`data_builders.load_mnist` (``root``, ``$GECO_DATA``, cache, download, vendored 10k).

    Raises:
        ValueError: unknown ``name`` or option (the message lists the valid ones).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; valid names: {', '.join(DATASETS)}")
    builder = DATASETS[name]
    valid = _options(builder)
    unknown = sorted(set(kw) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for dataset {name!r}; valid options: {valid}"
        )
    return builder(split, seed, root, download, **kw)
