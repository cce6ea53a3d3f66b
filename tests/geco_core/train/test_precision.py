"""``TrainConfig.precision="bfloat16"``: the networks' convolutions and matmuls run in bfloat16
under autocast, everything the objective reads stays float32, the run trains, and a resume
refuses another precision (it changes the numbers, unlike ``compile``)."""

from __future__ import annotations

import pytest
import torch

from geco_core.models import build_model
from geco_core.train import TrainConfig, fit, precision_context

SMALL = {
    "conv_vae": {"latent_dim": 4, "channels": [4, 8], "hidden": 16},
    "vae_nvp": {"latent_dim": 4, "channels": [4, 8], "context_dim": 16, "n_flows": 2,
                "flow_hidden": 16},
    "convdraw": {"steps": 3, "hidden": 8, "z_channels": 2, "read_channels": 4},
}  # fmt: skip

CASES = [  # model, its arguments, conditional, image channels
    ("conv_vae", {}, False, 1),
    ("conv_vae", {}, True, 1),
    ("vae_nvp", {}, False, 1),
    ("vae_nvp", {}, True, 1),
    ("convdraw", {"implementation": "fused"}, False, 1),
    ("convdraw", {"implementation": "reference"}, False, 1),
    ("convdraw", {"implementation": "fused"}, True, 1),
    ("convdraw", {"implementation": "fused"}, False, 3),  # the conv (not matmul) write
    ("convdraw", {"implementation": "fused", "steps": 1}, False, 1),
]


def _model(name, kw, conditional, channels):
    torch.manual_seed(0)
    ctx_shape = (2, 28, 28) if conditional else None
    model = build_model(name, (channels, 28, 28), context_shape=ctx_shape, **{**SMALL[name], **kw})
    if name == "vae_nvp":  # the couplings start as the identity (zero last layer): wake them
        for layer in model.flows:
            torch.nn.init.normal_(layer.out.weight, std=0.1)
    model.train()
    x = torch.rand(6, channels, 28, 28)
    ctx = torch.rand(6, 2, 28, 28) if conditional else None
    model.prepare(x, ctx)
    return model, x, ctx


def _forward(model, x, ctx, bf16: bool):
    torch.manual_seed(1)
    with precision_context("bfloat16" if bf16 else "float32", "cpu")():
        return model(x, ctx)


@pytest.mark.parametrize("name, kw, conditional, channels", CASES)
def test_bfloat16_forward_hands_float32_to_the_objective(name, kw, conditional, channels):
    model, x, ctx = _model(name, kw, conditional, channels)
    full = _forward(model, x, ctx, bf16=False)
    mixed = _forward(model, x, ctx, bf16=True)
    for field in ("x_mean", "z", "kl", "log_q", "log_prior"):
        assert getattr(mixed, field).dtype == torch.float32, field
        assert torch.isfinite(getattr(mixed, field)).all(), field
    # bfloat16 really ran (other numbers) ...
    assert not torch.equal(full.x_mean, mixed.x_mean)
    # ... inside the networks only: the image to 1e-3 and the densities to 0.1 nat (measured
    # ≤ 3e-4 and ≤ 0.06 here; the same densities summed in bfloat16 miss by ~1 nat)
    assert (mixed.x_mean - full.x_mean).abs().max() < 1e-3
    assert (mixed.kl - full.kl).abs().max() < 3e-2
    for field in ("log_q", "log_prior"):
        assert (getattr(mixed, field) - getattr(full, field)).abs().max() < 0.1, field
    loss = ((mixed.x_mean - x) ** 2).sum() + mixed.kl.sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bfloat16_keeps_the_convdraw_state_and_the_flow_log_det_float32(monkeypatch):
    """Inside the models, where a float32 output would hide a bfloat16 intermediate: the
    conv-LSTM update's inputs, each step's q and p, the coupling layers' log-determinant."""
    from geco_core.models.convdraw import ConvLSTMCell

    seen = []
    update = ConvLSTMCell.update

    def checked(pre, c):
        seen.append((pre.dtype, None if c is None else c.dtype))
        return update(pre, c)

    monkeypatch.setattr(ConvLSTMCell, "update", staticmethod(checked))
    for implementation in ("fused", "reference"):
        model, x, ctx = _model("convdraw", {"implementation": implementation}, True, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            trace = model.unroll(x, ctx)
        params = [t for pair in trace.q + trace.p for t in pair]
        assert {t.dtype for t in params + trace.z + [trace.canvas]} == {torch.float32}
    assert seen and {d for pair in seen for d in pair} <= {torch.float32, None}
    nvp, x, _ = _model("vae_nvp", {}, False, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = nvp.posterior_context(x)
        z, logdet = nvp.flow_forward(torch.randn(6, 4), h)
    assert z.dtype == logdet.dtype == torch.float32


def test_to_float32_casts_lower_precisions_only():
    """Outside autocast the casts are the identity (the same tensors): float32 runs are
    bitwise what they were without them; float64 evaluation is not downcast."""
    from geco_core.models.layers import to_float32

    x = torch.randn(3)
    assert to_float32(x) is x
    d = x.double()
    assert to_float32(d) is d
    assert to_float32(x.half()).dtype == torch.float32
    assert to_float32(x.bfloat16()).dtype == torch.float32


def test_the_decoder_computes_its_network_unchanged():
    """ConvDecoder's forward (the sigmoid applied after the float32 cast) is its ``net``."""
    from geco_core.models.layers import ConvDecoder

    torch.manual_seed(0)
    dec = ConvDecoder(4, 1, (28, 28), channels=(4, 8))
    z = torch.randn(5, 4)
    assert torch.equal(dec(z), dec.net(z).contiguous())


def test_a_bfloat16_run_trains_to_other_numbers_near_the_float32_run(tiny, quiet):
    full = fit(tiny(steps=6))
    mixed = fit(tiny(steps=6, precision="bfloat16"))
    assert mixed.config.precision == "bfloat16"
    for k in ("kl", "mse", "loss", "lambda"):
        assert torch.isfinite(torch.tensor(mixed.metrics[k])), k
    assert mixed.metrics["loss"] != full.metrics["loss"]
    assert mixed.metrics["mse"] == pytest.approx(full.metrics["mse"], rel=0.05)


def test_resume_refuses_another_precision(tiny, quiet, tmp_path):
    out = tmp_path / "run"
    fit(tiny(out_dir=str(out), steps=4, ckpt_every=4))
    with pytest.raises(ValueError, match="precision"):
        fit(tiny(out_dir=str(out), steps=6, ckpt_every=4, precision="bfloat16"), resume=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"precision": "float16"}, "precision: unknown value 'float16'; valid choices: float32"),
        ({"precision": "bfloat16", "device": "mps"}, "precision: 'bfloat16' needs a cpu or cuda"),
    ],
)
def test_bad_precisions_are_refused_naming_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


@pytest.mark.slow
def test_a_compiled_bfloat16_run_matches_the_eager_one(tiny, quiet):
    """Autocast around the compiled module: the compiler traces the bfloat16 regions too."""
    eager = fit(tiny(steps=4, precision="bfloat16", compile=False))
    comp = fit(tiny(steps=4, precision="bfloat16", compile=True))
    for k in ("loss", "kl", "mse"):
        assert comp.metrics[k] == pytest.approx(eager.metrics[k], rel=1e-3), k
