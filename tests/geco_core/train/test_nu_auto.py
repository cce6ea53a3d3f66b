"""``TrainConfig(nu="auto")``: ν from the first batch, logged, checkpointed, resumed, keyed."""

from __future__ import annotations

import pytest
import torch

from geco_core.checkpoint import load_checkpoint
from geco_core.train import TrainConfig, fit, read_log
from geco_core.train.cli import _arg_parser


def _fit(cfg, **kw):
    """fit, then the run's log (every config here has an out_dir)."""
    res = fit(cfg, **kw)
    return res, read_log(res.log_path)


def test_the_rule_is_applied_from_the_first_batch_and_logged(tiny, quiet, tmp_path):
    res, log = _fit(tiny(nu="auto", steps=6, log_every=1, out_dir=str(tmp_path / "run")))
    c0 = log["c_hat"].iloc[0]  # Ĉ⁰ = MSE − κ² of the fresh model
    assert log["nu"].nunique() == 1
    assert log["nu"].iloc[0] == pytest.approx(0.05 / abs(c0), rel=1e-6)
    assert res.objective.geco.nu == pytest.approx(log["nu"].iloc[0], rel=1e-7)
    # the first update moved log λ by exactly 0.05 (C_ma⁰ = Ĉ⁰ > 0: a fresh decoder)
    assert c0 > 0
    assert log["lambda"].iloc[0] == pytest.approx(torch.tensor(0.05).exp().item(), rel=1e-6)


def test_a_resumed_auto_run_keeps_its_nu_and_ends_bitwise_where_a_straight_run_ends(
    tiny, quiet, tmp_path
):
    straight, log_a = _fit(tiny(nu="auto", steps=8, ckpt_every=4, out_dir=str(tmp_path / "a")))
    fit(tiny(nu="auto", steps=4, ckpt_every=4, out_dir=str(tmp_path / "b")))
    first = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert first["objective"]["geco"]["nu"].item() == pytest.approx(straight.objective.geco.nu)
    resumed, log_b = _fit(tiny(nu="auto", steps=8, ckpt_every=4, out_dir=str(tmp_path / "b")),
                          resume=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k, v in a["objective"]["geco"].items():
        assert torch.equal(v, b["objective"]["geco"][k]), k
    assert resumed.objective.geco.nu == straight.objective.geco.nu
    cols = ["kl", "mse", "lambda", "c_ma", "nu"]
    assert log_a[cols].equals(log_b[cols])


def test_a_resume_refuses_another_nu(tiny, quiet, tmp_path):
    fit(tiny(nu="auto", steps=4, ckpt_every=4, out_dir=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="nu"):
        fit(tiny(nu=0.25, steps=8, ckpt_every=4, out_dir=str(tmp_path / "r")), resume=True)


def test_config_cli_and_store_key():
    from geco_book.store import run_key

    cfg = TrainConfig(nu="auto", progress=False)
    assert TrainConfig.from_dict(cfg.to_dict()).nu == "auto"
    assert _arg_parser().parse_args(["--nu", "auto"]).nu == "auto"
    assert _arg_parser().parse_args(["--nu", "0.5"]).nu == 0.5
    assert run_key(cfg) != run_key(TrainConfig(nu=1.0, progress=False))
    with pytest.raises(TypeError, match="nu"):
        TrainConfig(nu="fast")
