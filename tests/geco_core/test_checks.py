"""The one argument-check module: values pass through normalised, bad ones raise naming the
argument (ValueError for a bad value, TypeError for a bad type)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geco_core.checks import (
    check_choice,
    check_finite,
    check_fraction,
    check_int,
    check_nonnegative,
    check_positive,
)


def test_valid_values_come_back_normalised():
    assert check_positive(2, "kappa") == 2.0 and isinstance(check_positive(2, "kappa"), float)
    assert check_positive(np.float32(0.5), "kappa") == 0.5
    assert check_positive(1.0, "kappa", upper=1.0) == 1.0
    assert check_nonnegative(0, "std") == 0.0
    assert check_finite(-3, "log_lambda") == -3.0
    assert check_fraction(0.0, "alpha") == 0.0 and check_fraction(1.0, "p", closed=True) == 1.0
    assert check_int(np.int64(3), "steps") == 3 and type(check_int(np.int64(3), "steps")) is int
    assert check_int(0, "seed", minimum=0) == 0
    assert check_choice("re", "constraint", ["re", "cla"]) == "re"


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: check_positive(0.0, "kappa"), ValueError, "kappa must be a finite number > 0"),
        (lambda: check_positive(math.nan, "kappa"), ValueError, "kappa"),
        (lambda: check_positive(math.inf, "kappa"), ValueError, "kappa"),
        (lambda: check_positive(1.5, "kappa", upper=1.0), ValueError, "kappa must be <= 1"),
        (lambda: check_positive("0.1", "kappa"), TypeError, "kappa must be a real number"),
        (lambda: check_positive(True, "kappa"), TypeError, "kappa"),
        (lambda: check_nonnegative(-1e-9, "std"), ValueError, "std must be a finite number >= 0"),
        (lambda: check_finite(math.inf, "x"), ValueError, "x must be a finite number"),
        (lambda: check_fraction(1.0, "alpha"), ValueError, r"alpha must lie in \[0, 1\)"),
        (lambda: check_fraction(-0.1, "alpha"), ValueError, "alpha"),
        (lambda: check_fraction(1.1, "p", closed=True), ValueError, r"p must lie in \[0, 1\]"),
        (lambda: check_int(0, "steps"), ValueError, "steps must be an int >= 1, got 0"),
        (lambda: check_int(-1, "seed", minimum=0), ValueError, "seed must be an int >= 0"),
        (lambda: check_int(2.0, "steps"), TypeError, "steps must be an int, got 2.0"),
        (lambda: check_int(True, "steps"), TypeError, "steps must be an int, got True"),
        (lambda: check_choice("ssim", "constraint", ("re", "cla")), ValueError,
         "constraint: unknown value 'ssim'; valid choices: re, cla"),
        (lambda: check_choice(1, "constraint", ("re",)), ValueError, "constraint"),
    ],
)  # fmt: skip
def test_bad_values_name_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()
