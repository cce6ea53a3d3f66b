"""GECO's numbers on recorded constraint sequences: λ, C_ma and the step count after every
step of six settings (Algorithm 1 as it is, ν auto with bounds, two-timescale updates, a
clamped factor, the satisfied speed-up, a warm-up), compared **bitwise** with the values
recorded in ``data/geco_recorded.json`` on a CPU of the same vector capability
(``torch.backends.cpu.get_cpu_capability()``, which picks the kernels of ``exp`` and friends),
and to float32 rounding on another. A refactor of :class:`geco_core.geco.GECO` (e.g. its
state as module buffers) must keep them; a numerical change must re-record them on purpose::

    python tests/geco_core/test_geco_recorded.py   # rewrites data/geco_recorded.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from geco_core.geco import GECO

RECORD = Path(__file__).resolve().parent / "data" / "geco_recorded.json"

#: The settings, by name: GECO's keyword arguments.
SETTINGS = {
    "algorithm_1": {"alpha": 0.9, "nu": 1.0},
    "nu_auto_bounded": {"alpha": 0.9, "nu": "auto", "lambda_bounds": (1e-3, 1e8)},
    "two_timescale": {"alpha": 0.9, "nu": 0.5, "update_every": 3},
    "clamped": {"alpha": 0.5, "nu": 20.0, "factor_clamp": (0.9, 1.1)},
    "speedup": {"alpha": 0.9, "nu": 0.3, "satisfied_speedup": 10.0},
    "warmup_two_constraints": {"n_constraints": 2, "alpha": 0.95, "nu": 1.0,
                               "warmup_steps": 4, "lambda_init": [1.0, 2.0]},
}
STEPS = 120


def _sequence(n_constraints: int, seed: int) -> torch.Tensor:
    """Ĉ per step ``[STEPS, n]``: a falling error that crosses zero, with batch noise."""
    g = torch.Generator().manual_seed(seed)
    trend = torch.linspace(0.2, -0.2, STEPS // 2).repeat_interleave(2)[:, None]
    return (trend + 0.03 * torch.randn(STEPS, n_constraints, generator=g)).float()


def run(name: str) -> list[dict[str, list[str]]]:
    """Every step's λ, C_ma (as float.hex) and step count for setting ``name``."""
    kw = dict(SETTINGS[name])
    geco = GECO(**kw)
    n = kw.get("n_constraints", 1)
    out = []
    for c in _sequence(n, seed=len(name)):
        c_hat = c.clone().requires_grad_(True)
        geco.loss(torch.tensor(1.0, requires_grad=True), c_hat if n > 1 else c_hat[0])
        out.append({"lambda": [float(v).hex() for v in geco.lambdas.flatten()],
                    "c_ma": [float(v).hex() for v in geco.c_ma.flatten()],
                    "step": [str(geco.step_count)]})
    return out


def _record() -> dict:
    return json.loads(RECORD.read_text(encoding="utf-8"))


def test_geco_reproduces_its_recorded_numbers():
    record = _record()
    recorded = record["runs"]
    assert sorted(recorded) == sorted(SETTINGS)
    same_cpu = record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for name in SETTINGS:
        got = run(name)
        if same_cpu:
            assert got == recorded[name], name  # bitwise
            continue
        for a, b in zip(got, recorded[name], strict=True):
            assert a["step"] == b["step"], name
            for key in ("lambda", "c_ma"):
                for x, y in zip(a[key], b[key], strict=True):
                    assert math.isclose(float.fromhex(x), float.fromhex(y), rel_tol=1e-5,
                                        abs_tol=1e-9), (name, key)


def test_the_record_is_not_trivial():
    """The sequences move λ both ways and cross the constraint's zero, in every setting."""
    for name, steps in _record()["runs"].items():
        lam = [float.fromhex(s["lambda"][0]) for s in steps]
        c_ma = [float.fromhex(s["c_ma"][0]) for s in steps]
        assert max(lam) > lam[0] and lam[-1] < max(lam), name
        assert min(c_ma) < 0 < max(c_ma), name


if __name__ == "__main__":
    record = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "runs": {n: run(n) for n in SETTINGS}}
    RECORD.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RECORD}", file=sys.stderr)
