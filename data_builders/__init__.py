"""Data builders for the GECO book: MNIST (offline and online), the paper's MNIST variants,
CIFAR-10 and CelebA, as in-memory :class:`ImageDataset` objects with their provenance, plus a
seeded, resumable mini-batch iterator.

Start with :func:`load_dataset` (names in :data:`DATASETS`) and :func:`iterate_minibatches`.
Every dataset says what it is built from in ``source`` and ``meta``; print ``ds.source`` in
every notebook (``"mnist-test-10k"`` means only the official 10k test split was available).

Example:
    >>> from data_builders import load_dataset, iterate_minibatches
    >>> ds = load_dataset("mnist-sum", split="test", n=64, download=False)
    >>> batch = next(iterate_minibatches(ds, batch_size=16, seed=0))
    >>> batch["context"].shape, batch["x"].shape
    (torch.Size([16, 2, 28, 28]), torch.Size([16, 1, 28, 28]))
"""

from data_builders.batching import iterate_minibatches
from data_builders.core import DataFallbackWarning, ImageDataset
from data_builders.mnist import load_mnist
from data_builders.registry import DATASETS, load_dataset
from data_builders.variants import rotate_images

__all__ = [
    "DATASETS",
    "DataFallbackWarning",
    "ImageDataset",
    "iterate_minibatches",
    "load_dataset",
    "load_mnist",
    "rotate_images",
]
