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


def test_a_claims_row_takes_only_the_books_verdicts():
    row = verdicts.claim("c", "p", "m", "o", verdicts.PARTLY, "r", "one seed", "",
                         verdicts.in_k_of_n(2, 5, "pairs"))
    assert list(row) == list(verdicts.CLAIM_COLUMNS)
    assert row["caveat"] == "one seed; in 2 of 5 pairs"  # empty caveats dropped
    for bad in ("holds", "direction reproduced", verdicts.FOUND, "reproduced (one seed)"):
        with pytest.raises(ValueError, match="verdict"):
            verdicts.claim("c", "p", "m", "o", bad, "r")
    # the book's own question is answered, not judged
    q = f"{verdicts.BOOK_QUESTION} is there a better method?"
    assert verdicts.claim(q, "—", "m", "o", verdicts.NONE_FOUND, "r")["verdict"] == "none found"
    with pytest.raises(ValueError, match="verdict"):
        verdicts.claim(q, "—", "m", "o", verdicts.REPRODUCED, "r")


@pytest.mark.parametrize("k, n, verdict, caveat", [
    (0, 0, verdicts.NOT_TESTABLE, ""), (0, 4, verdicts.NOT_REPRODUCED, ""),
    (1, 4, verdicts.PARTLY, "in 1 of 4 pairs"), (4, 4, verdicts.REPRODUCED, "")])
def test_a_count_gives_one_verdict_and_the_partial_count_as_caveat(k, n, verdict, caveat):
    assert verdicts.count_verdict(k, n) == verdict
    assert verdicts.in_k_of_n(k, n, "pairs") == caveat
