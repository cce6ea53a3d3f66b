"""Two CPU processes (gloo): DistributedDataParallel with identical λ and weights on both ranks.

The ranks are forked from the test process (which has already imported torch), set the
torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT) and call :func:`geco_core.train.fit`,
which joins the process group exactly as under ``torchrun``; one test also runs the real
``torchrun --nproc_per_node=2 -m geco_core.train`` command line.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import traceback
import warnings

import pytest
import torch

from geco_core.checkpoint import load_checkpoint
from geco_core.train import TrainConfig, fit, read_log

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "fork") and torch.distributed.is_available()), reason="needs fork and gloo"
)


def _config(out_dir, steps: int, **kw) -> dict:
    base = dict(
        model="conv_vae",
        dataset="mnist",
        objective="geco",
        constraint="re",
        kappa=0.15,
        nu=0.5,
        lr=1e-3,  # the book's cpu policy (the paper's defaults barely move a model in 6 steps)
        alpha=0.9,
        steps=steps,
        batch_size=8,
        log_every=2,
        ckpt_every=5,
        seed=5,
        device="cpu",
        progress=False,
        download=False,
        dataset_kwargs={"n": 96},
        model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16},
        out_dir=str(out_dir),
    )
    base.update(kw)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, config: dict, resume: bool, dump: str) -> None:
    warnings.simplefilter("ignore")
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        torch.set_num_threads(1)
        res = fit(TrainConfig(**config), resume=resume)
        torch.save(
            {
                "model": res.model.state_dict(),
                "lambdas": res.objective.geco.lambdas,
                "c_ma": res.objective.geco.c_ma,
                "metrics": res.metrics,
                "rank": res.rank,
                "world_size": res.world_size,
            },
            f"{dump}.rank{rank}.pt",
        )
    except BaseException:
        with open(f"{dump}.rank{rank}.err", "w") as f:
            f.write(traceback.format_exc())
        raise


def _run_ranks(config: dict, dump: str, resume: bool = False, world: int = 2) -> list[dict]:
    port = _free_port()
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, config, resume, dump))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for r, p in enumerate(procs):
        err = f"{dump}.rank{r}.err"
        detail = open(err).read() if os.path.exists(err) else ""
        assert p.exitcode == 0, f"rank {r} exited with {p.exitcode}\n{detail}"
    return [torch.load(f"{dump}.rank{r}.pt", weights_only=True) for r in range(world)]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import in the parent what every rank needs, so that forked ranks start at once (the
    first Adam imports torch._dynamo: seconds of CPU)."""
    import data_builders.registry  # noqa: F401
    import geco_core.models  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    torch.nn.parallel.DistributedDataParallel  # noqa: B018


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 2-rank run of 6 steps: (out_dir, per-rank results)."""
    d = tmp_path_factory.mktemp("ddp")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return d / "straight", _run_ranks(_config(d / "straight", steps=6), str(d / "s"))
    finally:
        torch.set_num_threads(n)


def test_two_gloo_ranks_share_lambda_and_weights(straight):
    out_dir, (r0, r1) = straight
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert torch.equal(r0["lambdas"], r1["lambdas"]) and torch.equal(r0["c_ma"], r1["c_ma"])
    assert r0["lambdas"].item() != 1.0
    _assert_same_weights(r0["model"], r1["model"])
    m0, m1 = (dict(r["metrics"], wall_time=0.0) for r in (r0, r1))
    assert m0 == m1  # the logged metrics are averaged over the ranks
    # only rank 0 wrote, once
    assert sorted(os.listdir(out_dir)) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    assert read_log(out_dir)["step"].tolist() == [0, 1, 3, 5]
    state = load_checkpoint(out_dir / "checkpoint.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # own streams
    _assert_same_weights(state["model"], r0["model"])


def test_two_gloo_ranks_resume_exactly(straight, tmp_path):
    """Stop at step 3, resume both ranks to 6: bit-for-bit the uninterrupted run."""
    _, reference = straight
    _run_ranks(_config(tmp_path / "resumed", steps=3, ckpt_every=3), str(tmp_path / "a"))
    resumed = _run_ranks(
        _config(tmp_path / "resumed", steps=6, ckpt_every=3), str(tmp_path / "b"), resume=True
    )
    for r in range(2):
        _assert_same_weights(resumed[r]["model"], reference[r]["model"])
        assert torch.equal(resumed[r]["lambdas"], reference[r]["lambdas"])


def test_single_process_checkpoint_is_refused_by_two_ranks(tmp_path):
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(TrainConfig(**_config(tmp_path, steps=2)))
    port = _free_port()
    ctx = mp.get_context("fork")
    dump = str(tmp_path / "x")
    procs = [
        ctx.Process(target=_rank_main, args=(r, 2, port, _config(tmp_path, 4), True, dump))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode != 0 for p in procs)
    assert "world_size=1" in open(f"{dump}.rank0.err").read()


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_command_line(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_port", str(_free_port()), "-m", "geco_core.train",
        "--model", "conv_vae", "--dataset", "mnist", "--dataset-kwargs", "n=64",
        "--model-kwargs", "latent_dim=2,hidden=16", "--objective", "geco", "--constraint", "re",
        "--kappa", "0.15", "--steps", "4", "--batch-size", "8", "--log-every", "1",
        "--lr", "1e-3", "--alpha", "0.9",
        "--device", "cpu", "--no-progress", "--download", "false", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stderr.decode().count("done: step=4") == 1  # rank 0 reports, rank 1 does not
    df = read_log(tmp_path)
    assert df["step"].tolist() == [0, 1, 2, 3]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["world_size"] == 2


def test_two_gloo_ranks_train_the_fused_convdraw(tmp_path):
    """ConvDRAW's fused unroll keeps its weights in channels_last memory; DDP's gradient buckets
    average them like any others: both ranks end with the same weights and λ."""
    cfg = _config(tmp_path / "cd", steps=3, model="convdraw",
                  model_kwargs={"steps": 2, "hidden": 8, "z_channels": 1, "read_channels": 4})
    r0, r1 = _run_ranks(cfg, str(tmp_path / "cd"))
    assert torch.equal(r0["lambdas"], r1["lambdas"])
    _assert_same_weights(r0["model"], r1["model"])
