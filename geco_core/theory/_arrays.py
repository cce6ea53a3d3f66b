"""Array checks and the squared-distance kernel shared by the theory modules (one place each).

Scalar arguments are checked with :mod:`geco_base.checks`; what is specific to the theory's
arrays lives here: data points ``[n, d]``, a β grid, and ‖x_i − ψ_b‖².

Example:
    >>> as_points([[0.0, 1.0]]).shape, as_betas(0.5).tolist()
    ((1, 2), [0.5])
    >>> sq_dists(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])).tolist()
    [[25.0]]
    >>> as_betas([0.1, 0.0])
    Traceback (most recent call last):
    ...
    ValueError: betas must be finite and > 0, got [0.1 0. ]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["as_betas", "as_points", "sq_dists"]


def as_points(x: np.ndarray | Sequence, name: str = "x") -> np.ndarray:
    """``x`` as a finite float64 ``[n, d]`` array with n, d ≥ 1 (ValueError naming ``name``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape [n, d] with n, d >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def as_betas(betas: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """``betas`` as a 1-D float64 array of finite values > 0 (a number becomes ``[β]``)."""
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or betas.size < 1:
        raise ValueError(f"betas must be a number or a 1-D sequence, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        raise ValueError(f"betas must be finite and > 0, got {betas}")
    return betas


def sq_dists(x: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """‖x_i − ψ_b‖², ``[..., n, B]`` for ``x`` ``[n, d]`` and ``psi`` ``[..., B, d]``."""
    diff = x[:, None, :] - psi[..., None, :, :]
    return np.einsum("...ibd,...ibd->...ib", diff, diff)
