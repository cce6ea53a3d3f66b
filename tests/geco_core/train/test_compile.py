"""``TrainConfig.compile``: the compiled engine gives the eager numbers within float rounding,
ConvDRAW compiles without recompiling, the data-dependent initialisation is unchanged, and the
auto policy compiles long runs only."""

from __future__ import annotations

import pytest
import torch

from geco_core.models import build_model
from geco_core.train import fit


def _losses(res):
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in Path(res.log_path).read_text().splitlines()]
    return [r["loss"] for r in rows]


def test_compiled_run_matches_the_eager_run(tiny, quiet, tmp_path):
    eager = fit(tiny(out_dir=str(tmp_path / "eager"), steps=6))
    comp = fit(tiny(out_dir=str(tmp_path / "compiled"), steps=6, compile=True))
    a, b = _losses(eager), _losses(comp)
    assert len(a) == len(b) >= 3
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    for k in ("kl", "mse", "lambda"):
        assert comp.metrics[k] == pytest.approx(eager.metrics[k], rel=1e-3)
    # the saved model is the eager module (its state_dict has no compiler prefixes)
    assert not any(k.startswith("_orig_mod") for k in comp.model.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_convdraw_compiles_once_and_computes_what_eager_computes(implementation, tiny, quiet,
                                                                 tmp_path):
    import torch._dynamo

    kw = dict(model="convdraw", steps=3,
              model_kwargs={"steps": 2, "hidden": 8, "read_channels": 4,
                            "implementation": implementation})
    eager = fit(tiny(out_dir=str(tmp_path / "eager"), **kw))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        comp = fit(tiny(out_dir=str(tmp_path / "compiled"), compile=True, **kw))
    # both unrolls draw their T noise maps with torch.randn in NCHW order, which the compiler
    # keeps: the compiled run is the eager run to rounding (with randn_like on the gates'
    # chunk views, as before, the compiled draws differed and the losses only agreed
    # statistically)
    assert _losses(comp) == pytest.approx(_losses(eager), rel=1e-4, abs=1e-6)
    # the deterministic computations agree to rounding too, given the same inputs
    model = comp.model.eval()
    x = torch.rand(4, 1, 28, 28)
    z = torch.randn(4, model.latent_dim)
    compiled = torch.compile(model.log_q, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(z, x), model.log_q(z, x), rtol=1e-4, atol=1e-4)


def test_prepare_does_what_the_first_training_forward_did():
    torch.manual_seed(0)
    a = build_model("convdraw", (1, 28, 28), steps=2, hidden=8, read_channels=4)
    b = build_model("convdraw", (1, 28, 28), steps=2, hidden=8, read_channels=4)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 1, 28, 28) * 0.3
    a.train()(x)  # the lazy initialisation inside unroll
    b.prepare(x)
    torch.testing.assert_close(a.canvas0, b.canvas0)
    assert float(b.canvas0_initialised) == 1.0
    before = b.canvas0.clone()
    b.prepare(torch.rand(4, 1, 28, 28))  # already initialised: nothing changes
    torch.testing.assert_close(b.canvas0, before)
    # the other models have nothing to prepare
    m = build_model("conv_vae", (1, 28, 28), latent_dim=2)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    m.prepare(x)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in sd.items())


def test_auto_compiles_long_runs_only(monkeypatch, tiny, quiet, tmp_path):
    """``compile=None`` (the default) compiles a run with COMPILE_AUTO_MIN_STEPS steps to go;
    True and False force the choice; the store key does not depend on it."""
    import geco_core.train.loop as loop
    from geco_book.store import run_key
    from geco_core.train import COMPILE_AUTO_MIN_STEPS, TrainConfig, compile_wanted

    assert TrainConfig().compile is None
    long, short = TrainConfig(steps=COMPILE_AUTO_MIN_STEPS), TrainConfig(steps=1_500)
    assert compile_wanted(long) and not compile_wanted(short)
    assert not compile_wanted(long, start=1)
    assert compile_wanted(TrainConfig(steps=10, compile=True))
    assert not compile_wanted(TrainConfig(steps=10**6, compile=False))
    assert run_key(long) == run_key(TrainConfig(steps=COMPILE_AUTO_MIN_STEPS, compile=False))
    calls = []
    monkeypatch.setattr(loop.torch, "compile", lambda m, **kw: calls.append(kw) or m)
    fit(tiny(out_dir=str(tmp_path / "short"), steps=3))
    assert calls == []
    fit(tiny(out_dir=str(tmp_path / "forced"), steps=3, compile=True))
    assert calls == [{"dynamic": False}]
    import geco_core.train.config as config

    monkeypatch.setattr(config, "COMPILE_AUTO_MIN_STEPS", 3)  # auto, now long enough
    fit(tiny(out_dir=str(tmp_path / "auto"), steps=3))
    assert len(calls) == 2
    fit(tiny(out_dir=str(tmp_path / "auto"), steps=5), resume=True)  # 2 steps to go: eager
    assert len(calls) == 2
    with pytest.raises(TypeError, match="compile"):
        TrainConfig(compile="yes")
