"""Small seeded 2-D point sets for the theory chapter (Figs. 1, 2 and 7 of the paper).

Every builder returns ``(x, labels)``: ``x`` a float64 array ``[N, 2]`` and ``labels`` an int64
array ``[N]`` saying which component (blob, line, circle) produced each point. Points live in
the square [-1/2, 1/2]², the same square as the latent grid of Appendix A, so that the paper's
initialisation "ψ at the centre-points of the grid tiles" puts the reconstructions among the
data (see :func:`geco_core.theory.init_reconstructions`). The same ``seed`` always gives the
same numbers.

Builders:

- :func:`gaussian_blobs` — isotropic Gaussian blobs at given centres (any layout).
- :func:`fig2_blobs` — the hierarchical blob mixture the book uses for Fig. 2.
- :func:`two_blobs` — two well-separated blobs (the phase-transition test).
- :func:`mixture_of_lines`, :func:`mixture_of_circles` — the data of Fig. 7 (Appendix B).
- :func:`tiny_glyphs` — a handful of 8×8 stroke images for the Fig. 1-style picture.

References:
    Rezende & Viola (2018), "Taming VAEs", Fig. 2 and Appendix A (blob mixtures), Fig. 7 and
    Appendix B (mixtures of lines and circles), Fig. 1 and Prop. 3 (blurred reconstructions).

Example:
    >>> x, labels = two_blobs(n_per_blob=5, seed=0)
    >>> x.shape, labels.tolist()
    ((10, 2), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geco_base.checks import check_int, check_nonnegative

__all__ = [
    "FIG2_CENTRES",
    "fig2_blobs",
    "gaussian_blobs",
    "mixture_of_circles",
    "mixture_of_lines",
    "tiny_glyphs",
    "two_blobs",
]

#: Blob centres of the book's Fig. 2 mixture: a tight pair, a wider pair and a lone blob, so
#: that clusters merge at clearly different scales as β grows.
FIG2_CENTRES: tuple[tuple[float, float], ...] = (
    (-0.30, 0.22),
    (-0.30, 0.08),
    (0.10, 0.28),
    (0.34, 0.28),
    (0.10, -0.28),
)

_BOX = 0.5


def gaussian_blobs(
    centres: Sequence[Sequence[float]] | np.ndarray,
    n_per_blob: int = 12,
    std: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs: ``n_per_blob`` points around each of ``centres``.

    Args:
        centres: ``[k, 2]`` blob centres.
        n_per_blob: points per blob.
        std: standard deviation of every coordinate around its centre.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(x, labels)``: ``x`` ``[k * n_per_blob, 2]`` float64, blob by blob; ``labels`` the
        blob index of each point.

    Raises:
        ValueError: ``centres`` is not ``[k, 2]`` with ``k >= 1``, ``n_per_blob < 1`` or
            ``std < 0``.

    Example:
        >>> x, y = gaussian_blobs([[0.0, 0.0], [0.3, 0.0]], n_per_blob=3, std=0.0)
        >>> x[:, 0].tolist(), y.tolist()
        ([0.0, 0.0, 0.0, 0.3, 0.3, 0.3], [0, 0, 0, 1, 1, 1])
    """
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2 or centres.shape[0] < 1:
        raise ValueError(f"centres must have shape [k, 2] with k >= 1, got {centres.shape}")
    n_per_blob = check_int(n_per_blob, "n_per_blob")
    std = check_nonnegative(std, "std")
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, size=(centres.shape[0], n_per_blob, 2)) * std
    x = (centres[:, None, :] + noise).reshape(-1, 2)
    labels = np.repeat(np.arange(centres.shape[0], dtype=np.int64), n_per_blob)
    return x, labels


