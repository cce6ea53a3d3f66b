"""Benchmark of the exact marginal-KL estimator (paper §4.1.1, Table 2).

Measures, in one run:

1. Diagonal-Gaussian marginal KL with N = S = 10,000 and d = 32
   (:func:`geco_core.metrics.marginal_kl_gaussian`): wall time, and its ratio to a single
   matmul of the same FLOPs, ``[S, 2d+1] @ [2d+1, N]`` (target ≤ 3×), both timed in this run,
   interleaved, minimum over ``--reps`` (the minimum is the least disturbed by other processes).
   Each is timed with torch's default thread count and with one thread, and both wall and CPU
   (``time.process_time``) times are printed. On a shared, oversubscribed machine the
   multi-threaded wall times are dominated by threads waiting for each other at every op's
   barrier (a loaded 2-core box: up to 10× slower than one thread); the one-thread numbers are
   the stable ones there. For reference the same matmul cut into the estimator's blocks is
   timed too.

2. Peak extra memory of that estimate (target ≤ 512 MiB). ``tracemalloc`` does not see torch's
   allocations, so a fresh subprocess builds the inputs, warms up on a small problem, reads its
   resident set (``VmRSS``), resets the kernel's high-water mark (writing ``5`` to
   ``/proc/self/clear_refs``), runs the estimate and reads the high-water mark (``VmHWM``):
   peak extra = VmHWM − VmRSS before. Where the reset is not allowed it falls back to the
   ``resource.getrusage`` ``ru_maxrss`` delta, which can only under-report (the high-water
   mark may already exceed the current RSS). The same probe run on the monolithic matmul —
   whose [S, N] output has a known size — checks the method.

3. Pairs/s of the VAE + NVP estimator (encoder context once per x, all (z, x) pairs through
   the inverse flow, ``method="context"``) against the naive matched-row path
   (``method="pairs"``: one encoder pass per pair).

4. The bias of the subsampled-N estimator (for ConvDRAW) against the full-N value, on
   Gaussian posteriors (where full N is cheap) and on a small ConvDRAW if available; its
   expected value lies in [full, full + log(N/M)].

Usage::

    python benchmarks/bench_marginal_kl.py            # the full benchmark (a few minutes)
    python benchmarks/bench_marginal_kl.py --quick    # N = S = 2,000, smaller model runs
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

from geco_core.metrics import (
    draw_sources,
    gaussian_log_q_pairs_fn,
    marginal_kl_from_log_q,
    marginal_kl_gaussian,
    marginal_kl_subsampled_from_log_q,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MiB = 2**20


def posteriors(N: int, d: int, dtype: torch.dtype, seed: int = 0, spread: float = 1.0):
    """Random diagonal-Gaussian posteriors, partly overlapping (I(n; z) well inside (0, log N))."""
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, d, generator=g, dtype=torch.float64)
    log_sigma = -1.0 + 0.3 * torch.randn(N, d, generator=g, dtype=torch.float64)
    return mu.to(dtype), log_sigma.to(dtype)


def mm_operands(N: int, S: int, d: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(S, 2 * d + 1, generator=g, dtype=dtype),
        torch.randn(N, 2 * d + 1, generator=g, dtype=dtype),
    )


def best_of(fn, reps: int, clock=time.perf_counter) -> float:
    best = math.inf
    for _ in range(reps):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


# --------------------------------------------------------------------------------------------
# 1. timing
# --------------------------------------------------------------------------------------------
def bench_gaussian(
    N: int, S: int, d: int, dtype: torch.dtype, reps: int, cs: int, cn: int, threads: list[int]
):
    mu, ls = posteriors(N, d, dtype)
    A, B = mm_operands(N, S, d, dtype)
    flops = 2.0 * S * N * (2 * d + 1)

    def estimate():
        return marginal_kl_gaussian(mu, ls, S, seed=0, chunk_s=cs, chunk_n=cn)

    def estimate_small():  # cache-sized blocks, for comparison
        return marginal_kl_gaussian(mu, ls, S, seed=0, chunk_s=512, chunk_n=2048)

    def mono():
        return A @ B.T

    def blocked():
        for s0 in range(0, S, cs):
            for i0 in range(0, N, cn):
                A[s0 : s0 + cs] @ B[i0 : i0 + cn].T

    result = estimate()  # warm-up, and the value we report
    mono()
    out = {"value": result.value, "stderr": result.stderr, "mutual_info": result.mutual_info}
    n_default = torch.get_num_threads()
    fns = (
        ("estimate", estimate),
        ("estimate_small", estimate_small),
        ("mono", mono),
        ("blocked", blocked),
    )
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            wall = dict.fromkeys((k for k, _ in fns), math.inf)
            cpu = dict(wall)
            for _ in range(reps):  # interleaved, so slow phases of the machine hit all three
                for k, f in fns:
                    t0, c0 = time.perf_counter(), time.process_time()
                    f()
                    wall[k] = min(wall[k], time.perf_counter() - t0)
                    cpu[k] = min(cpu[k], time.process_time() - c0)
                    gc.collect()
            out[f"threads_{nt}"] = {
                "wall": wall,
                "cpu": cpu,
                "ratio_wall": wall["estimate"] / wall["mono"],
                "ratio_cpu": cpu["estimate"] / cpu["mono"],
                "ratio_wall_blocked": wall["estimate"] / wall["blocked"],
                "ratio_wall_small": wall["estimate_small"] / wall["mono"],
                "ratio_cpu_small": cpu["estimate_small"] / cpu["mono"],
                "gflops_mono_wall": flops / wall["mono"] / 1e9,
            }
    finally:
        torch.set_num_threads(n_default)
    return out


# --------------------------------------------------------------------------------------------
# 2. memory (runs in a child process)
# --------------------------------------------------------------------------------------------
def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def child_memory(what: str, N: int, S: int, d: int, dtype: torch.dtype, cs: int, cn: int):
    mu, ls = posteriors(N, d, dtype)
    A, B = mm_operands(N, S, d, dtype)
    # warm-up on a small problem: thread pools, BLAS buffers, lazy imports
    marginal_kl_gaussian(mu[:256], ls[:256], 256, chunk_s=64, chunk_n=128)
    (A[:256] @ B[:256].T).sum()
    gc.collect()
    try:
        rss0 = _vm("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        method = "VmHWM after clear_refs"
        maxrss0 = None
    except (OSError, KeyError):
        rss0 = None
        maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        method = "ru_maxrss delta (may under-report)"
    t0 = time.perf_counter()
    if what == "estimate":
        marginal_kl_gaussian(mu, ls, S, seed=0, chunk_s=cs, chunk_n=cn)
    else:
        (A @ B.T).sum()
    wall = time.perf_counter() - t0
    if rss0 is not None:
        peak = _vm("VmHWM") - rss0
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - maxrss0
    print(json.dumps({"peak_extra_bytes": peak, "method": method, "wall": wall}))


def bench_memory(what: str, N: int, S: int, d: int, dtype_name: str, cs: int, cn: int):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child-memory",
        what,
        "--N",
        str(N),
        "--S",
        str(S),
        "--d",
        str(d),
        "--dtypes",
        dtype_name,
        "--chunk-s",
        str(cs),
        "--chunk-n",
        str(cn),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# 3. NVP pairs/s, 4. subsampled bias
# --------------------------------------------------------------------------------------------
def build(name: str, **kw):
    from geco_core.models import build_model

    return build_model(name, (1, 28, 28), **kw)


def bench_nvp(N: int, S: int, N_naive: int, S_naive: int, threads: list[int]):
    from geco_core.metrics import marginal_kl

    model = build("vae_nvp")
    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = {
        "latent_dim": model.latent_dim,
        "context_dim": model.context_dim,
        "n_flows": len(model.flows),
        "n_params": sum(p.numel() for p in model.parameters()),
        "context_N_S": [N, S],
        "naive_N_S": [N_naive, S_naive],
    }
    n_default = torch.get_num_threads()
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            t0 = time.perf_counter()
            fast = marginal_kl(model, x, S=S, method="context", progress=False)
            t_fast = time.perf_counter() - t0
            t0 = time.perf_counter()
            marginal_kl(model, x[:N_naive], S=S_naive, method="pairs", progress=False)
            t_naive = time.perf_counter() - t0
            out[f"threads_{nt}"] = {
                "context_seconds": t_fast,
                "context_pairs_per_s": N * S / t_fast,
                "naive_seconds": t_naive,
                "naive_pairs_per_s": N_naive * S_naive / t_naive,
            }
            out.update(value=fast.value, stderr=fast.stderr, mutual_info=fast.mutual_info)
    finally:
        torch.set_num_threads(n_default)
    return out


def bias_gaussian(N: int, S: int, d: int, Ms: list[int], spread: float):
    mu, ls = posteriors(N, d, torch.float64, seed=3, spread=spread)
    g = torch.Generator().manual_seed(4)
    src = draw_sources(N, S, "uniform", g)
    z = mu[src] + ls[src].exp() * torch.randn(S, d, generator=g, dtype=torch.float64)
    lq = torch.distributions.Normal(mu[src], ls[src].exp()).log_prob(z).sum(-1)
    full = marginal_kl_from_log_q(z, gaussian_log_q_pairs_fn(mu, ls), N, log_q_source=lq)

    def log_q_fn(zz, idx):
        return torch.distributions.Normal(mu[idx], ls[idx].exp()).log_prob(zz).sum(-1)

    rows = []
    for M in Ms:
        sub = marginal_kl_subsampled_from_log_q(
            z, log_q_fn, src, N, M, log_q_source=lq, chunk_s=256, warn=False
        )
        rows.append(
            {
                "M": M,
                "subsampled": sub.value,
                "bias": sub.value - full.value,
                "bias_se": sub.mutual_info_stderr + full.mutual_info_stderr,
                "bound_log_N_over_M": math.log(N / M),
            }
        )
    return {"N": N, "S": S, "d": d, "spread": spread, "full": full.value, "rows": rows}


def bias_convdraw(N: int, S: int, M: int):
    from geco_core.metrics import marginal_kl

    model = build("convdraw")
    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    full = marginal_kl(model, x, S=S, method="pairs", progress=False)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    sub = marginal_kl(model, x, S=S, M=M, progress=False, warn=False)
    t_sub = time.perf_counter() - t0
    return {
        "N": N,
        "S": S,
        "M": M,
        "full": full.value,
        "full_mutual_info": full.mutual_info,
        "subsampled": sub.value,
        "bias": sub.value - full.value,
        "bias_se": sub.mutual_info_stderr + full.mutual_info_stderr,
        "bound_log_N_over_M": math.log(N / M),
        "full_pairs_per_s": N * S / t_full,
        "subsampled_seconds": t_sub,
        "full_seconds": t_full,
    }


# --------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--N", type=int, default=10_000)
    p.add_argument("--S", type=int, default=10_000)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--chunk-s", type=int, default=2048)
    p.add_argument("--chunk-n", type=int, default=16384)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--skip-models", action="store_true")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child-memory", choices=["estimate", "mm"], help=argparse.SUPPRESS)
    a = p.parse_args()
    dtypes = [s.strip() for s in a.dtypes.split(",") if s.strip()]
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"--dtypes: unknown {name!r}; choose from {sorted(DTYPES)}")
    if a.child_memory:
        dt = DTYPES[dtypes[0]]
        child_memory(a.child_memory, a.N, a.S, a.d, dt, a.chunk_s, a.chunk_n)
        return
    if a.quick:
        a.N, a.S, a.reps = 2000, 2000, 2

    res: dict = {"N": a.N, "S": a.S, "d": a.d, "chunk": [a.chunk_s, a.chunk_n]}
    res["load_average"] = os.getloadavg()
    res["cpus"] = os.cpu_count()
    res["torch"] = torch.__version__
    print(
        f"# marginal KL benchmark: N = {a.N}, S = {a.S}, d = {a.d}, blocks "
        f"{a.chunk_s}×{a.chunk_n}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, load average {res['load_average'][0]:.1f} on {os.cpu_count()} CPUs"
    )
    threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    for name in dtypes:
        r = bench_gaussian(a.N, a.S, a.d, DTYPES[name], a.reps, a.chunk_s, a.chunk_n, threads)
        mem = bench_memory("estimate", a.N, a.S, a.d, name, a.chunk_s, a.chunk_n)
        mem_mm = bench_memory("mm", a.N, a.S, a.d, name, a.chunk_s, a.chunk_n)
        r["peak_extra_MiB"] = mem["peak_extra_bytes"] / MiB
        r["mm_peak_extra_MiB"] = mem_mm["peak_extra_bytes"] / MiB
        r["mm_output_MiB"] = a.S * a.N * DTYPES[name].itemsize / MiB
        r["memory_method"] = mem["method"]
        res[name] = r
        print(
            f"\n[{name}] KL[q(z)‖π] = {r['value']:.4f} ± {r['stderr']:.4f} nats, "
            f"I(n; z) = {r['mutual_info']:.4f}"
        )
        for nt in threads:
            t = r[f"threads_{nt}"]
            w, c = t["wall"], t["cpu"]
            print(
                f"  {nt} thread(s), min of {a.reps}: estimate {w['estimate']:.2f} s wall / "
                f"{c['estimate']:.2f} s cpu; matmul {w['mono']:.2f} s wall / {c['mono']:.2f} s "
                f"cpu ({t['gflops_mono_wall']:.1f} GFLOP/s); blocked matmul {w['blocked']:.2f} s"
                f"\n      ratio to the matmul: {t['ratio_wall']:.2f}x wall, "
                f"{t['ratio_cpu']:.2f}x cpu (target <= 3x); to the blocked matmul "
                f"{t['ratio_wall_blocked']:.2f}x wall"
                f"\n      with 512×2048 blocks: {w['estimate_small']:.2f} s wall, ratio "
                f"{t['ratio_wall_small']:.2f}x wall, {t['ratio_cpu_small']:.2f}x cpu"
            )
        print(
            f"  peak extra memory: {r['peak_extra_MiB']:.1f} MiB (target <= 512 MiB); check: "
            f"monolithic matmul {r['mm_peak_extra_MiB']:.1f} MiB for a "
            f"{r['mm_output_MiB']:.1f} MiB output  [{r['memory_method']}]"
        )

    if not a.skip_models:
        q = a.quick
        nvp = bench_nvp(
            N=256 if q else 1000,
            S=64 if q else 200,
            N_naive=32 if q else 64,
            S_naive=16,
            threads=threads,
        )
        res["nvp"] = nvp
        print("\n[VAE + NVP, small size, untrained]")
        print(
            f"  latent {nvp['latent_dim']}, h {nvp['context_dim']}, {nvp['n_flows']} "
            f"couplings; context path N = {nvp['context_N_S'][0]}, S = "
            f"{nvp['context_N_S'][1]}; naive matched-row path N = {nvp['naive_N_S'][0]}, "
            f"S = {nvp['naive_N_S'][1]}"
        )
        for nt in threads:
            t = nvp[f"threads_{nt}"]
            full_h = 10_000 * 10_000 / t["context_pairs_per_s"] / 3600
            print(
                f"  {nt} thread(s): context path {t['context_pairs_per_s']:,.0f} pairs/s "
                f"({t['context_seconds']:.1f} s), naive {t['naive_pairs_per_s']:,.0f} "
                f"pairs/s -> {t['context_pairs_per_s'] / t['naive_pairs_per_s']:.0f}x; "
                f"N = S = 10,000 would take {full_h:.1f} h"
            )

    bias = bias_gaussian(N=400 if a.quick else 2000, S=2000, d=4, Ms=[10, 50, 200], spread=1.0)
    res["bias_gaussian"] = bias
    print(
        f"\n[subsampled-N bias, Gaussian posteriors, N = {bias['N']}, S = {bias['S']}, "
        f"d = {bias['d']}] full-N value {bias['full']:.4f}"
    )
    for row in bias["rows"]:
        print(
            f"  M = {row['M']:4d}: bias {row['bias']:+.4f} ± {row['bias_se']:.4f} "
            f"(bound [0, log(N/M) = {row['bound_log_N_over_M']:.3f}])"
        )
    if not a.skip_models:
        cd = bias_convdraw(N=24 if a.quick else 48, S=24 if a.quick else 48, M=6)
        res["bias_convdraw"] = cd
        print("\n[subsampled-N bias, ConvDRAW small size, untrained]")
        print(
            f"  N = {cd['N']}, S = {cd['S']}, M = {cd['M']}: full {cd['full']:.3f}, "
            f"subsampled {cd['subsampled']:.3f}, bias {cd['bias']:+.3f} ± "
            f"{cd['bias_se']:.3f} (bound [0, {cd['bound_log_N_over_M']:.3f}]); full-N pairs "
            f"{cd['full_pairs_per_s']:,.0f}/s"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2, default=float)


if __name__ == "__main__":
    main()
