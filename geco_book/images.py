"""Images as the book stores them: uint8 arrays (small, exact to the displayed precision).

Example:
    >>> import torch
    >>> to_uint8(torch.tensor([0.0, 0.5, 1.2])).tolist()
    [0, 128, 255]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_uint8"]


def to_uint8(img: Tensor) -> np.ndarray:
    """Images in [0, 1] (values outside are clipped) as rounded uint8, on the CPU."""
    return (img.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
