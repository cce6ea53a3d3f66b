"""Two gloo processes on CPU: GECO all-reduces Ĉ, so both ranks hold the same λ (Algorithm 1 on
the mean of the ranks' estimates), while each rank's gradient is still that of its own batch."""

from __future__ import annotations

import datetime
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from geco_core.geco import GECO

WORLD_SIZE = 2
ALPHA, NU, LAMBDA_INIT = 0.8, 1.5, (1.0, 0.5, 2.0)
# Ĉ per rank and step: rank 1 sees very different batches than rank 0.
BASE = np.array(
    [
        [0.30, -0.10, 0.05],
        [0.20, -0.20, -0.05],
        [0.10, 0.40, 0.00],
        [-0.05, 0.10, 0.20],
        [-0.30, -0.40, 0.15],
        [0.05, 0.25, -0.35],
    ]
)
OFFSET = np.array([0.2, -0.3, 0.1])


def rank_c_hat(rank: int) -> np.ndarray:
    return BASE + (2 * rank - 1) * OFFSET * np.arange(1, len(BASE) + 1)[:, None]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        geco = GECO(n_constraints=3, alpha=ALPHA, nu=NU, lambda_init=LAMBDA_INIT)
        lambdas, c_mas, grads, losses, c_after = [], [], [], [], []
        for c in rank_c_hat(rank):
            c_hat = torch.tensor(c, dtype=torch.float64, requires_grad=True)
            loss = geco.loss(torch.tensor(1.0, dtype=torch.float64), c_hat)
            loss.backward()
            lambdas.append(geco.lambdas.clone())
            c_mas.append(geco.c_ma.clone())
            grads.append(c_hat.grad.clone())
            losses.append(loss.detach())
            c_after.append(c_hat.detach().clone())  # the caller's Ĉ is not overwritten
        torch.save(
            {
                "lambdas": torch.stack(lambdas),
                "c_ma": torch.stack(c_mas),
                "grads": torch.stack(grads),
                "losses": torch.stack(losses),
                "c_after": torch.stack(c_after),
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def reference(c_seq):
    lam = np.array(LAMBDA_INIT)
    c_ma = np.zeros(3)
    out = []
    for t, c in enumerate(c_seq):
        c_ma = c if t == 0 else ALPHA * c_ma + (1 - ALPHA) * c
        lam_prev = lam
        lam = lam * np.exp(NU * c_ma)
        out.append((lam_prev, c_ma, lam))
    return out


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_ranks_hold_identical_lambdas(tmp_path):
    mp.spawn(
        _worker,
        args=(str(tmp_path / "init"), str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(r0["lambdas"], r1["lambdas"])  # bitwise the same on both ranks
    assert torch.equal(r0["c_ma"], r1["c_ma"])
    # the loss values agree up to rounding (Ĉ + sg(C_ma − Ĉ) is formed from each rank's Ĉ)
    torch.testing.assert_close(r0["losses"], r1["losses"], rtol=0, atol=1e-14)

    mean_c = (rank_c_hat(0) + rank_c_hat(1)) / 2
    expected = reference(mean_c)
    for t, (lam_prev, c_ma, lam) in enumerate(expected):
        np.testing.assert_allclose(r0["lambdas"][t].numpy(), lam, rtol=1e-12)
        np.testing.assert_allclose(r0["c_ma"][t].numpy(), c_ma, rtol=0, atol=1e-12)
        # each rank's gradient is λᵗ⁻¹ (DDP then averages the model gradients)
        for r in (r0, r1):
            np.testing.assert_allclose(r["grads"][t].numpy(), lam_prev, rtol=1e-12)
            assert r["losses"][t].item() == pytest.approx(1.0 + lam_prev @ c_ma, abs=1e-12)
    # the local estimates differ, and a single process on either would drift elsewhere
    local = reference(rank_c_hat(0))[-1][2]
    assert not np.allclose(local, expected[-1][2], rtol=1e-3)
    np.testing.assert_array_equal(r0["c_after"].numpy(), rank_c_hat(0))
    np.testing.assert_array_equal(r1["c_after"].numpy(), rank_c_hat(1))
