"""Help choosing κ: a warning when a GECO constraint looks infeasible, and a κ proposed from a
short ELBO warm-up.

GECO's update λ ← λ·exp(ν·C_ma) (Algorithm 1) grows λ for as long as the moving average of
the constraint stays positive. When κ cannot be met by the model at hand, λ grows without
bound (or sits at ``lambda_bounds``' upper end) while C_ma never reaches 0, and the KL term is
switched off in all but name. :class:`FeasibilityMonitor` watches the logged (C_ma, λ) pairs of
a run and warns once per constraint when that pattern has lasted a whole window.
:func:`propose_kappa` turns the per-pixel MSE an ELBO reaches into an RE tolerance a little
looser than it: chapters 03 and 04 of the book found GECO spending fewer nats than the ELBO only
where κ² lay above the ELBO's own MSE.

References:
    Rezende & Viola, "Taming VAEs", 2018: Algorithm 1, §4.1 (κ per data set).

Example:
    >>> m = FeasibilityMonitor(window=300, growth=10.0)
    >>> for step in range(0, 400, 100):  # C_ma stays at +0.02 while λ grows 10× per 100 steps
    ...     flagged = m.update(step, c_ma=[0.02], lambdas=[10.0 ** (step / 100)], warn=False)
    >>> flagged, m.flagged
    ([0], {0})
    >>> round(propose_kappa([0.02, 0.015, 0.012, 0.0121, 0.0119, 0.012]), 4)  # √0.012 × 1.1
    0.1205
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Sequence

from geco_base.checks import FLOAT32_MAX, FLOAT32_TINY, check_int, check_positive

__all__ = ["FeasibilityMonitor", "propose_kappa", "propose_nu"]


class FeasibilityMonitor:
    """Flags GECO constraints that look infeasible from a run's logged (step, C_ma, λ).

    A constraint k is flagged when, over the observations of the last ``window`` steps (at
    least ``min_points`` of them), every C_ma[k] was > 0 and λ_k either grew by at least
    ``growth``× across the window or sat at ``upper`` (GECO's upper λ bound, if any). Each
    constraint warns once (``UserWarning``, naming the step, C_ma and λ) and stays in
    :attr:`flagged`. The monitor only reads numbers: it never changes training.

    Args:
        window: steps of history the rule looks at (the engine logs every ``log_every``).
        growth: the factor λ must grow by across the window.
        upper: λ's upper bound (``lambda_bounds[1]``) or None.
        min_points: fewest observations inside the window before a constraint can be flagged.
    """

    def __init__(self, window: int = 2000, growth: float = 100.0, upper: float | None = None,
                 min_points: int = 3) -> None:
        self.window = check_int(window, "window")
        self.growth = check_positive(growth, "growth")
        self.upper = None if upper is None else check_positive(upper, "upper")
        self.min_points = check_int(min_points, "min_points", minimum=2)
        self._history: deque[tuple[int, list[float], list[float]]] = deque()
        self.flagged: set[int] = set()

    def update(self, step: int, c_ma: Sequence[float], lambdas: Sequence[float],
               warn: bool = True) -> list[int]:
        """Record one observation; return the constraints flagged by it (and warn)."""
        c, lam = [float(v) for v in c_ma], [float(v) for v in lambdas]
        if len(c) != len(lam):
            raise ValueError(f"c_ma and lambdas: one value per constraint, got {len(c)} and "
                             f"{len(lam)}")
        self._history.append((int(step), c, lam))
        while self._history and self._history[0][0] < step - self.window:
            self._history.popleft()
        if len(self._history) < self.min_points or step - self._history[0][0] < self.window:
            return []
        new = []
        for k in range(len(c)):
            if k in self.flagged:
                continue
            positive = all(h[1][k] > 0 for h in self._history)
            lam0, lam1 = self._history[0][2][k], lam[k]
            grew = lam0 > 0 and lam1 / lam0 >= self.growth
            at_bound = self.upper is not None and lam1 >= self.upper * (1 - 1e-4)
            if positive and (grew or at_bound) and all(map(math.isfinite, (lam0, lam1))):
                self.flagged.add(k)
                new.append(k)
                if warn:
                    how = "sits at its upper bound" if at_bound else f"grew {lam1 / lam0:.3g}×"
                    warnings.warn(
                        f"GECO constraint {k} looks infeasible at step {step}: its moving "
                        f"average C_ma stayed > 0 (now {c[k]:.3g}) for {self.window} steps while "
                        f"λ {how} (now {lam1:.3g}); the model may not reach this κ — try a "
                        f"larger κ (e.g. geco_core.feasibility.propose_kappa of an ELBO run's MSE)",
                        UserWarning,
                        stacklevel=2,
                    )
        return new


def propose_kappa(mse: Sequence[float], slack: float = 0.1, tail: float = 0.5) -> float:
    """An RE tolerance κ from the per-pixel MSE of a short ELBO warm-up: (1 + ``slack``) ×
    √(mean MSE of the last ``tail`` of the trace), i.e. κ² a little above what the ELBO reaches.

    Args:
        mse: per-pixel MSE values in step order (e.g. the ``mse`` column of the engine's log).
        slack: relative margin on κ (0.1: κ² ≈ 1.21 × the ELBO's MSE).
        tail: fraction of the trace averaged (its end: the warm-up's settled part).

    Raises:
        ValueError: an empty trace, a non-finite or negative MSE, or ``tail`` outside (0, 1].
    """
    values = [float(v) for v in mse]
    if not values:
        raise ValueError("mse: need at least one value")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError("mse: values must be finite and >= 0")
    check_positive(slack, "slack")
    if not 0 < tail <= 1:
        raise ValueError(f"tail must lie in (0, 1], got {tail!r}")
    k = max(1, math.ceil(tail * len(values)))
    last = values[-k:]
    return (1.0 + slack) * math.sqrt(sum(last) / len(last))


def propose_nu(c0: float, max_log_step: float = 0.05) -> float:
    """ν for GECO's multiplicative update from the first batch's constraint value Ĉ⁰:

        ν = max_log_step / |Ĉ⁰|,

    so that λ changes by at most ``max_log_step`` in log (5 % by default) per step at the start
    of training, when the violation is largest. Why: with an adaptive optimiser (Adam) the
    model's reconstruction error falls at a rate set by its learning rate, not by λ, once λ
    dominates the loss; every step that λ keeps growing after that is overshoot, which the
    update undoes only at the rate ν·|C_ma| of the *small* slack of a met constraint. With
    ν = 1 and a fresh decoder's Ĉ⁰ ≈ 0.1–0.2 (per-pixel RE at κ = 0.1) λ grows 10–20 % per step
    and reaches 10⁸ within a few hundred steps. Chapter 05 of the book measures the runaway
    and this rule (one seed each): ν = propose_nu(Ĉ⁰) met the constraint on all three
    (model, data) pairs that could meet it, with λ off its bound (VAE+NVP / MNIST: on target at
    46 nats, against 182 at ν = 1); ν·Ĉ⁰ ≈ 0.02 was too slow, ≈ 0.1–0.2 ran away on the slower
    model.

    Args:
        c0: Ĉ⁰, the constraint's value on the first batch (e.g. MSE − κ² of the fresh model:
            the engine logs it as ``c_hat`` at step 0); its magnitude is used.
        max_log_step: the largest Δ log λ per step allowed at Ĉ⁰ (> 0).

    Example:
        >>> round(propose_nu(0.2), 3), round(propose_nu(-0.05, max_log_step=0.01), 3)
        (0.25, 0.2)
    """
    check_positive(max_log_step, "max_log_step")
    c = abs(float(c0))
    if not math.isfinite(c) or c == 0.0:
        raise ValueError(f"c0 must be finite and non-zero, got {c0!r}")
    nu = max_log_step / c
    if not FLOAT32_TINY <= nu <= FLOAT32_MAX:
        raise ValueError(
            f"c0: {c0!r} gives ν = {max_log_step:g}/|c0| = {nu:g}, outside float32's range: "
            "is the constraint on its intended scale?"
        )
    return nu
