"""A run killed with SIGKILL and resumed ends bit-for-bit where an uninterrupted run ends.

The victim is the CLI entry point (``geco_core.train.main``) in a child process forked from the
test process, which has already imported torch and run one training (a fresh interpreter spends
~5 s of CPU importing torch and torch._dynamo, too slow for a shared 2-core machine); it is
killed from outside with ``os.kill(pid, SIGKILL)``, as a pre-empted job would be.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch

from geco_core.checkpoint import load_checkpoint
from geco_core.train import main, read_log

STEPS = 80
ARGS = [
    "--model", "conv_vae", "--dataset", "mnist", "--dataset-kwargs", "n=96",
    "--model-kwargs", '{"latent_dim": 2, "channels": [4, 8], "hidden": 16}',
    "--objective", "geco", "--constraint", "re", "--kappa", "0.15", "--nu", "0.5",
    "--lr", "1e-3", "--alpha", "0.9",  # the book's cpu policy: λ and the weights move in 80 steps
    "--steps", str(STEPS), "--batch-size", "8", "--log-every", "2", "--ckpt-every", "5",
    "--seed", "11", "--device", "cpu", "--no-progress", "--download", "false",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(n)


def _child(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    main(argv)


def _logged_steps(log: Path) -> list[int]:
    if not log.exists():
        return []
    steps = []
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line being written
    return steps


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    main([*ARGS, "--out", str(ref_dir)])  # also warms up the imports the child inherits

    victim = mp.get_context("fork").Process(target=_child, args=([*ARGS, "--out", str(run_dir)],))
    victim.start()
    log = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 60
    # kill between two checkpoints, once the log has run ahead of the last one
    while not any(s >= 7 for s in _logged_steps(log)):
        assert victim.exitcode is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    assert victim.exitcode == -signal.SIGKILL
    killed_at = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    assert 5 <= killed_at < STEPS and killed_at % 5 == 0
    assert max(_logged_steps(log)) >= killed_at  # rows past the checkpoint, to be redone

    main([*ARGS, "--out", str(run_dir), "--resume"])

    a = load_checkpoint(ref_dir / "checkpoint.pt")
    b = load_checkpoint(run_dir / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["objective"]["geco"].items():
        assert torch.equal(v, b["objective"]["geco"][k]), k
    assert a["objective"]["geco"]["lambdas"].item() != 1.0  # λ moved
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in pa:
            assert torch.equal(pa[k], pb[k]), k
    la, lb = read_log(ref_dir), read_log(run_dir)
    assert la["step"].tolist() == lb["step"].tolist()  # rows after the checkpoint were redone
    cols = ["kl", "mse", "nll", "lambda", "c_ma", "loss"]
    assert la[cols].equals(lb[cols])


def test_a_checkpoint_from_before_a_new_engine_field_resumes_at_its_default(tiny, quiet,
                                                                             tmp_path):
    """A config field added to the engine after a checkpoint was written (here
    ``max_bad_steps``) counts as its default on resume; a non-default value is refused."""
    from geco_core import checkpoint as ckpt
    from geco_core.train import fit

    out = tmp_path / "run"
    fit(tiny(out_dir=str(out), steps=4, ckpt_every=4))
    path = out / "checkpoint.pt"
    state = ckpt.load_checkpoint(path)
    del state["config"]["max_bad_steps"]  # as written by the engine before the field existed
    ckpt.save_checkpoint(path, state)
    res = fit(tiny(out_dir=str(out), steps=6, ckpt_every=4), resume=True)
    assert res.step == 6
    state = ckpt.load_checkpoint(path)
    del state["config"]["max_bad_steps"]
    ckpt.save_checkpoint(path, state)
    with pytest.raises(ValueError, match="max_bad_steps: checkpoint=.*, now=3"):
        fit(tiny(out_dir=str(out), steps=8, ckpt_every=4, max_bad_steps=3), resume=True)


def test_compile_may_change_on_resume(tiny, quiet, tmp_path):
    """Compiling is an execution detail (like the device): a run written with
    ``compile=False`` (the default before "auto") resumes under today's default."""
    from geco_core import checkpoint as ckpt
    from geco_core.train import fit

    out = tmp_path / "run"
    fit(tiny(out_dir=str(out), steps=4, ckpt_every=4, compile=False))
    res = fit(tiny(out_dir=str(out), steps=6, ckpt_every=4), resume=True)
    assert res.step == 6
    state = ckpt.load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["compile"] is None


@pytest.mark.parametrize("step", [-5, 10**12, 2.5, "3", True])
def test_a_checkpoint_with_a_forged_step_is_refused(step, tiny, quiet, tmp_path):
    from geco_core import checkpoint as ckpt
    from geco_core.train import fit

    out = tmp_path / "run"
    fit(tiny(out_dir=str(out), steps=4, ckpt_every=4))
    path = out / "checkpoint.pt"
    state = ckpt.load_checkpoint(path)
    state["step"] = step  # re-checksummed: only the value is wrong
    ckpt.save_checkpoint(path, state)
    with pytest.raises(ValueError,
                       match=r"says it stopped at step .* not an int in \[0, steps=8\]"):
        fit(tiny(out_dir=str(out), steps=8, ckpt_every=4), resume=True)
