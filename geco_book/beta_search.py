"""The search a user does for a β-VAE's β: a log-spaced grid, then bisection in log β.

Chapter 05 asks how many training runs GECO saves. GECO takes a tolerance κ in data space
("held-out MSE ≤ κ²") and tunes its multiplier in one run; a β-VAE user must find the β whose
trained model lands on that MSE. :class:`BetaSearch` is the search a careful user would run,
one run at a time, on the λ = 1/β scale of :mod:`geco_core.objectives` (the weight of the
per-pixel MSE relative to the KL; a larger λ gives a smaller MSE):

1. **Grid.** Train at every λ of a log-spaced grid (by default 10³…10⁶, one per decade).
   If no grid point lies on each side of the target, extend the grid by a decade on the
   missing side, up to ``lam_range``.
2. **Bisection** in log λ between the closest bracketing pair (the geometric mean), until a
   run's measured value lies within ``±tol`` (relative) of the target or ``max_runs`` runs
   have been spent.

It is driven from outside (propose, train, record), so several searches can share one sweep of
worker processes: :meth:`propose` returns the λ values to train next (the whole grid, then one
per round), :meth:`record` takes their measured values. The measured value is assumed to
decrease with λ (MSE does, up to training noise); a non-monotone observation is kept and the
bracket is chosen from the points seen.

Example:
    >>> s = BetaSearch(target=0.01, tol=0.05)
    >>> f = lambda lam: 3.0 * lam ** -0.5   # a made-up MSE(λ): 0.01 at λ = 9·10⁴
    >>> while not s.done:
    ...     for lam in s.propose():
    ...         s.record(lam, f(lam))
    >>> s.status, s.n_runs, round(s.best[0] / 9e4, 2)
    ('found', 8, 0.96)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from geco_base.checks import check_fraction, check_int, check_positive

__all__ = ["BetaSearch"]


@dataclass
class BetaSearch:
    """A grid-then-bisection search for the λ (= 1/β) whose run measures ``target``.

    Args:
        target: the value to hit (e.g. κ² = 0.01 for a held-out MSE).
        tol: relative tolerance: a run with ``|value/target − 1| <= tol`` ends the search.
        grid: the first λ values, log-spaced (any order).
        lam_range: ``(lo, hi)``: the grid is never extended beyond it (then: ``infeasible``).
        max_runs: the budget; the search stops (``budget``) after this many runs.

    Attributes:
        history: ``[(λ, value), …]`` in the order recorded.
        status: ``"running"``, ``"found"``, ``"infeasible"`` (the target lies outside what the
            grid reached at the ends of ``lam_range``) or ``"budget"``.
    """

    target: float
    tol: float = 0.05
    grid: tuple[float, ...] = (1e3, 1e4, 1e5, 1e6)
    lam_range: tuple[float, float] = (1e1, 1e8)
    max_runs: int = 8
    history: list[tuple[float, float]] = field(default_factory=list)
    status: str = "running"

    def __post_init__(self) -> None:
        check_positive(self.target, "target")
        check_fraction(self.tol, "tol")
        check_int(self.max_runs, "max_runs")
        if not self.grid:
            raise ValueError("grid must hold at least one λ")
        for lam in self.grid:
            check_positive(lam, "grid")
        lo, hi = self.lam_range
        check_positive(lo, "lam_range")
        if not hi > lo:
            raise ValueError(f"lam_range must be (lo, hi) with hi > lo, got {self.lam_range}")
        self.grid = tuple(sorted(float(g) for g in self.grid))
        self._pending: list[float] = []

    # ----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def n_runs(self) -> int:
        return len(self.history)

    @property
    def best(self) -> tuple[float, float]:
        """The recorded ``(λ, value)`` closest to the target (relative error)."""
        if not self.history:
            raise ValueError("no run recorded yet")
        return min(self.history, key=lambda h: abs(h[1] / self.target - 1.0))

    def hit(self, value: float) -> bool:
        """Whether ``value`` lies within the tolerance of the target."""
        return math.isfinite(value) and abs(value / self.target - 1.0) <= self.tol

    def propose(self) -> list[float]:
        """The λ values to train next (empty when done; call :meth:`record` for each)."""
        if self.done:
            return []
        if self._pending:
            return list(self._pending)
        seen = {lam for lam, _ in self.history}
        if not self.history:
            todo = [g for g in self.grid if g not in seen]
        else:
            nxt = self._next()
            if self.done:  # the grid cannot be extended further: infeasible
                return []
            todo = [nxt]
        todo = todo[: self.max_runs - self.n_runs]
        self._pending = list(todo)
        if not todo:
            self.status = "budget"
        return list(todo)

    def record(self, lam: float, value: float) -> None:
        """Record the measured ``value`` of the run at ``lam`` (one of :meth:`propose`'s)."""
        lam = float(lam)
        if lam not in self._pending:
            raise ValueError(f"lam={lam:g} was not proposed (pending: {self._pending})")
        self._pending.remove(lam)
        self.history.append((lam, float(value)))
        if self.hit(float(value)):
            self.status = "found"
            self._pending.clear()
        elif not self._pending and self.n_runs >= self.max_runs:
            self.status = "budget"

    # ----------------------------------------------------------------------------------
    def _next(self) -> float:
        """Extend the grid by a decade on the missing side, or bisect the closest bracket."""
        pts = sorted(self.history)  # by λ
        above = [(lam, v) for lam, v in pts if v > self.target]  # too large an MSE: λ too low
        below = [(lam, v) for lam, v in pts if v <= self.target]
        lo, hi = self.lam_range
        if not below:
            nxt = max(lam for lam, _ in pts) * 10.0
            if nxt > hi * (1 + 1e-9):
                self.status = "infeasible"
                return math.nan
            return nxt
        if not above:
            nxt = min(lam for lam, _ in pts) / 10.0
            if nxt < lo * (1 - 1e-9):
                self.status = "infeasible"
                return math.nan
            return nxt
        # the bracket: the largest λ still above the target and the smallest λ below it
        lam_a = max(lam for lam, _ in above)
        cands = [lam for lam, _ in below if lam > lam_a]
        lam_b = min(cands) if cands else min(lam for lam, _ in below)
        return float(f"{math.sqrt(lam_a * lam_b):.4g}")  # 4 digits: a stable run key
