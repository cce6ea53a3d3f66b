"""CPU speed of the chapter sweeps, as paired ratios measured in one run (issue: CPU speed).

Prints, single-threaded (``torch.set_num_threads(1)``: what every chapter worker uses):

1. **compiled ÷ eager** training-step images/s for each model (``conv_vae``, ``vae_nvp``,
   ``convdraw``) at the library's "small" size (chapter 03's cpu profile), batch 32: a full
   GECO + RE step (forward, objective, backward, Adam). The eager step is the straightforward
   baseline; the compiled one is ``TrainConfig(compile=True)``'s (``torch.compile`` of the
   model, eager RNG). For ConvDRAW also **channels_last ÷ eager**. Also the one-off compile
   time and the break-even number of steps.
2. **marginal KL ÷ same-FLOP matmul**: the diagonal-Gaussian exact marginal KL (N = S = 10⁴,
   d = 32) with the blocks :func:`geco_core.metrics.marginal.gaussian_blocks` picks for one
   thread, against one ``[S, 2d+1] @ [2d+1, N]`` matmul.
3. **VAE + NVP pairs/s** of chapter 04's pair matrix (:func:`geco_core.metrics.aggregate.
   log_q_matrix`), eager, compiled ÷ eager for its block function, and eager ÷ a dense matmul
   of the same FLOPs (counted by ``torch.utils.flop_counter``).

4. **ConvDRAW pairs/s** of the subsampled estimator (``model.log_q`` on matched rows), and
   its time ÷ a dense matmul of the same FLOPs.

Each ratio is measured in rounds that interleave the two variants (A, B, B, A), so drift and
other processes hit both alike; the script prints min / median / max of the per-round ratios.

Usage::

    python benchmarks/bench_speed.py            # a few minutes (three compilations)
    python benchmarks/bench_speed.py --quick    # fewer rounds, smaller marginal-KL problem
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geco_core.constraints import RE  # noqa: E402
from geco_core.models import build_model  # noqa: E402
from geco_core.objectives import GECOObjective  # noqa: E402


def _summary(ratios: list[float]) -> dict[str, float]:
    return {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}


def paired(a, b, rounds: int, reps: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds per call of ``a`` and ``b`` in ABBA rounds; the per-round ratios time(a)/time(b)
    (> 1: b is faster)."""
    ta, tb, ratio = [], [], []
    for _ in range(rounds):
        t = {}
        for name, f in (("a", a), ("b", b), ("b2", b), ("a2", a)):
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            t[name] = (time.perf_counter() - t0) / reps
        sa, sb = (t["a"] + t["a2"]) / 2, (t["b"] + t["b2"]) / 2
        ta.append(sa)
        tb.append(sb)
        ratio.append(sa / sb)
    return ta, tb, ratio


