"""Training-step speed of every model: images/s, GECO-vs-ELBO step ratio, achieved GFLOP/s.

For each model (``conv_vae``, ``vae_nvp``, ``convdraw``) at the chosen model size, on one
batch of MNIST-shaped images, this script measures in one run:

1. **images/s** of a full GECO+RE training step as the engine runs it (forward, objective,
   backward, gradient-norm check, Adam step), from the median step time;
2. **GECO / ELBO**: the median time of a GECO+RE step over that of an ELBO step (learned σ) on
   the same model, batch and optimizer, measured alternately (ABBA order, so drift and noise
   from other processes hit both alike). Target ≤ 1.02: GECO adds a constraint, a moving
   average and a multiplier update — O(batch) work next to the network's;
   Because a full step is milliseconds to seconds and a loaded machine adds tens of per cent of
   noise, the script also times the two *objectives alone* (loss and its backward on a fixed
   model output, alternately, many repetitions): ``1 + (GECO − ELBO objective time) / ELBO step
   time`` is the ratio those costs imply, a far less noisy estimate of the same quantity;
3. **GFLOP/s**: the FLOPs of one training step (forward + backward, counted with
   ``torch.utils.flop_counter.FlopCounterMode``) divided by the median step time, and as a
   fraction of the GFLOP/s of a large square matmul measured in the same run (the machine's
   practical peak for dense float32 work).

Usage::

    python benchmarks/bench_train.py                 # small models, batch 64
    python benchmarks/bench_train.py --device cuda --size paper --batch-size 128
    python benchmarks/bench_train.py --models convdraw --rounds 50 --json out.json

Timings on a shared machine are noisy: read the ratios, which are measured side by side.

Threads: the default is one (``--threads 1``), what every chapter worker uses. With torch's
default of one thread per core, a single other busy process on this 2-core machine makes the
threads of each parallel op wait for the one that lost its core: measured with one core kept
busy by a spinning process, VAE+NVP fell from 1,688 to 703 img/s and ConvDRAW from 814 to 165
(2.4× and 4.9× slower; one thread: 937 and 462) — the cause of the "4× slower inside the full
run" figures an earlier version of this script reported under load. The script prints the load
average before and after so a loaded run shows itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geco_core.constraints import RE  # noqa: E402
from geco_core.models import MODEL_SIZES, build_model  # noqa: E402
from geco_core.objectives import ELBO, GECOObjective  # noqa: E402
from geco_core.train import make_optimizer, resolve_device  # noqa: E402

MODELS = ("conv_vae", "vae_nvp", "convdraw")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_batch(batch_size: int, device: torch.device) -> torch.Tensor:
    """A batch of real MNIST digits when the data is there, else uniform noise (same cost)."""
    try:
        from data_builders.registry import load_dataset

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = load_dataset("mnist", "train", seed=0, download=False, n=batch_size).x
    except Exception:  # noqa: BLE001 - any data problem: fall back to noise
        x = torch.rand(batch_size, 1, 28, 28)
    return x.to(device)


def make_step(model, objective, optimizer, params, x):
    """One training step exactly as :func:`geco_core.train.fit` runs it (single process)."""

    def step(t: int) -> None:
        out = model(x)
        loss, _ = objective(out, x, step=t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if bool(torch.isfinite(gnorm)):
            optimizer.step()

    return step


def time_call(fn, device: torch.device, *args) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn(*args)
    _sync(device)
    return time.perf_counter() - t0


def matmul_gflops(device: torch.device, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an n×n float32 matmul (2n³ FLOPs), best of ``repeats``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = min(time_call(torch.mm, device, a, b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def step_flops(model, objective, x) -> int:
    """FLOPs of forward + backward of one step (the Adam update is O(params), not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        loss, _ = objective(out, x)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def objective_times(model, objectives: dict, x, device, reps: int) -> dict[str, float]:
    """Median time of ``loss, _ = objective(out, x); loss.backward()`` on a fixed output of
    ``model`` (leaf tensors), for each objective, measured alternately."""
    with torch.no_grad():
        out = model(x)
    fixed = SimpleNamespace(
        x_mean=out.x_mean.detach().requires_grad_(), kl=out.kl.detach().requires_grad_()
    )

    def run(obj, t):
        loss, _ = obj(fixed, x, step=t)
        loss.backward()
        fixed.x_mean.grad = fixed.kl.grad = None

    times: dict[str, list[float]] = {k: [] for k in objectives}
    for t in range(reps):
        keys = list(objectives) if t % 2 == 0 else list(objectives)[::-1]
        for k in keys:
            times[k].append(time_call(run, device, objectives[k], t))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    x = load_batch(args.batch_size, device)
    model = build_model(name, tuple(x.shape[1:]), size=args.size).to(device)
    elbo = ELBO(sigma=0.1, learn_sigma=True).to(device)
    geco = GECOObjective(RE(0.1), alpha=0.99, nu=1.0).to(device)
    params = list(model.parameters()) + list(elbo.parameters())
    optimizer = make_optimizer(params, args.lr)  # the engine's (fused) Adam
    steps = {
        "elbo": make_step(model, elbo, optimizer, params, x),
        "geco": make_step(model, geco, optimizer, params, x),
    }
    for t in range(args.warmup):
        steps["elbo"](t)
        steps["geco"](t)
    times: dict[str, list[float]] = {"elbo": [], "geco": []}
    for r in range(args.rounds):
        order = ("elbo", "geco", "geco", "elbo") if r % 2 == 0 else ("geco", "elbo", "elbo", "geco")
        for k in order:
            times[k].append(time_call(steps[k], device, args.warmup + r))
    med = {k: statistics.median(v) for k, v in times.items()}
    # per-round ratios (each round pairs 2 GECO with 2 ELBO steps taken back to back)
    ratios = [
        (times["geco"][2 * r] + times["geco"][2 * r + 1])
        / (times["elbo"][2 * r] + times["elbo"][2 * r + 1])
        for r in range(args.rounds)
    ]
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [float("nan")] * 3
    flops = step_flops(model, geco, x)
    obj = objective_times(model, {"elbo": elbo, "geco": geco}, x, device, args.objective_reps)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.batch_size,
        "step_ms_geco": 1e3 * med["geco"],
        "step_ms_elbo": 1e3 * med["elbo"],
        "images_per_s": args.batch_size / med["geco"],
        "geco_over_elbo": med["geco"] / med["elbo"],
        "ratio_round_median": statistics.median(ratios),
        "ratio_round_iqr": [q[0], q[2]],
        "objective_ms_geco": 1e3 * obj["geco"],
        "objective_ms_elbo": 1e3 * obj["elbo"],
        "ratio_from_objectives": 1 + (obj["geco"] - obj["elbo"]) / med["elbo"],
        "gflop_per_step": flops / 1e9,
        "gflops": flops / med["geco"] / 1e9,
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", default="small", choices=tuple(MODEL_SIZES), help="model size")
    p.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="Adam learning rate (the book's cpu policy; the step's cost does not depend on it)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=20, help="ABBA rounds (2 steps of each)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--objective-reps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: see the module docstring)")
    p.add_argument("--matmul-n", type=int, default=None, help="default 2048 CPU, 8192 CUDA")
    p.add_argument("--json", type=str, default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device={device} ({what}), torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"size={args.size}, batch={args.batch_size}, rounds={args.rounds}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(
        "GECO/ELBO: median full-step times, ABBA-alternated; obj. Δms: GECO minus ELBO objective "
        "(loss + backward) time; implied: 1 + Δ / ELBO step (target <= 1.02)"
    )
    peak = matmul_gflops(device, n)
    print(f"reference: {n}x{n} float32 matmul {peak:.1f} GFLOP/s")
    header = (
        f"{'model':<9} {'params':>8} {'img/s':>8} {'GECO ms':>8} {'ELBO ms':>8} "
        f"{'GECO/ELBO':>9} {'[IQR per round]':>16} {'obj. Δms':>8} {'implied':>7} "
        f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'of matmul':>9}"
    )
    print(header)
    rows = []
    for name in args.models:
        r = bench_model(name, args, device)
        r["matmul_gflops"] = peak
        r["fraction_of_matmul"] = r["gflops"] / peak
        rows.append(r)
        lo, hi = r["ratio_round_iqr"]
        flag = "ok" if r["geco_over_elbo"] <= 1.02 else "over target 1.02"
        d_ms = r["objective_ms_geco"] - r["objective_ms_elbo"]
        print(
            f"{name:<9} {r['params']:>8d} {r['images_per_s']:>8.0f} {r['step_ms_geco']:>8.2f} "
            f"{r['step_ms_elbo']:>8.2f} {r['geco_over_elbo']:>9.3f} {f'[{lo:.3f}, {hi:.3f}]':>16} "
            f"{d_ms:>8.3f} {r['ratio_from_objectives']:>7.4f} "
            f"{r['gflop_per_step']:>10.3f} {r['gflops']:>8.1f} {r['fraction_of_matmul']:>9.1%}"
            f"  {flag}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
