"""The β search against made-up MSE(λ) curves whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest

from geco_book.beta_search import BetaSearch


def _drive(s: BetaSearch, f) -> BetaSearch:
    while not s.done:
        for lam in s.propose():
            s.record(lam, f(lam))
    return s


def test_finds_the_lambda_of_a_power_law_within_tolerance():
    # MSE = c·λ^(−a): the target 0.01 sits at λ* = (c/0.01)^(1/a)
    for c, a in [(3.0, 0.5), (0.5, 0.3), (1.0, 0.25)]:
        s = _drive(BetaSearch(target=0.01, tol=0.05, max_runs=12),
                   lambda lam, c=c, a=a: c * lam ** -a)
        lam_star = (c / 0.01) ** (1 / a)
        assert s.status == "found", (c, a, s.history)
        lam, v = s.best
        assert abs(v / 0.01 - 1) <= 0.05
        # the found λ is where the curve is within 5 %: |ln λ − ln λ*| ≤ ln(1.05)/a
        assert abs(math.log(lam / lam_star)) <= math.log(1 / 0.95) / a + 1e-9
        # the first len(grid) runs are the grid, the rest one at a time
        assert [h[0] for h in s.history[:4]] == [1e3, 1e4, 1e5, 1e6] or s.n_runs < 4


def test_bisection_stays_inside_the_bracket_and_halves_it_in_log():
    f = lambda lam: 1.0 * lam ** -0.3  # noqa: E731  λ* = 100^(1/0.3) ≈ 4.6e6: above the grid
    s = BetaSearch(target=0.01, tol=0.01, max_runs=20)
    _drive(s, f)
    lams = [h[0] for h in s.history]
    assert lams[4] == 1e7  # the grid extended by a decade on the missing side
    for prev, nxt in zip(lams[5:], lams[6:]):
        assert 1e6 <= nxt <= 1e7 and nxt != prev
    assert s.status == "found"


def test_infeasible_target_and_budget():
    s = _drive(BetaSearch(target=0.01, max_runs=20), lambda lam: 0.05)  # MSE never below 0.05
    assert s.status == "infeasible"
    assert [h[0] for h in s.history] == [1e3, 1e4, 1e5, 1e6, 1e7, 1e8]
    s = _drive(BetaSearch(target=0.01, max_runs=5), lambda lam: 0.05)
    assert s.status == "budget" and s.n_runs == 5
    # too small an MSE everywhere: the grid extends downwards to lam_range's floor
    s = _drive(BetaSearch(target=0.01, max_runs=20, lam_range=(1e1, 1e8)), lambda lam: 1e-4)
    assert s.status == "infeasible" and min(h[0] for h in s.history) == 1e1


def test_a_noisy_non_monotone_curve_still_ends():
    vals = iter([0.02, 0.008, 0.012, 0.009] + [0.0115, 0.0089] * 10)
    s = _drive(BetaSearch(target=0.01, tol=0.05, max_runs=8), lambda lam: next(vals))
    assert s.done and s.n_runs <= 8


def test_arguments_and_protocol_are_checked():
    with pytest.raises(ValueError, match="target"):
        BetaSearch(target=0.0)
    with pytest.raises(ValueError, match="lam_range"):
        BetaSearch(target=0.01, lam_range=(1e3, 1e2))
    with pytest.raises(ValueError, match="grid"):
        BetaSearch(target=0.01, grid=())
    s = BetaSearch(target=0.01)
    s.propose()
    with pytest.raises(ValueError, match="not proposed"):
        s.record(123.0, 0.01)
    with pytest.raises(ValueError, match="no run"):
        _ = BetaSearch(target=0.01).best