def _step_fn(model, batch_size: int, x: torch.Tensor, forward):
    objective = GECOObjective([RE(kappa=0.1)], alpha=0.9)
    opt = torch.optim.Adam(list(model.parameters()), lr=1e-3)

    def step():
        out = forward(x)
        loss, _ = objective(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_compile(name: str, batch_size: int, rounds: int, reps: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch_size, 1, 28, 28)
    eager_model = build_model(name, (1, 28, 28))
    comp_model = build_model(name, (1, 28, 28))
    comp_model.load_state_dict(eager_model.state_dict())
    for m in (eager_model, comp_model):
        m.train()
        m.prepare(x)
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    compiled = torch.compile(comp_model, dynamic=False)
    eager = _step_fn(eager_model, batch_size, x, eager_model)
    comp = _step_fn(comp_model, batch_size, x, compiled)
    t0 = time.perf_counter()
    comp()  # compiles forward and backward
    compile_s = time.perf_counter() - t0
    eager()
    te, tc, ratio = paired(eager, comp, rounds, reps)
    out = {"model": name, "compile_s": compile_s, "eager_img_s": batch_size / min(te),
           "compiled_img_s": batch_size / min(tc), "compiled_over_eager": _summary(ratio)}
    saved = statistics.median(te) - statistics.median(tc)
    out["break_even_steps"] = compile_s / saved if saved > 0 else float("inf")
    if name == "convdraw":
        cl_model = build_model(name, (1, 28, 28)).to(memory_format=torch.channels_last)
        cl_model.load_state_dict(eager_model.state_dict())
        cl_model.train()
        cl_model.prepare(x)
        xc = x.contiguous(memory_format=torch.channels_last)
        cl = _step_fn(cl_model, batch_size, xc, cl_model)
        cl()
        _, _, r = paired(eager, cl, rounds, reps)
        out["channels_last_over_eager"] = _summary(r)
    return out


def bench_marginal(N: int, d: int, rounds: int) -> dict:
    from geco_core.metrics.marginal import gaussian_blocks, marginal_kl_gaussian

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(N, d, generator=g, dtype=torch.float64)
    ls = torch.full((N, d), -1.0, dtype=torch.float64)
    a = torch.randn(N, 2 * d + 1, dtype=torch.float64)
    b = torch.randn(2 * d + 1, N, dtype=torch.float64)
    cs, cn = gaussian_blocks()

    def estimate():
        marginal_kl_gaussian(mu, ls, N, seed=0, warn=False)

    def matmul():
        a @ b

    te, tm, ratio = paired(estimate, matmul, rounds, 1)
    return {"N": N, "S": N, "d": d, "blocks": [cs, cn], "estimate_s": min(te),
            "matmul_s": min(tm), "estimate_over_matmul": _summary(ratio)}


def bench_pairs(N: int, S: int, rounds: int) -> dict:
    from geco_core.metrics.evaluation import log_q_pairs_fn

    torch.manual_seed(0)
    model = build_model("vae_nvp", (1, 28, 28)).eval()
    x = torch.rand(N, 1, 28, 28)
    with torch.no_grad():
        z = model.sample_posterior(x[:S], n=1)[0][0]
        fn = log_q_pairs_fn(model, x)
        cfn = torch.compile(fn, dynamic=False)
        t0 = time.perf_counter()
        cfn(z, 0, N)
        compile_s = time.perf_counter() - t0
        te, tc, ratio = paired(lambda: fn(z, 0, N), lambda: cfn(z, 0, N), rounds, 1)
        # the same FLOPs as one dense matmul of the flow's width: [m, 128] @ [128, 128]
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            fn(z, 0, N)
        flops = counter.get_total_flops()
        m = max(1, int(flops / (2 * 128 * 128)))
        a, b = torch.randn(m, 128), torch.randn(128, 128)
        _, tm, ref_ratio = paired(lambda: fn(z, 0, N), lambda: a @ b, rounds, 1)
    return {"block": [S, N], "eager_pairs_s": S * N / min(te), "compiled_pairs_s": S * N / min(tc),
            "compile_s": compile_s, "compiled_over_eager": _summary(ratio),
            "flops_per_pair": flops / (S * N), "eager_over_same_flop_matmul": _summary(ref_ratio)}


def bench_convdraw_pairs(n_pairs: int, rounds: int) -> dict:
    """ConvDRAW's subsampled marginal-KL cost: ``model.log_q`` on ``n_pairs`` matched (z, x)
    rows (one full T-step encoder pass each), against a dense matmul of the same FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build_model("convdraw", (1, 28, 28)).eval()
    x = torch.rand(n_pairs, 1, 28, 28)
    with torch.no_grad():
        z = torch.randn(n_pairs, model.latent_dim)

        def pairs():
            model.log_q(z, x)

        with FlopCounterMode(display=False) as counter:
            pairs()
        flops = counter.get_total_flops()
        m = max(1, int(flops / (2 * 128 * 128)))
        a, b = torch.randn(m, 128), torch.randn(128, 128)
        tp, _, ratio = paired(pairs, lambda: a @ b, rounds, 1)
    return {"pairs": n_pairs, "pairs_s": n_pairs / min(tp), "flops_per_pair": flops / n_pairs,
            "eager_over_same_flop_matmul": _summary(ratio)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", default="conv_vae,vae_nvp,convdraw")
    p.add_argument("--json", default=None, help="also write the results to this file")
    a = p.parse_args()
    torch.set_num_threads(1)
    rounds, reps = (3, 3) if a.quick else (5, 5)
    res: dict = {"torch": torch.__version__, "threads": 1, "rounds": rounds}
    print(f"torch {torch.__version__}, 1 thread, {rounds} ABBA rounds; ratios: min / median / max")
    res["compile"] = []
    for name in a.models.split(","):
        r = bench_compile(name, 32, rounds, reps)
        res["compile"].append(r)
        c = r["compiled_over_eager"]
        print(f"{name:9s} eager {r['eager_img_s']:7.0f} img/s, compiled {r['compiled_img_s']:7.0f}"
              f" img/s; compiled ÷ eager {c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f}; "
              f"compile {r['compile_s']:.0f} s, pays after {r['break_even_steps']:.0f} steps")
        if "channels_last_over_eager" in r:
            c = r["channels_last_over_eager"]
            print(f"{'':9s} channels_last ÷ eager {c['min']:.2f} / {c['median']:.2f} / "
                  f"{c['max']:.2f}")
    m = bench_marginal(2000 if a.quick else 10_000, 32, rounds)
    res["marginal_kl"] = m
    c = m["estimate_over_matmul"]
    print(f"marginal KL (N = S = {m['N']:,}, d = 32, blocks {m['blocks']}) ÷ same-FLOP matmul: "
          f"{c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f} (goal ≤ 1.1)")
    q = bench_pairs(1024 if a.quick else 2048, 32, rounds)
    res["nvp_pairs"] = q
    c = q["compiled_over_eager"]
    print(f"VAE+NVP pairs (block {q['block']}): eager {q['eager_pairs_s']:,.0f} pairs/s, "
          f"compiled ÷ eager {c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f} "
          f"(compile {q['compile_s']:.0f} s)")
    c = q["eager_over_same_flop_matmul"]
    print(f"VAE+NVP pairs, eager ÷ same-FLOP matmul ({q['flops_per_pair'] / 1e3:.0f} kFLOP per "
          f"pair): {c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f}")
    d = bench_convdraw_pairs(64 if a.quick else 256, rounds)
    res["convdraw_pairs"] = d
    c = d["eager_over_same_flop_matmul"]
    print(f"ConvDRAW pairs (subsampled estimator, log_q on {d['pairs']} rows): "
          f"{d['pairs_s']:,.0f} pairs/s, ÷ same-FLOP matmul ({d['flops_per_pair'] / 1e6:.1f} "
          f"MFLOP per pair): {c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
