"""Seeded, resumable mini-batches from in-memory tensors (no DataLoader, no worker processes).

Epoch e is a permutation drawn from a generator seeded with ``SeedSequence([seed, e])``, so
the batch at global step t depends only on (seed, t, dataset size, batch size): a run resumed
at ``start_step=t`` sees exactly the batches an uninterrupted run sees from step t on, without
replaying earlier epochs.

Example:
    >>> import torch
    >>> x = torch.arange(10.0)
    >>> [b.tolist() for b in iterate_minibatches(x, 4, seed=0, shuffle=False, epochs=1)]
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from data_builders.core import ImageDataset

__all__ = ["batches_per_epoch", "epoch_permutation", "iterate_minibatches"]


def _num_items(data: Any) -> int:
    if isinstance(data, ImageDataset):
        return len(data)
    if isinstance(data, Tensor):
        return data.shape[0]
    tensors = list(data.values()) if isinstance(data, Mapping) else list(data)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise ValueError(
            "dataset_or_tensors must be an ImageDataset, a Tensor, or a non-empty tuple/list/dict "
            "of Tensors"
        )
    sizes = {t.shape[0] for t in tensors}
    if len(sizes) != 1:
        raise ValueError(f"all tensors must have the same first dimension, got sizes {sizes}")
    return sizes.pop()


def _take(data: Any, idx: Tensor) -> Any:
    def pick(t: Tensor) -> Tensor:
        return t[idx.to(t.device)]

    if isinstance(data, ImageDataset):
        return {
            "x": pick(data.x),
            "labels": pick(data.labels),
            "context": None if data.context is None else pick(data.context),
            "index": idx,
        }
    if isinstance(data, Tensor):
        return pick(data)
    if isinstance(data, Mapping):
        return {k: pick(v) for k, v in data.items()}
    return type(data)(pick(t) for t in data) if isinstance(data, tuple) else [pick(t) for t in data]


def batches_per_epoch(n_items: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches one epoch yields."""
    return n_items // batch_size if drop_last else math.ceil(n_items / batch_size)


def epoch_permutation(n_items: int, seed: int, epoch: int) -> Tensor:
    """The item order of ``epoch`` (a permutation of ``range(n_items)``, int64, CPU)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    g = torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))
    return torch.randperm(n_items, generator=g)


def iterate_minibatches(
    dataset_or_tensors: ImageDataset | Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
    epochs: int | None = None,
    start_step: int = 0,
) -> Iterator[Any]:
    """Yield mini-batches, deterministically given ``seed``, resumable at any step.

    Args:
        dataset_or_tensors: an :class:`ImageDataset` — batches are dicts ``{"x", "labels",
            "context" (None for unconditional data), "index" (the item indices, CPU)}`` —
            or a Tensor (batches are Tensors), a tuple/list of Tensors (batches of the same
            type) or a dict of Tensors (dicts), all sharing the first dimension. Batches are
            slices on the device where the tensors live.
        batch_size: items per batch.
        seed: seeds each epoch's permutation (see the module docstring).
        shuffle: ``False`` keeps the stored order.
        drop_last: drop the last incomplete batch of each epoch (every batch then has
            ``batch_size`` items).
        epochs: stop after this many epochs counted from step 0 (``None``: never stop).
        start_step: global step to start from (``epoch * batches_per_epoch + position``): pass
            the number of batches already consumed to resume a run.

    Example:
        >>> import torch
        >>> full = list(iterate_minibatches(torch.arange(6), 2, seed=1, epochs=2))
        >>> resumed = list(iterate_minibatches(torch.arange(6), 2, seed=1, epochs=2, start_step=4))
        >>> all(torch.equal(a, b) for a, b in zip(full[4:], resumed))
        True
    """
    n = _num_items(dataset_or_tensors)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if epochs is not None and epochs < 0:
        raise ValueError(f"epochs must be None or >= 0, got {epochs}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    per_epoch = batches_per_epoch(n, batch_size, drop_last)
    if per_epoch == 0:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n} items and drop_last=True: no batch to yield"
        )
    return _batches(dataset_or_tensors, n, batch_size, seed, shuffle, per_epoch, epochs, start_step)


def _batches(data, n, batch_size, seed, shuffle, per_epoch, epochs, start_step) -> Iterator[Any]:
    # A separate generator so that iterate_minibatches checks its arguments when called.
    epoch, pos = divmod(start_step, per_epoch)
    while epochs is None or epoch < epochs:
        order = epoch_permutation(n, seed, epoch) if shuffle else torch.arange(n)
        for b in range(pos, per_epoch):
            yield _take(data, order[b * batch_size : (b + 1) * batch_size])
        epoch, pos = epoch + 1, 0
