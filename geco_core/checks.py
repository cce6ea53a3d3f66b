"""Argument checks shared by every public entry point of the library (one place for each rule).

Each check returns the normalised value or raises a :class:`ValueError` / :class:`TypeError`
whose message starts with the argument's name, so a caller can pass it straight to the user
(the CLI prints it as ``error: <message>``).

Example:
    >>> check_positive(0.5, "kappa")
    0.5
    >>> check_int(3, "steps")
    3
    >>> check_fraction(0.99, "alpha")
    0.99
    >>> check_choice("re", "constraint", ("re", "cla"))
    're'
    >>> check_positive(-1, "kappa")
    Traceback (most recent call last):
    ...
    ValueError: kappa must be a finite number > 0, got -1
    >>> check_int(True, "steps")
    Traceback (most recent call last):
    ...
    TypeError: steps must be an int, got True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_choice",
    "check_finite",
    "check_fraction",
    "check_int",
    "check_nonnegative",
    "check_positive",
]


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_finite(value: Any, name: str) -> float:
    """``value`` as a finite float.

    Example:
        >>> check_finite(-2, "log_lambda")
        -2.0
    """
    v = _real(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def check_positive(value: Any, name: str, upper: float | None = None) -> float:
    """``value`` as a finite float > 0 (and ≤ ``upper`` when given)."""
    v = _real(value, name)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if upper is not None and v > upper:
        raise ValueError(f"{name} must be <= {upper:g}, got {value!r}")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    """``value`` as a finite float ≥ 0.

    Example:
        >>> check_nonnegative(0, "weight_decay")
        0.0
    """
    v = _real(value, name)
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_fraction(value: Any, name: str, closed: bool = False) -> float:
    """``value`` in [0, 1) (or [0, 1] with ``closed=True``), e.g. a moving-average slowness."""
    v = _real(value, name)
    ok = 0.0 <= v <= 1.0 if closed else 0.0 <= v < 1.0
    if not ok:
        raise ValueError(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value!r}")
    return v


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (bools are refused; numpy integers accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, valid: Iterable[str]) -> str:
    """``value`` if it is one of ``valid``; otherwise a message listing the valid choices."""
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name}: unknown value {value!r}; valid choices: {', '.join(valid)}")
    return value
