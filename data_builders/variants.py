"""The MNIST variants of the paper (§4.1, Appendix E.1), built deterministically from a seed.

Every variant draws its digits from one MNIST split (:func:`data_builders.load_mnist`, the
"pool"), so train items use only train images and test items only test images, and inherits
the pool's ``source``. Items made of three digits (I₀, I₁, I₂) store:

- ``labels`` ``[N, 3]`` = (l₀, l₁, l₂) (for Color-MNIST: the R, G, B digits);
- ``meta["indices"]`` ``[N, 3]``: the pool indices of (I₀, I₁, I₂), so every item can be
  traced back to its MNIST images (``load_mnist(split)`` gives the pool);
- ``meta["x_label_columns"]``: the columns of ``labels`` that label the channels of ``x``
  (what a CLA constraint on the target needs).

Several digits are stacked as channels (conv models take them as they are): MNIST-triplets
``x`` = (I₀, I₁, I₂) ``[N, 3, 28, 28]``; MNIST-sum ``context`` = (I₀, I₁) and ``x`` = I₂;
MNIST-sum-hard ``context`` = I₂ and ``x`` = (I₀, I₁); MNIST-rotate ``context`` = (I₀, I₁) and
``x`` = I₂ rotated by l₁·30°. I₂ is always a different image from I₀ and I₁ (the paper asks
this of MNIST-rotate, where l₂ = l₀; we ask it of every variant).

References:
    Rezende & Viola (2018), "Taming VAEs", §4.1 (MNIST-triplets, -sum, -sum-hard, -rotate,
    Color-MNIST) and Appendix E.1 (Micro-MNIST).
    Metz et al. (2017), "Unrolled generative adversarial networks" (stacked MNIST: three
    digits as R, G, B, 1,000 modes) — the paper's ref. [63] for Color-MNIST.

Example:
    >>> import torch
    >>> img = torch.zeros(1, 1, 5, 5); img[0, 0, 0, 2] = 1.0  # a dot above the centre
    >>> rotate_images(img, 90.0)[0, 0, 2, 0].item()  # turned counter-clockwise to the left
    1.0
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from data_builders.core import ImageDataset
from data_builders.mnist import load_mnist
from geco_base.checks import check_int

__all__ = [
    "ROTATE_DEG_PER_LABEL",
    "color_mnist",
    "micro_mnist",
    "mnist",
    "mnist_rotate",
    "mnist_sum",
    "mnist_sum_hard",
    "mnist_triplets",
    "rotate_images",
]

#: MNIST-rotate: I₂ is rotated by l₁ · 30° (§4.1).
ROTATE_DEG_PER_LABEL = 30.0
_MAX_REDRAWS = 1000


def rotate_images(images: Tensor, angles_deg: Tensor | float) -> Tensor:
    """Rotate images counter-clockwise (as displayed, row 0 on top) about their centre.

    Bilinear interpolation with zero padding (MNIST's background), via ``affine_grid`` /
    ``grid_sample``; pixels are treated as square even when H ≠ W. A multiple of 90° on a
    square image moves pixel centres onto pixel centres, so 90° equals ``torch.rot90(x, 1,
    (-2, -1))`` up to float rounding.

    Args:
        images: ``[N, C, H, W]`` float.
        angles_deg: one angle, or ``[N]`` angles, in degrees.

    Returns:
        ``[N, C, H, W]``, clamped to the input's ``[0, 1]`` range convention.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be float [N, C, H, W], got {list(images.shape)}")
    n, _, h, w = images.shape
    theta = torch.as_tensor(angles_deg, dtype=torch.float64).flatten()
    if theta.numel() == 1:
        theta = theta.expand(n)
    if theta.shape != (n,):
        raise ValueError(f"angles_deg must be a scalar or have {n} entries, got {theta.numel()}")
    rad = theta * (math.pi / 180.0)
    c, s = torch.cos(rad), torch.sin(rad)
    # Output pixel (u right, v down) samples the input at the counter-rotated point
    # (u c - v s, u s + v c); in grid_sample's [-1, 1] coordinates u = x W/2, v = y H/2.
    zero = torch.zeros_like(c)
    mat = torch.stack(
        [torch.stack([c, -s * (h / w), zero], -1), torch.stack([s * (w / h), c, zero], -1)], -2
    ).to(images.dtype)
    grid = F.affine_grid(mat.to(images.device), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _check_n(n: int | None, default: int) -> int:
    return default if n is None else check_int(n, "n")


def _sample_with_labels(
    pool_labels: Tensor, wanted: Tensor, avoid: tuple[Tensor, ...], g: torch.Generator
) -> Tensor:
    """For each wanted label, a uniformly drawn pool index with that label, redrawn while it
    equals the index in any of ``avoid`` at the same position."""
    order = torch.argsort(pool_labels, stable=True)
    counts = torch.bincount(pool_labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    if (counts[wanted] == 0).any():
        raise ValueError(f"the MNIST pool has no image of label(s) {wanted[counts[wanted] == 0]}")
    out = torch.empty_like(wanted)
    todo = torch.ones_like(wanted, dtype=torch.bool)
    for _ in range(_MAX_REDRAWS):
        k = int(todo.sum())
        if k == 0:
            return out
        lab = wanted[todo]
        u = torch.rand(k, generator=g, dtype=torch.float64)
        offset = (u * counts[lab]).long().clamp_max_(counts[lab] - 1)
        out[todo] = order[starts[lab] + offset]
        todo = torch.zeros_like(todo)
        for a in avoid:
            todo |= out == a
    raise ValueError("could not draw distinct images: the MNIST pool is too small")


def _item_dataset(
    pool: ImageDataset,
    name: str,
    idx: Tensor,
    x: Tensor,
    context: Tensor | None,
    seed: int,
    **meta,
) -> ImageDataset:
    labels = pool.labels[idx]
    info = {
        "dataset": name,
        "seed": seed,
        "n": len(idx),
        "indices": idx,
        "pool": f"load_mnist({pool.split!r}): {pool.meta.get('description', '')}",
        "pool_meta": pool.meta,
        **meta,
    }
    return ImageDataset(
        x=x,
        labels=labels,
        context=context,
        source=pool.source,
        name=name,
        split=pool.split,
        meta=info,
    )


def _triplets(pool: ImageDataset, n: int, seed: int, rule: str) -> Tensor:
    """Pool indices ``[n, 3]`` of (I₀, I₁, I₂): I₀, I₁ uniform, I₂ uniform among the images
    with label (l₀ + l₁) mod 10 (``rule="sum"``) or l₀ (``rule="same-as-l0"``), never I₀ or I₁."""
    g = torch.Generator().manual_seed(seed)
    i0, i1 = torch.randint(len(pool), (2, n), generator=g)
    l0, l1 = pool.labels[i0], pool.labels[i1]
    l2 = (l0 + l1) % 10 if rule == "sum" else l0
    i2 = _sample_with_labels(pool.labels, l2, (i0, i1), g)
    return torch.stack([i0, i1, i2], 1)


def _channels(pool: ImageDataset, idx: Tensor) -> Tensor:
    """Stack the pool images ``idx`` ``[n, k]`` as k channels: ``[n, k, H, W]``."""
    return pool.x[idx.flatten(), 0].reshape(*idx.shape, *pool.x.shape[2:])


def mnist(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """MNIST digits ``[N, 1, 28, 28]``, labels ``[N]``; with ``n``, a seeded random subset of
    ``n`` distinct images (``meta["indices"]``: their indices in ``load_mnist(split)``)."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    if n is None:
        return pool
    n = _check_n(n, len(pool))
    if n > len(pool):
        raise ValueError(f"n={n} exceeds the {len(pool)} images of the MNIST {split} split")
    idx = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
    return _item_dataset(pool, "mnist", idx, pool.x[idx], None, seed, label_columns=("digit",))


def micro_mnist(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int = 7,
) -> ImageDataset:
    """Micro-MNIST (Appendix E.1, Fig. 8): ``n`` = 7 random MNIST images (seeded) and their
    labels ``[n]``."""
    ds = mnist(split, seed=seed, root=root, download=download, n=_check_n(n, 7))
    ds.name = ds.meta["dataset"] = "micro-mnist"
    ds.meta["paper"] = "Appendix E.1: 7 random samples from MNIST"
    return ds


def mnist_triplets(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """MNIST-triplets (§4.1): ``x`` = (I₀, I₁, I₂) as channels ``[N, 3, 28, 28]`` with
    l₂ = (l₀ + l₁) mod 10, for unconditional models. ``n`` defaults to the pool size."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    idx = _triplets(pool, _check_n(n, len(pool)), seed, "sum")
    return _item_dataset(
        pool,
        "mnist-triplets",
        idx,
        _channels(pool, idx),
        None,
        seed,
        label_columns=("l0", "l1", "l2"),
        x_label_columns=(0, 1, 2),
        relation="l2 = (l0 + l1) mod 10",
        paper="§4.1 MNIST-triplets",
    )


def mnist_sum(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """MNIST-sum (§4.1): ``context`` = (I₀, I₁) ``[N, 2, 28, 28]``, ``x`` = I₂ ``[N, 1, 28, 28]``,
    l₂ = (l₀ + l₁) mod 10. ``n`` defaults to the pool size."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    idx = _triplets(pool, _check_n(n, len(pool)), seed, "sum")
    return _item_dataset(
        pool,
        "mnist-sum",
        idx,
        _channels(pool, idx[:, 2:]),
        _channels(pool, idx[:, :2]),
        seed,
        label_columns=("l0", "l1", "l2"),
        x_label_columns=(2,),
        context_label_columns=(0, 1),
        relation="l2 = (l0 + l1) mod 10",
        paper="§4.1 MNIST-sum",
    )


def mnist_sum_hard(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """MNIST-sum-hard (§4.1): ``context`` = I₂ ``[N, 1, 28, 28]``, ``x`` = (I₀, I₁)
    ``[N, 2, 28, 28]``, l₂ = (l₀ + l₁) mod 10. ``n`` defaults to the pool size."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    idx = _triplets(pool, _check_n(n, len(pool)), seed, "sum")
    return _item_dataset(
        pool,
        "mnist-sum-hard",
        idx,
        _channels(pool, idx[:, :2]),
        _channels(pool, idx[:, 2:]),
        seed,
        label_columns=("l0", "l1", "l2"),
        x_label_columns=(0, 1),
        context_label_columns=(2,),
        relation="l2 = (l0 + l1) mod 10",
        paper="§4.1 MNIST-sum-hard",
    )


def mnist_rotate(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """MNIST-rotate (§4.1): ``context`` = (I₀, I₁), ``x`` = I₂ rotated counter-clockwise about
    its centre by l₁·30° (:func:`rotate_images`), where l₂ = l₀ and I₂ is a different image from
    I₀. Angle of item i: ``ROTATE_DEG_PER_LABEL * labels[i, 1]``. ``n`` defaults to the pool
    size."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    idx = _triplets(pool, _check_n(n, len(pool)), seed, "same-as-l0")
    angles = ROTATE_DEG_PER_LABEL * pool.labels[idx[:, 1]].double()
    x = rotate_images(_channels(pool, idx[:, 2:]), angles)
    return _item_dataset(
        pool,
        "mnist-rotate",
        idx,
        x,
        _channels(pool, idx[:, :2]),
        seed,
        label_columns=("l0", "l1", "l2"),
        x_label_columns=(2,),
        context_label_columns=(0, 1),
        relation="l2 = l0, I2 != I0; x = I2 rotated by l1 * 30 deg counter-clockwise",
        rotate_deg_per_label=ROTATE_DEG_PER_LABEL,
        paper="§4.1 MNIST-rotate",
    )


def color_mnist(
    split: str = "train",
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n: int | None = None,
) -> ImageDataset:
    """Color-MNIST (§4.1; stacked MNIST of Metz et al. 2017): three independently drawn MNIST
    images, all different, as the R, G, B channels ``[N, 3, 28, 28]``; labels ``[N, 3]`` =
    (R, G, B digits), so 1,000 modes (mode id ``100 R + 10 G + B``). ``n`` defaults to the pool
    size."""
    pool = load_mnist(split, root=root, download=download, seed=seed)
    n = _check_n(n, len(pool))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(pool), (n, 3), generator=g)
    for _ in range(_MAX_REDRAWS):
        clash = (idx[:, 0] == idx[:, 1]) | (idx[:, 0] == idx[:, 2]) | (idx[:, 1] == idx[:, 2])
        if not clash.any():
            break
        idx[clash] = torch.randint(len(pool), (int(clash.sum()), 3), generator=g)
    else:
        raise ValueError("could not draw three distinct images: the MNIST pool is too small")
    return _item_dataset(
        pool,
        "color-mnist",
        idx,
        _channels(pool, idx),
        None,
        seed,
        label_columns=("R", "G", "B"),
        x_label_columns=(0, 1, 2),
        modes=1000,
        paper="§4.1 Color-MNIST (stacked MNIST, ref. [63])",
    )
