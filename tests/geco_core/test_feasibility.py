"""The κ helpers (geco_core.feasibility): the infeasibility rule on synthetic traces, one
warning per constraint, the engine's use of it, and propose_kappa's closed form."""

from __future__ import annotations

import math

import pytest
import torch

from geco_core.feasibility import FeasibilityMonitor, propose_kappa


def _feed(monitor, c_ma, lam, every=100, warn=False):
    out = []
    for i, (c, l_) in enumerate(zip(c_ma, lam)):
        out += monitor.update(i * every, c, l_, warn=warn)
    return out


def test_growing_lambda_with_positive_c_ma_is_flagged_once_the_window_is_covered():
    m = FeasibilityMonitor(window=500, growth=100.0)
    c = [[0.01]] * 7
    lam = [[10.0 ** i] for i in range(7)]  # ×10 per 100 steps: ×10⁵ per window
    flagged_at = []
    for i in range(7):
        if m.update(i * 100, c[i], lam[i], warn=False):
            flagged_at.append(i * 100)
    assert flagged_at == [500]  # not before the window (0 … 500) is covered
    assert m.flagged == {0}


def test_a_constraint_met_once_in_the_window_or_a_slow_lambda_is_not_flagged():
    m = FeasibilityMonitor(window=500, growth=100.0)
    c = [[0.01], [0.01], [-0.001], [0.01], [0.01], [0.01]]  # met at step 200
    assert _feed(m, c, [[10.0 ** i] for i in range(6)]) == []
    slow = FeasibilityMonitor(window=500, growth=100.0)
    assert _feed(slow, [[0.01]] * 8, [[1.0 + i] for i in range(8)]) == []  # ×8 < ×100


def test_lambda_at_its_upper_bound_is_flagged_without_growth():
    m = FeasibilityMonitor(window=300, growth=1e6, upper=1e8)
    assert _feed(m, [[0.03]] * 5, [[1e8]] * 5) == [0]


def test_each_constraint_warns_once_and_independently():
    m = FeasibilityMonitor(window=200, growth=10.0)
    with pytest.warns(UserWarning, match="constraint 1 looks infeasible") as rec:
        for i in range(8):
            m.update(i * 100, [-0.01, 0.05], [1.0, 10.0 ** i])
    assert len([w for w in rec if "infeasible" in str(w.message)]) == 1
    assert m.flagged == {1}
    with pytest.raises(ValueError, match="one value per constraint"):
        m.update(900, [0.1], [1.0, 2.0])
    with pytest.raises(ValueError, match="window"):
        FeasibilityMonitor(window=0)


def test_propose_kappa_is_the_rms_of_the_warm_up_tail_with_slack():
    trace = [0.05, 0.03, 0.02, 0.0101, 0.0099, 0.0100]
    assert propose_kappa(trace, slack=0.1, tail=0.5) == pytest.approx(1.1 * math.sqrt(0.01))
    assert propose_kappa([0.04], slack=0.5) == pytest.approx(0.3)
    for bad in ([], [float("nan")], [-0.1]):
        with pytest.raises(ValueError, match="mse"):
            propose_kappa(bad)
    with pytest.raises(ValueError, match="tail"):
        propose_kappa([0.1], tail=0.0)


def test_propose_nu_bounds_the_first_log_step():
    import math

    from geco_core.feasibility import propose_nu
    from geco_core.geco import multiplier_update

    for c0 in (0.2, 0.09, -0.3):
        nu = propose_nu(c0, max_log_step=0.02)
        lam = multiplier_update(torch.tensor([5.0]), torch.tensor([abs(c0)]), nu)
        assert math.log(float(lam) / 5.0) == pytest.approx(0.02, rel=1e-5)
    with pytest.raises(ValueError, match="c0"):
        propose_nu(0.0)
    with pytest.raises(ValueError, match="max_log_step"):
        propose_nu(0.1, max_log_step=0.0)
