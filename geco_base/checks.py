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
    >>> import torch
    >>> check_unit_interval(torch.tensor([0.0, 255.0]), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x must hold values in [0, 1] (images scaled to [0, 1]), got min 0, max 255; ...
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

import torch
from torch import Tensor

__all__ = [
    "FLOAT32_MAX",
    "FLOAT32_TINY",
    "SEED_LIMIT",
    "OneLineParser",
    "count_arg",
    "check_bool",
    "check_choice",
    "check_class_labels",
    "check_finite",
    "check_float32",
    "check_float_tensor",
    "check_fraction",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "check_seed",
    "cli_fail",
    "seed_arg",
    "check_unit_interval",
]


#: float32's smallest normal and largest finite numbers: a positive setting outside
#: [FLOAT32_TINY, FLOAT32_MAX] is 0 (or denormal) or inf in the engine's float32 arithmetic.
FLOAT32_TINY = float(torch.finfo(torch.float32).tiny)
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; a ``TypeError`` naming it otherwise — in
    particular for the strings a notebook parameter arrives as (``papermill -p force false``
    passes ``"false"``, which is truthy).

    Example:
        >>> check_bool(False, "force")
        False
        >>> check_bool("false", "force")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: force must be True or False, got 'false' (a string; with papermill ...)
    """
    if isinstance(value, bool):
        return value
    hint = f" (a string; with papermill pass -p {name} False)" if isinstance(value, str) else ""
    raise TypeError(f"{name} must be True or False, got {value!r}{hint}")


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


def check_float32(value: Any, name: str) -> float:
    """``value`` as a finite float > 0 that float32 represents as a normal number: in
    [:data:`FLOAT32_TINY`, :data:`FLOAT32_MAX`] ≈ [1.18e-38, 3.40e+38]. For the settings that
    enter float32 arithmetic (λ⁰, ν, σ, β, learning rates, tolerances), where a value outside
    that range silently becomes 0 or inf.

    Example:
        >>> check_float32(1e8, "lambda_init")
        100000000.0
        >>> check_float32(1e300, "lambda_init")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: lambda_init must lie in float32's range [1.18e-38, 3.4e+38] ...
    """
    v = check_positive(value, name)
    if not FLOAT32_TINY <= v <= FLOAT32_MAX:
        raise ValueError(
            f"{name} must lie in float32's range [{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}] (the "
            f"engine computes in float32, where it would be 0 or inf), got {value!r}"
        )
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


#: Seeds are 0 <= seed < SEED_LIMIT: torch's generators take a signed 64-bit seed.
SEED_LIMIT = 2**63


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as a seed: an int with ``0 <= value < 2**63`` (:data:`SEED_LIMIT`).

    Example:
        >>> check_seed(3)
        3
        >>> check_seed(2**64)
        Traceback (most recent call last):
        ...
        ValueError: seed must be an int in [0, 2**63), got 18446744073709551616
    """
    check_int(value, name, minimum=0)
    if value >= SEED_LIMIT:
        raise ValueError(f"{name} must be an int in [0, 2**63), got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, valid: Iterable[str]) -> str:
    """``value`` if it is one of ``valid``; otherwise a message listing the valid choices."""
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name}: unknown value {value!r}; valid choices: {', '.join(valid)}")
    return value


def check_float_tensor(
    value: Any, name: str, dtype: torch.dtype | None = None, images: bool = False
) -> Tensor:
    """``value`` if it is a floating-point tensor (of ``dtype`` when given), else a TypeError.

    Integer tensors are refused rather than cast: an image tensor of dtype uint8 holds 0..255,
    and a silent ``.float()`` would hand the model values 255 times too large (``images=True``
    says so in the message).

    Example:
        >>> check_float_tensor(torch.zeros(2), "x").dtype
        torch.float32
        >>> check_float_tensor(torch.zeros(2, dtype=torch.uint8), "x", images=True)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: x must be a floating-point tensor, got dtype torch.uint8 (images are floats ...
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        hint = f" (images are floats in [0, 1]: use {name}.float() / 255)" if images else ""
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}{hint}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype}, expected {dtype}: pass {name}.to({dtype})"
        )
    return value


def check_unit_interval(t: Tensor, name: str) -> Tensor:
    """``t`` if every value lies in [0, 1] (the images convention of the whole library).

    One ``aminmax`` pass over ``t`` (on an accelerator it waits for ``t``: one host
    synchronisation per call). NaN fails the check. Empty tensors pass.
    """
    if t.numel() == 0:
        return t
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"{name} must hold values in [0, 1] (images scaled to [0, 1]), got min {lo:.4g}, "
            f"max {hi:.4g}; divide 0..255 images by 255"
        )
    return t


def check_class_labels(labels: Any, name: str, n: int, n_classes: int) -> Tensor:
    """``labels`` if it is an integer tensor ``[n]`` of class indices in ``0..n_classes-1``.

    Example:
        >>> check_class_labels(torch.tensor([3, 12]), "labels", 2, 10)
        Traceback (most recent call last):
        ...
        ValueError: labels must be class indices in 0..9, got values in 3..12
    """
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{name} must be an integer tensor of shape [{n}] (true classes), got "
            f"{type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (class indices), got {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"{name} must have shape [{n}] (one class per example), got "
                         f"{list(labels.shape)}")
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name} must be class indices in 0..{n_classes - 1}, got values in {lo}..{hi}"
            )
    return labels


# --------------------------------------------------------------------------------------------
# Command lines: one-line errors, parsed seeds and counts
# --------------------------------------------------------------------------------------------
_CLI_MESSAGE_MAX = 400


def cli_fail(message: str, status: int = 2) -> NoReturn:
    """Print ``error: <message>`` (one line, at most 400 characters) to stderr and exit with
    ``status``."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = "; ".join(lines) or "failed"
    if len(text) > _CLI_MESSAGE_MAX:  # a message that echoes a huge argument
        text = text[:_CLI_MESSAGE_MAX] + f"… ({len(text):,} characters)"
    print(f"error: {text}", file=sys.stderr, flush=True)
    raise SystemExit(status)


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: <argument>: <why>``, exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        cli_fail(message.removeprefix("argument "))


def _int_arg(text: str, low: int, high: int | None, expected: str) -> int:
    """``text`` as an int in ``[low, high)`` (``high=None``: unbounded) for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value >= high):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def seed_arg(text: str) -> int:
    """argparse ``type`` of a seed: an integer in ``[0, 2**63)`` (:func:`check_seed`).

    Example:
        >>> seed_arg("7")
        7
    """
    return _int_arg(text, 0, SEED_LIMIT, "an integer in [0, 2**63)")


def count_arg(text: str) -> int:
    """argparse ``type`` of a count (workers, steps): an integer >= 1.

    Example:
        >>> count_arg("2")
        2
    """
    return _int_arg(text, 1, None, "an integer >= 1")
