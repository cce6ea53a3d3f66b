"""Verdicts on the paper's comparisons, shared by the chapters: a claim such as "GECO's KL is
lower than the ELBO's" is called only when the seeds say so.

:func:`compare` requires the gap of the means to exceed twice its standard error **and** the
seed ranges not to overlap; otherwise the verdict is "no clear difference". One seed per side
never decides anything: the standard error is unknown, so :func:`compare` answers
"no clear difference", and a chapter with one seed per run reports the direction of the
difference only, marked :data:`ONE_SEED` (see :func:`direction`).

Example:
    >>> compare([10.0, 11.0, 12.0], [1.0, 1.5, 2.0])
    'lower'
    >>> compare([10.0, 11.0, 12.0], [9.0, 11.5, 13.0])
    'no clear difference'
    >>> compare([10.0], [1.0])  # one seed each: no verdict
    'no clear difference'
    >>> direction(10.0, 1.0)
    'lower'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ANSWERS", "BOOK_QUESTION", "CLAIM_COLUMNS", "FOUND", "NONE_FOUND", "NOT_REPRODUCED",
           "NOT_TESTABLE", "NO_DIFFERENCE", "ONE_SEED", "PARTLY", "REPRODUCED", "VERDICTS",
           "claim", "compare", "count_verdict", "direction", "in_k_of_n"]

#: A claim's verdicts (with its reason, always): see :func:`count_verdict`.
REPRODUCED = "reproduced"
#: Some of the cases a claim covers agree with the paper, not all (the caveat says how many).
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced at our scale"
NOT_TESTABLE = "not testable at our scale"
#: Every verdict a claim of the paper gets, in the results page's order.
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)

#: How a claims-table row that asks the book's own question (not the paper's) starts, and the
#: answers it gets instead of a verdict.
BOOK_QUESTION = "(the book's question)"
FOUND, NONE_FOUND = "found", "none found"
ANSWERS = (FOUND, NONE_FOUND)

#: The columns of every chapter's claims table (:func:`claim`), in order.
CLAIM_COLUMNS = ("claim (paper)", "paper's number", "our measure", "ours", "verdict", "caveat",
                 "reason")

#: What :func:`compare` answers when the seeds do not separate the two sides.
NO_DIFFERENCE = "no clear difference"

#: The note that goes with a direction read off one seed per side: it is not a verdict.
ONE_SEED = "one seed; not a verdict"


def compare(a: Sequence[float], b: Sequence[float]) -> str:
    """Is ``b`` lower than ``a`` beyond the seed spread? ``"lower"``, ``"higher"`` or
    ``"no clear difference"`` (see the module docstring; one seed each is never enough)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return NO_DIFFERENCE
    gap = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if gap > 2 * se and b.max() < a.min():
        return "lower"
    if -gap > 2 * se and b.min() > a.max():
        return "higher"
    return NO_DIFFERENCE


def direction(a: float, b: float, rel_tol: float = 0.05) -> str:
    """Which way ``b`` differs from ``a`` in ONE pair of numbers: ``"lower"``, ``"higher"`` or
    ``"equal within rel_tol"``. A description, not a verdict: with one seed per side there is
    no spread to hold the gap against (report it with :data:`ONE_SEED`).

    Example:
        >>> direction(1.0, 1.01), direction(1.0, 2.0)
        ('equal within 5 %', 'higher')
    """
    a, b = float(a), float(b)
    if abs(a - b) <= rel_tol * max(abs(a), abs(b), 1e-12):
        return f"equal within {rel_tol:.0%}".replace("%", " %")
    return "lower" if b < a else "higher"


def count_verdict(k: int, n: int) -> str:
    """A claim's verdict from ``k`` of ``n`` testable cases agreeing with the paper:
    :data:`NOT_TESTABLE` (none testable), :data:`REPRODUCED` (all), :data:`NOT_REPRODUCED`
    (none) or :data:`PARTLY` (some; say which in the caveat, :func:`in_k_of_n`).

    Example:
        >>> [count_verdict(k, 3) for k in (3, 2, 0)] + [count_verdict(0, 0)] == list(VERDICTS)
        True
    """
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k <= n):
        raise ValueError(f"k: {k!r} of n = {n!r} cases; need integers 0 <= k <= n")
    if n == 0:
        return NOT_TESTABLE
    if k == n:
        return REPRODUCED
    if k == 0:
        return NOT_REPRODUCED
    return PARTLY


def in_k_of_n(k: int, n: int, what: str) -> str:
    """The count behind a :data:`PARTLY` verdict of :func:`count_verdict`, for the caveat:
    "in k of n <what>"; empty when the verdict says it all (``k`` is 0 or ``n``).

    Example:
        >>> in_k_of_n(2, 3, "pairs"), in_k_of_n(3, 3, "pairs")
        ('in 2 of 3 pairs', '')
    """
    return f"in {k} of {n} {what}" if 0 < k < n else ""


def claim(claim: str, paper: str, measure: str, ours: str, verdict: str, reason: str,
          *caveats: str, seeds: int | None = None) -> dict[str, str]:
    """One row of a chapter's claims table (the columns :data:`CLAIM_COLUMNS`): the paper's
    claim, the paper's own number or setting for it (``paper``: quoted as the paper's, never
    ours), what we measured and our numbers, the verdict — one of :data:`VERDICTS`, or for a
    row asking :data:`BOOK_QUESTION` one of :data:`ANSWERS` — what qualifies it (``caveat``:
    one seed, not converged, direction only, …: the non-empty ``caveats`` joined) and why.

    The one rule on seeds: a comparison of two methods needs several seeds per side
    (:func:`compare`; one seed per side is never a verdict, and such a claim is
    :data:`NOT_TESTABLE`); a claim about one run's own behaviour (a trajectory's phases, a
    statistic within one model) can be judged on one run, and then ``seeds`` = 1 puts "one
    seed" first in its caveat, so a one-seed verdict never reads like a several-seed one.

    Example:
        >>> claim("c", "p", "m", "o", "reproduced in 2 of 3", "r")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: verdict: 'reproduced in 2 of 3' is not one of ('reproduced', ...)
        >>> claim("c", "p", "m", "o", PARTLY, "r", in_k_of_n(2, 3, "pairs"), seeds=1)["caveat"]
        'one seed; in 2 of 3 pairs'
    """
    allowed = ANSWERS if claim.startswith(BOOK_QUESTION) else VERDICTS
    if verdict not in allowed:
        raise ValueError(f"verdict: {verdict!r} is not one of {allowed}")
    if seeds is not None and seeds < 2 and verdict in (REPRODUCED, PARTLY):
        caveats = ("one seed", *caveats)
    caveat = "; ".join(c for c in caveats if c)
    return dict(zip(CLAIM_COLUMNS, (claim, paper, measure, ours, verdict, caveat, reason)))
