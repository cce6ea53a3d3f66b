"""The one argument-check module: values pass through normalised, bad ones raise naming the
argument (ValueError for a bad value, TypeError for a bad type)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geco_base.checks import (
    check_choice,
    check_class_labels,
    check_finite,
    check_float_tensor,
    check_fraction,
    check_int,
    check_nonnegative,
    check_positive,
    check_unit_interval,
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
    x = torch.tensor([0.0, 0.5, 1.0])
    assert check_float_tensor(x, "x") is x and check_unit_interval(x, "x") is x
    assert check_unit_interval(torch.zeros(0), "x").numel() == 0
    labels = torch.tensor([0, 9])
    assert check_class_labels(labels, "labels", 2, 10) is labels


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
        (lambda: check_float_tensor([0.5], "x"), TypeError, "x must be a torch.Tensor"),
        (lambda: check_float_tensor(torch.zeros(2, dtype=torch.uint8), "x", images=True),
         TypeError, r"x must be a floating-point tensor, got dtype torch.uint8 \(images"),
        (lambda: check_float_tensor(torch.zeros(2), "z", torch.float64), TypeError,
         "z has dtype torch.float32, expected torch.float64"),
        (lambda: check_unit_interval(torch.tensor([0.0, 255.0]), "x"), ValueError,
         r"x must hold values in \[0, 1\].*min 0, max 255"),
        (lambda: check_unit_interval(torch.tensor([-0.1, 0.5]), "x"), ValueError, "min -0.1"),
        (lambda: check_unit_interval(torch.tensor([float("nan")]), "x"), ValueError, "nan"),
        (lambda: check_class_labels(torch.tensor([0, 10]), "labels", 2, 10), ValueError,
         r"labels must be class indices in 0..9, got values in 0..10"),
        (lambda: check_class_labels(torch.tensor([0.0]), "labels", 1, 10), TypeError, "labels"),
        (lambda: check_class_labels(torch.tensor([0]), "labels", 2, 10), ValueError,
         r"labels must have shape \[2\]"),
    ],
)  # fmt: skip
def test_bad_values_name_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_seeds_are_ints_in_the_signed_64_bit_range():
    import argparse

    from geco_base.checks import SEED_LIMIT, check_seed, count_arg, seed_arg

    assert check_seed(0) == 0 and check_seed(SEED_LIMIT - 1) == SEED_LIMIT - 1
    for bad, err in ((SEED_LIMIT, ValueError), (-1, ValueError), (1.0, TypeError),
                     (True, TypeError)):
        with pytest.raises(err, match="seed"):
            check_seed(bad)
    assert seed_arg(str(SEED_LIMIT - 1)) == SEED_LIMIT - 1
    for text in (str(SEED_LIMIT), "-1", "1.5", "abc", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 2\*\*63\)"):
            seed_arg(text)
    for text in ("0", "-3", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
            count_arg(text)