def fig2_blobs(
    n_per_blob: int = 12, std: float = 0.02, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The book's Fig. 2 data: five blobs at :data:`FIG2_CENTRES` (60 points by default).

    The paper does not publish its Fig. 2 data, only that it is a 2-D mixture; we use a tight
    pair (centres 0.14 apart), a wider pair (0.24 apart) and a lone blob, so that the blobs
    themselves, the pairs, and finally everything merge at separated values of β.

    Example:
        >>> x, labels = fig2_blobs(seed=0)
        >>> x.shape, int(labels.max()) + 1
        ((60, 2), 5)
    """
    return gaussian_blobs(FIG2_CENTRES, n_per_blob=n_per_blob, std=std, seed=seed)


def two_blobs(
    n_per_blob: int = 10, separation: float = 0.5, std: float = 0.02, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two blobs at ``(±separation/2, 0)``: the simplest phase transition (one merge).

    Example:
        >>> x, _ = two_blobs(n_per_blob=4, separation=0.4, std=0.0)
        >>> sorted(set(x[:, 0].tolist()))
        [-0.2, 0.2]
    """
    separation = check_nonnegative(separation, "separation")
    centres = [[-separation / 2, 0.0], [separation / 2, 0.0]]
    return gaussian_blobs(centres, n_per_blob=n_per_blob, std=std, seed=seed)


def mixture_of_lines(
    n_lines: int = 3,
    n_per_line: int = 60,
    noise: float = 0.01,
    min_length: float = 0.4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Points spread uniformly along random segments inside [-0.4, 0.4]², plus Gaussian noise.

    This is the "mixture of lines" of Fig. 7 (left column): each segment's end points are
    drawn uniformly in the box until the segment is at least ``min_length`` long.

    Args:
        n_lines: number of segments.
        n_per_line: points per segment.
        noise: standard deviation of the isotropic noise added to every point.
        min_length: smallest segment length (at most 1.1, the box diagonal is 1.13).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(x, labels)`` with ``x`` ``[n_lines * n_per_line, 2]``; ``labels`` the segment index.

    Raises:
        ValueError: a count is not a positive integer, ``noise < 0`` or ``min_length`` is
            outside [0, 1.1].

    Example:
        >>> x, labels = mixture_of_lines(n_lines=2, n_per_line=5, seed=1)
        >>> x.shape, labels.tolist()
        ((10, 2), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    """
    n_lines = check_int(n_lines, "n_lines")
    n_per_line = check_int(n_per_line, "n_per_line")
    noise = check_nonnegative(noise, "noise")
    min_length = check_nonnegative(min_length, "min_length")
    if min_length > 1.1:
        raise ValueError(f"min_length must be at most 1.1, got {min_length}")
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n_lines):
        while True:
            ends = rng.uniform(-0.4, 0.4, size=(2, 2))
            if np.linalg.norm(ends[1] - ends[0]) >= min_length:
                break
        t = rng.uniform(0.0, 1.0, size=(n_per_line, 1))
        points.append(ends[0] + t * (ends[1] - ends[0]) + rng.normal(0.0, noise, (n_per_line, 2)))
    labels = np.repeat(np.arange(n_lines, dtype=np.int64), n_per_line)
    return np.concatenate(points), labels


def mixture_of_circles(
    n_circles: int = 3,
    n_per_circle: int = 60,
    noise: float = 0.01,
    radius_range: tuple[float, float] = (0.08, 0.16),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Points spread uniformly in angle on random circles inside the box, plus Gaussian noise.

    This is the "mixture of circles" of Fig. 7 (right column). Circles are placed by rejection
    so that they stay inside [-1/2, 1/2]² and do not intersect one another.

    Args:
        n_circles: number of circles (at most 6, so that rejection placement succeeds).
        n_per_circle: points per circle.
        noise: standard deviation of the isotropic noise added to every point.
        radius_range: ``(low, high)`` range of the radii, ``0 < low <= high <= 0.25``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(x, labels)`` with ``x`` ``[n_circles * n_per_circle, 2]``; ``labels`` the circle.

    Raises:
        ValueError: bad counts, ``noise < 0`` or a bad ``radius_range``.

    Example:
        >>> x, labels = mixture_of_circles(n_circles=2, n_per_circle=4, noise=0.0, seed=0)
        >>> x.shape
        (8, 2)
    """
    n_circles = check_int(n_circles, "n_circles")
    if n_circles > 6:
        raise ValueError(f"n_circles must be at most 6, got {n_circles}")
    n_per_circle = check_int(n_per_circle, "n_per_circle")
    noise = check_nonnegative(noise, "noise")
    low, high = (float(r) for r in radius_range)
    if not 0 < low <= high <= 0.25:
        raise ValueError(f"radius_range must satisfy 0 < low <= high <= 0.25, got {radius_range}")
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(n_circles):
        for _attempt in range(10_000):
            r = rng.uniform(low, high)
            c = rng.uniform(-_BOX + r + 0.02, _BOX - r - 0.02, size=2)
            if all(np.linalg.norm(c - c2) > r + r2 + 0.05 for c2, r2 in zip(centres, radii)):
                centres.append(c)
                radii.append(r)
                break
        else:  # pragma: no cover - only with pathological radius ranges
            raise ValueError(f"could not place {n_circles} circles with radii in {radius_range}")
    points = []
    for c, r in zip(centres, radii):
        angle = rng.uniform(0.0, 2 * np.pi, size=n_per_circle)
        ring = c + r * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        points.append(ring + rng.normal(0.0, noise, (n_per_circle, 2)))
    labels = np.repeat(np.arange(n_circles, dtype=np.int64), n_per_circle)
    return np.concatenate(points), labels


def tiny_glyphs(size: int = 8) -> np.ndarray:
    """Five ``size × size`` stroke images in [0, 1]: vertical bar, horizontal bar, diagonal,
    anti-diagonal and a square ring. Used as a tiny data set whose averages look blurred
    (Prop. 3, Fig. 1).

    Returns:
        float64 array ``[5, size, size]``.

    Example:
        >>> g = tiny_glyphs(8)
        >>> g.shape, float(g.max()), float(g.min())
        ((5, 8, 8), 1.0, 0.0)
    """
    size = check_int(size, "size", minimum=4)
    mid, width = size // 2, max(1, size // 4)
    lo = mid - width // 2
    hi = lo + width
    glyphs = np.zeros((5, size, size))
    glyphs[0, 1:-1, lo:hi] = 1.0  # vertical bar
    glyphs[1, lo:hi, 1:-1] = 1.0  # horizontal bar
    idx = np.arange(size)
    glyphs[2, idx, idx] = 1.0  # diagonal
    glyphs[3, idx, size - 1 - idx] = 1.0  # anti-diagonal
    glyphs[4, 1, 1:-1] = glyphs[4, -2, 1:-1] = 1.0  # ring
    glyphs[4, 1:-1, 1] = glyphs[4, 1:-1, -2] = 1.0
    return glyphs
