"""``python -m geco_core.train`` refuses bad input early and in one line: ``error: <argument>:
<why>`` on stderr, exit status 2, before any data is loaded or any model built."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from data_builders.registry import DATASETS
from geco_core.constraints import CONSTRAINTS
from geco_core.models import MODELS
from geco_core.objectives import OBJECTIVES
from geco_core.train import TrainConfig, cli, fit, loop, main

BASE = ["--steps", "2", "--no-progress", "--download", "false", "--device", "cpu"]


@pytest.fixture
def no_data(monkeypatch):
    """Loading data or building a model fails the test: refusals must come before both."""

    def forbidden(*a, **k):
        raise AssertionError("data loaded or model built before the refusal")

    monkeypatch.setattr(loop, "load_data", forbidden)
    monkeypatch.setattr(loop, "build_model_for", forbidden)


def _refused(argv, capsys) -> str:
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert time.perf_counter() - start < 2.0
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--device", "foo"], "error: --device: unknown device 'foo'"),
        (["--device", "tpu:0"], "error: --device: unknown device"),
        (["--dataset", "color-mnist", "--constraint", "cla", "--kappa", "0.9"],
         "error: --constraint: 'cla' reads the pretrained one-digit MNIST classifier"),
        (["--dataset", "mnist-triplets", "--constraint", "fre",
          "--constraint-kwargs", "features=classifier"], "error: --constraint: 'fre' reads"),
        (["--kappa", "1e30"], "error: --kappa: 1e+30 is out of range for constraint 're'"),
        (["--constraint", "re,pncc", "--kappa", "0.1", "1.5"],
         "error: --kappa: 1.5 is out of range for constraint 'pncc': κ must lie in (0, 1]"),
        (["--constraint", "cla", "--kappa", "2"], "error: --kappa: 2 is out of range"),
        (["--kappa", "nan"], "error: --kappa: must be a finite number > 0"),
        (["--kappa", "-1"], "error: --kappa: must be a finite number > 0"),
        (["--kappa", "x"], "error: --kappa: invalid float value: 'x'"),
        (["--kappa", "0.1", "0.2"], "error: --kappa: must be one number or one per constraint"),
        (["--steps", "0"], "error: --steps: must be an int >= 1, got 0"),
        (["--steps", "1.5"], "error: --steps: invalid int value"),
        (["--batch-size", "-3"], "error: --batch-size: must be an int >= 1"),
        (["--alpha", "1"], "error: --alpha: must lie in [0, 1)"),
        (["--lr", "-1"], "error: --lr: must be a finite number > 0"),
        (["--nu", "inf"], "error: --nu: must be a finite number > 0"),
        (["--nu", "fast"], "error: --nu: must be a number > 0 or auto, got 'fast'"),
        (["--nu", "1e300"], "error: --nu: must lie in float32's range"),
        (["--lambda-init", "1e300"], "error: --lambda-init: must lie in float32's range"),
        (["--lambda-init", "1e-300"], "error: --lambda-init: must lie in float32's range"),
        (["--sigma", "1e-46"], "error: --sigma: must lie in float32's range"),
        (["--sigma", "1e300"], "error: --sigma: must lie in float32's range"),
        (["--beta", "1e300"], "error: --beta: must lie in float32's range"),
        (["--lr", "1e-300"], "error: --lr: must lie in float32's range"),
        (["--objective", "elbo", "--constraint", "cla", "--kappa", "0.9"],
         "error: --constraint: objective 'elbo' does not read it"),
        (["--objective", "elbo", "--nu", "0.5"], "error: --nu: objective 'elbo' does not read it"),
        (["--objective", "beta_vae", "--geco-kwargs", "lambda_bounds=[1, 2]"],
         "error: --geco-kwargs: objective 'beta_vae' does not read it"),
        (["--objective", "cooper", "--lambda-init", "5"],
         "error: --lambda-init: objective 'cooper' does not read it"),
        (["--constraint", "re,re"], "error: --constraint: 're' named more than once"),
        (["--model-kwargs", "latent_dim=2.5"], "error: --model-kwargs: latent_dim must be an int"),
        (["--model-kwargs", "hidden=0"], "error: --model-kwargs: hidden must be an int >= 1"),
        (["--model-kwargs", "channels=[4, 0]"],
         "error: --model-kwargs: channels must be an int >= 1"),
        (["--seed", "-1"], "error: --seed: must be an int >= 0"),
        (["--seed", str(2**70)], "error: --seed: must be an int in [0, 2**63)"),
        (["--model", "vae"], "error: --model: unknown value 'vae'; valid choices"),
        (["--dataset", "mnist-plus"], "error: --dataset: unknown value 'mnist-plus'"),
        (["--objective", "iwae"], "error: --objective: unknown value 'iwae'"),
        (["--constraint", "ssim"], "error: --constraint: unknown value 'ssim'"),
        (["--constraint", ""], "error: --constraint: must name at least one constraint"),
        (["--split", "valid"], "error: --split: unknown value 'valid'; valid choices: train"),
        (["--model-size", "tpu"], "error: --model-size: unknown value 'tpu'"),
        (["--model-kwargs", "latent_dimm=2"], "error: --model-kwargs: unknown key(s)"),
        (["--model-kwargs", "image_shape=[1, 2, 3]"], "error: --model-kwargs: image_shape is set"),
        (["--model-kwargs", "{oops"], "error: --model-kwargs: invalid JSON"),
        (["--model-kwargs", "latent_dim"], "error: --model-kwargs: expected key=value"),
        (["--dataset-kwargs", "n=0"], "error: --dataset-kwargs: n must be an int >= 1"),
        (["--dataset-kwargs", "size=8"], "error: --dataset-kwargs: unknown key(s) ['size']"),
        (["--geco-kwargs", "alpha=0.5"], "error: --geco-kwargs: unknown key(s) ['alpha']"),
        (["--constraint-kwargs", "patch=3"], "error: --constraint-kwargs: unknown key(s)"),
        (["--download", "maybe"], "error: --download: expected true/false/auto"),
        (["--precision", "fp16"], "error: --precision: unknown value 'fp16'; valid choices"),
        (["--resume", "--overwrite"], "error: --overwrite: not allowed with argument --resume"),
        (["--resume"], "error: --resume: needs --out-dir"),
        (["--steps", str(10**12)], "error: --steps: 1,000,000,000,000 is more than"),
        (["--objective", "geco", "--kappa", "1e-30"],
         "error: --kappa: 1e-30 is too small for constraint 're': κ² = 1e-60 is 0 in float32"),
        (["--objective", "geco", "--geco-kwargs", "lambda_bounds=[5, 1]"],
         "error: --geco-kwargs: lambda_bounds must satisfy"),
        (["--objective", "geco", "--geco-kwargs", "satisfied_speedup=0"],
         "error: --geco-kwargs: satisfied_speedup"),
        (["--objective", "cooper", "--objective-kwargs", "dual_lr=-1"],
         "error: --objective-kwargs: dual_lr must be a finite number > 0"),
        (["--objective", "control_vae", "--objective-kwargs", "kp=0"],
         "error: --objective-kwargs: kp must be a finite number > 0"),
        (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
        (["--data-root", "/nonexistent/geco-data"],
         "error: --data-root: the folder '/nonexistent/geco-data' does not exist"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_in_one_line_before_any_data(args, expected, no_data, capsys):
    line = _refused([*BASE, *args], capsys)
    assert line.startswith(expected), line


def test_unusable_out_dir_and_geco_data_are_refused_early(tmp_path, monkeypatch, no_data, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = _refused([*BASE, "--out-dir", str(a_file)], capsys)
    assert line == f"error: --out-dir: '{a_file}' is a file, not a folder"
    line = _refused([*BASE, "--out-dir", str(a_file / "run")], capsys)
    assert line.startswith("error: --out-dir: cannot create") and "is a file" in line

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(loop.tempfile, "TemporaryFile", read_only)
        line = _refused([*BASE, "--out-dir", str(tmp_path / "new" / "run")], capsys)
    assert (
        line == f"error: --out-dir: '{tmp_path}' is not writable (Permission denied); "
        "choose another out_dir"
    )
    monkeypatch.setenv("GECO_DATA", str(tmp_path / "typo"))
    line = _refused(BASE, capsys)
    assert line.startswith(f"error: GECO_DATA: the folder '{tmp_path / 'typo'}' does not exist")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write into a read-only folder"
)
def test_read_only_out_dir_is_refused(tmp_path, no_data, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = _refused([*BASE, "--out-dir", str(ro / "run")], capsys)
    finally:
        ro.chmod(0o755)
    assert line.startswith("error: --out-dir:") and "not writable" in line


def test_a_checkpoint_that_cannot_be_resumed_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import warnings

    out = tmp_path / "run"
    argv = [
        *BASE,
        "--dataset-kwargs",
        "n=16",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--model-kwargs",
        '{"latent_dim": 2, "channels": [4, 8], "hidden": 16}',
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(argv)
    capsys.readouterr()

    def forbidden(*a, **k):
        raise AssertionError("data loaded before the refusal")

    monkeypatch.setattr(loop, "load_data", forbidden)
    line = _refused(argv, capsys)  # neither --resume nor --overwrite
    assert "already holds a checkpoint" in line and "--resume" in line
    line = _refused([*argv, "--resume", "--kappa", "0.2"], capsys)  # another config
    assert line.startswith("error: --resume: refusing to resume from")
    assert "kappa: checkpoint=0.1" in line
    ckpt = out / "checkpoint.pt"
    blob = bytearray(ckpt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    line = _refused([*argv, "--resume"], capsys)
    assert line.startswith(f"error: --resume: checkpoint {ckpt} is corrupt")
    assert "--overwrite" in line
    ckpt.write_bytes(b"")
    assert "is empty" in _refused([*argv, "--resume"], capsys)


def test_resume_without_a_checkpoint_is_refused_not_started_afresh(tmp_path, no_data, capsys):
    line = _refused([*BASE, "--out", str(tmp_path / "run"), "--resume"], capsys)
    assert line == (f"error: --resume: no checkpoint at {tmp_path / 'run' / 'checkpoint.pt'} "
                    "to continue (drop --resume to start a new run there)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["resume", "overwrite"])
def test_fit_refuses_a_string_as_resume_or_overwrite(name, no_data):
    with pytest.raises(TypeError, match=f"^{name} must be True or False, got 'no'"):
        fit(TrainConfig(dataset="micro-mnist", progress=False), **{name: "no"})


TINY = ["--dataset", "micro-mnist", "--model-kwargs",
        '{"latent_dim": 2, "channels": [4, 8], "hidden": 16}']


def test_a_dataset_kwargs_value_the_loader_refuses_names_the_flag(capsys):
    line = _refused([*BASE, *TINY, "--dataset-kwargs", "n=10000000"], capsys)
    assert line.startswith("error: --dataset-kwargs: n=10000000 exceeds the "), line


def test_a_batch_larger_than_the_data_names_the_flag(capsys):
    line = _refused([*BASE, *TINY, "--batch-size", "64"], capsys)
    assert line == "error: --batch-size: 64 × world_size=1 exceeds the 7 examples of 'micro-mnist'"


def test_a_run_that_ends_with_non_finite_metrics_exits_1(tmp_path, capsys):
    """Fewer non-finite steps than max_bad_steps do not stop the run, but a run whose final
    metrics are not finite has failed: exit status 1, one line naming them."""
    import warnings

    with warnings.catch_warnings(), pytest.raises(SystemExit) as e:
        warnings.simplefilter("ignore")
        main([*BASE, *TINY, "--batch-size", "7", "--lr", "1e30", "--out", str(tmp_path / "r")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1
    assert lines[-1].startswith("error: training diverged: the final metrics [") and \
        "'kl'" in lines[-1] and "are not finite" in lines[-1], lines


def test_fit_checks_the_machine_before_loading_data(tmp_path, no_data):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    cfg = dict(steps=1, device="cpu", progress=False, download=False)
    with pytest.raises(ValueError, match="^out_dir: .* is a file, not a folder"):
        fit(TrainConfig(**cfg, out_dir=str(a_file)))
    with pytest.raises(FileNotFoundError, match="^data_root: the folder"):
        fit(TrainConfig(**cfg, data_root=str(tmp_path / "nothing")))
    with pytest.raises(ValueError, match="^data_root: .* is a file"):
        fit(TrainConfig(**cfg, data_root=str(a_file)))
    with pytest.raises(ValueError, match="^device: unknown device"):
        TrainConfig(**{**cfg, "device": "gpu"})


def test_help_explains_every_flag_and_lists_the_choices(capsys):
    parser = cli._arg_parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), action.option_strings
    import dataclasses

    assert set(cli._helps()) == {f.name for f in dataclasses.fields(TrainConfig)}
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for names in (MODELS, DATASETS, OBJECTIVES, CONSTRAINTS):
        for name in names:
            assert name in text, name
    assert "(0, 1000]" in text and "cla (0, 1]" in text and "Exit status" in text


def test_the_module_entry_point_refuses_in_one_line_with_status_2(tmp_path):
    """Two real ``python -m geco_core.train`` processes (run side by side): one stderr line,
    status 2, in the seconds it takes to import torch (no data is loaded)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    env = {**os.environ, "GECO_DOWNLOAD": "0"}
    cases = [
        (["--kappa", "1e30"], "error: --kappa: 1e+30 is out of range"),
        (["--out-dir", str(a_file)], "error: --out-dir: "),
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "geco_core.train", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args, _ in cases
    ]
    results = [p.communicate(timeout=120) for p in procs]
    elapsed = time.perf_counter() - start
    for p, (out, err), (_, expected) in zip(procs, results, cases):
        lines = err.strip().splitlines()
        assert p.returncode == 2 and out == ""
        assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert elapsed < 30, elapsed  # importing torch; loading MNIST and building would add more


def test_compile_flag_forms():
    """--compile alone forces it, --compile auto|false|true says so, --no-compile is false, and
    the default is auto (None)."""
    from geco_core.train.cli import _arg_parser

    p = _arg_parser()
    assert p.parse_args([]).compile is None
    assert p.parse_args(["--compile"]).compile is True
    assert p.parse_args(["--compile", "false"]).compile is False
    assert p.parse_args(["--compile", "auto"]).compile is None
    assert p.parse_args(["--no-compile"]).compile is False


def test_deep_json_and_huge_echoed_arguments_give_one_short_line(capsys):
    from geco_core.train.cli import main

    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(SystemExit):
        main(["--model", "conv_vae", "--dataset", "micro-mnist", "--model-kwargs", deep])
    assert capsys.readouterr().err.strip() == "error: --model-kwargs: JSON nested too deeply"
    huge = "channels=" + "[" * 5000 + "]" * 5000
    with pytest.raises(SystemExit):
        main(["--model", "conv_vae", "--dataset", "micro-mnist", "--model-kwargs", huge])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 500 and err[0].endswith("characters)")
