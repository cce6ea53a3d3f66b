"""The training engine warns (through geco_core.feasibility) when a GECO κ looks infeasible."""

from __future__ import annotations

import functools
import warnings

from geco_core import feasibility
from geco_core.feasibility import FeasibilityMonitor


def test_the_engine_warns_when_kappa_cannot_be_met(tiny, quiet, monkeypatch, tmp_path):
    """A conv VAE asked for κ = 1e-3 (RMS error 0.001 on MNIST after a few steps) warns; the
    same run at a reachable κ does not."""
    from geco_core.train import fit

    monkeypatch.setattr(feasibility, "FeasibilityMonitor",
                        functools.partial(FeasibilityMonitor, window=20, growth=2.0))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit(tiny(out_dir=str(tmp_path / "bad"), kappa=1e-3, steps=30, log_every=2))
        bad = [w for w in rec if "looks infeasible" in str(w.message)]
    assert len(bad) == 1 and "constraint 0" in str(bad[0].message)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit(tiny(out_dir=str(tmp_path / "ok"), kappa=0.9, steps=30, log_every=2))
        assert not [w for w in rec if "looks infeasible" in str(w.message)]
