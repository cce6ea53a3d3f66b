"""geco_book.verdicts: a comparison is called only beyond the seed spread; one seed never
decides, and both chapters use the same rule."""

from __future__ import annotations

import pytest

from geco_book import verdicts


def test_compare_needs_two_standard_errors_and_disjoint_seed_ranges():
    assert verdicts.compare([10, 11, 12], [1, 2, 3]) == "lower"
    assert verdicts.compare([1, 2, 3], [10, 11, 12]) == "higher"
    assert verdicts.compare([10, 11, 12], [9, 11.5, 13]) == verdicts.NO_DIFFERENCE
    # a mean gap beyond 2 SE whose seed ranges still overlap: no verdict
    assert verdicts.compare([10, 10.1, 10.2], [1, 1, 10.15]) == verdicts.NO_DIFFERENCE
    # disjoint ranges but a gap within 2 SE: no verdict either
    assert verdicts.compare([0.0, 10.0], [-0.1, -10.0]) == verdicts.NO_DIFFERENCE


@pytest.mark.parametrize("a, b", [([10.0], [1.0]), ([1.0], [10.0]), ([10.0], [1.0, 1.1]),
                                  ([], [])])
def test_one_seed_never_decides(a, b):
    assert verdicts.compare(a, b) == verdicts.NO_DIFFERENCE


def test_direction_describes_one_pair_and_is_no_verdict():
    assert verdicts.direction(10.0, 1.0) == "lower"
    assert verdicts.direction(1.0, 10.0) == "higher"
    assert verdicts.direction(1.0, 1.04) == "equal within 5 %"
    assert verdicts.direction(1.0, 1.04, rel_tol=0.01) == "higher"
    assert "not a verdict" in verdicts.ONE_SEED


def test_both_chapters_share_one_compare():
    from geco_book.chapters import large_scale_tables, micro_mnist_tables

    assert large_scale_tables.compare is verdicts.compare
    assert micro_mnist_tables.compare is verdicts.compare
