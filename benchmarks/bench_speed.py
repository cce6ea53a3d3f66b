"""CPU speed of the chapter sweeps, as paired ratios measured in one run (issue: CPU speed).

Prints, single-threaded (``torch.set_num_threads(1)``: what every chapter worker uses):

1. **compiled ÷ eager** step images/s for each model (``conv_vae``, ``vae_nvp``, ``convdraw``
   fused), as ``TrainConfig(compile=True)`` runs it (``torch.compile`` of the model, eager
   RNG); the one-off compile time, cold (a fresh inductor cache, what a new machine pays) and
   warm (compiled again from that cache), and the break-even number of steps of each.
2. **fused ÷ for-loop Adam**: a whole eager training step of each model with the engine's
   optimiser (:func:`geco_core.train.make_optimizer`, PyTorch's fused Adam) against the same
   step with the for-loop Adam the engine used before (the default ``torch.optim.Adam`` on
   CPU); every other step here uses the engine's.
   Then **channels_last ÷ NCHW decoder**: the conv VAE's and the VAE+NVP's whole step with
   the decoder in its channels_last layout (the library's) against the same decoder in NCHW
   memory, for one- and three-channel images. Then **bfloat16 ÷ float32** per model: the
   step with ``TrainConfig(precision="bfloat16")`` (the forward under bfloat16 autocast)
   against float32 — other numbers (``benchmarks/study_precision.py`` measures what changes).
3. **ConvDRAW fused ÷ reference** training-step images/s (goal ≥ 1.5): the model's default
   ``implementation="fused"`` unroll against ``"reference"``, the straightforward step (the
   equations written out, NCHW), from the same parameters — a full GECO + RE step (forward,
   objective, backward, Adam) at the library's "small" size (chapter 03's cpu profile),
   batch 32. Also fused + ``torch.compile`` ÷ reference, and — other numbers, not the
   default (the relative change of one forward is printed) — the fused step with
   ``TrainConfig(precision="bfloat16")`` (bfloat16 autocast) ÷ reference: what the AMX units
   of a recent Xeon make of bfloat16 convolutions.
4. **marginal KL ÷ same-FLOP matmul** (goal ≤ 1.1): the diagonal-Gaussian exact marginal KL
   (N = S = 10⁴, d = 32) with the blocks :func:`geco_core.metrics.marginal.gaussian_blocks`
   picks for one thread, against one ``[S, 2d+1] @ [2d+1, N]`` matmul.
5. **VAE + NVP pairs/s** of chapter 04's pair matrix (:func:`geco_core.metrics.aggregate.
   log_q_matrix`), eager, compiled ÷ eager for its block function, and eager ÷ a dense matmul
   of the same FLOPs (counted by ``torch.utils.flop_counter``).
6. **ConvDRAW pairs/s** of the subsampled estimator (``model.log_q`` on matched rows), and
   its time ÷ a dense matmul of the same FLOPs.

Each ratio is measured in rounds that interleave the two variants (A, B, B, A), so drift and
other processes hit both alike; the script prints min / median / max of the per-round ratios,
and the load average before and after (another busy process makes every absolute figure
meaningless, and with more than one thread makes torch's threads wait on each other:
``benchmarks/bench_train.py``'s docstring).

Usage::

    python benchmarks/bench_speed.py            # 6–7 minutes (nine compilations)
    python benchmarks/bench_speed.py --quick    # fewer rounds, smaller marginal-KL problem
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geco_core.constraints import RE  # noqa: E402
from geco_core.models import build_model  # noqa: E402
from geco_core.objectives import GECOObjective  # noqa: E402
from geco_core.train import make_optimizer, precision_context  # noqa: E402

#: The engine's bfloat16 context on CPU (``TrainConfig(precision="bfloat16")``).
BF16 = precision_context("bfloat16", "cpu")


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


def _step_fn(model, x: torch.Tensor, forward, fused_adam: bool = True):
    """A GECO + RE training step as the engine runs it (its fused Adam, :func:`make_optimizer`;
    ``fused_adam=False``: the for-loop Adam it used before)."""
    objective = GECOObjective([RE(kappa=0.1)], alpha=0.9)
    params = list(model.parameters())
    opt = make_optimizer(params, 1e-3) if fused_adam else torch.optim.Adam(params, lr=1e-3)

    def step():
        out = forward(x)
        loss, _ = objective(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _model_and_batch(
    name: str, batch_size: int, state: dict | None = None, channels: int = 1, **kw
):
    """A model in training mode (``state`` loaded) prepared on a fixed batch of noise images
    of ``channels`` channels."""
    torch.manual_seed(0)
    x = torch.rand(batch_size, channels, 28, 28)
    model = build_model(name, (channels, 28, 28), **kw)
    if state is not None:
        model.load_state_dict(state)
    model.train()
    model.prepare(x)  # after loading: prepare reads the loaded initialisation flag
    return model, x


def _bf16_forward(model):
    """``model``'s forward as the engine runs it with ``precision="bfloat16"``."""

    def forward(xb):
        with BF16():
            return model(xb)

    return forward


def _paired_steps(a, b, batch_size: int, rounds: int, reps: int) -> tuple:
    """Training steps ``a`` and ``b`` after one warm-up call each, timed in ABBA rounds:
    (images/s of a, of b, from their best rounds; the summary of time(a) ÷ time(b); the
    per-round seconds of a and of b)."""
    a()
    b()
    ta, tb, ratio = paired(a, b, rounds, reps)
    return batch_size / min(ta), batch_size / min(tb), _summary(ratio), ta, tb


def _compiled_step(model, x) -> tuple:
    """The compiled training step, and the seconds its first call took: cold (this process's
    fresh inductor cache, as on a new machine) and warm (compiled again from that cache after
    ``torch._dynamo.reset()``, in the same process: in-memory caches survive the reset, so a
    new process with a warm on-disk cache pays somewhat more)."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # as the engine compiles
    times = []
    for _ in range(2):
        torch._dynamo.reset()
        step = _step_fn(model, x, torch.compile(model, dynamic=False))
        t0 = time.perf_counter()
        step()  # compiles forward and backward
        times.append(time.perf_counter() - t0)
    return step, times[0], times[1]


def bench_compile(name: str, batch_size: int, rounds: int, reps: int) -> dict:
    """compiled ÷ eager for one model (ConvDRAW: its default, fused, implementation)."""
    eager_model, x = _model_and_batch(name, batch_size)
    comp_model, _ = _model_and_batch(name, batch_size, eager_model.state_dict())
    eager = _step_fn(eager_model, x, eager_model)
    comp, cold_s, warm_s = _compiled_step(comp_model, x)
    eager_img_s, comp_img_s, ratio, te, tc = _paired_steps(eager, comp, batch_size, rounds, reps)
    out = {"model": name, "compile_cold_s": cold_s, "compile_warm_s": warm_s,
           "eager_img_s": eager_img_s, "compiled_img_s": comp_img_s,
           "compiled_over_eager": ratio}
    saved = statistics.median(te) - statistics.median(tc)
    for k in ("cold", "warm"):
        out[f"break_even_steps_{k}"] = out[f"compile_{k}_s"] / saved if saved > 0 else math.inf
    return out


def bench_adam(name: str, batch_size: int, rounds: int, reps: int) -> dict:
    """The engine's fused Adam ÷ the for-loop Adam, a whole eager training step of one model."""
    loop_model, x = _model_and_batch(name, batch_size)
    fused_model, _ = _model_and_batch(name, batch_size, loop_model.state_dict())
    loop = _step_fn(loop_model, x, loop_model, fused_adam=False)
    fused = _step_fn(fused_model, x, fused_model)
    loop_img_s, fused_img_s, ratio, _, _ = _paired_steps(loop, fused, batch_size, rounds, reps)
    return {"model": name, "for_loop_img_s": loop_img_s, "fused_img_s": fused_img_s,
            "fused_over_for_loop": ratio}


def bench_precision(name: str, batch_size: int, rounds: int, reps: int) -> dict:
    """``TrainConfig(precision="bfloat16")`` ÷ float32, a whole eager training step of one
    model: its forward under bfloat16 autocast, as the engine runs it (other numbers: see
    benchmarks/study_precision.py for what they change)."""
    fp32_model, x = _model_and_batch(name, batch_size)
    bf16_model, _ = _model_and_batch(name, batch_size, fp32_model.state_dict())
    full = _step_fn(fp32_model, x, fp32_model)
    mixed = _step_fn(bf16_model, x, _bf16_forward(bf16_model))
    fp32_img_s, bf16_img_s, ratio, _, _ = _paired_steps(full, mixed, batch_size, rounds, reps)
    return {"model": name, "float32_img_s": fp32_img_s, "bfloat16_img_s": bf16_img_s,
            "bfloat16_over_float32": ratio}


def bench_decoder_layout(name: str, batch_size: int, rounds: int, reps: int) -> dict:
    """The channels_last decoder (:class:`geco_core.models.layers.ConvDecoder`'s layout) ÷ the
    same decoder in NCHW memory, a whole eager training step, one- and three-channel images."""
    out = {"model": name}
    for c in (1, 3):
        new, x = _model_and_batch(name, batch_size, channels=c)
        old, _ = _model_and_batch(name, batch_size, new.state_dict(), channels=c)
        old.decoder.to(memory_format=torch.contiguous_format)
        a, b = _step_fn(old, x, old), _step_fn(new, x, new)
        nchw_img_s, cl_img_s, ratio, _, _ = _paired_steps(a, b, batch_size, rounds, reps)
        out[f"c{c}"] = {"nchw_img_s": nchw_img_s, "channels_last_img_s": cl_img_s,
                        "channels_last_over_nchw": ratio}
    return out


def bench_convdraw_fused(batch_size: int, rounds: int, reps: int) -> dict:
    """ConvDRAW's fused unroll (eager, and compiled) against the reference unroll, the
    straightforward step, from the same parameters."""
    ref_model, x = _model_and_batch("convdraw", batch_size, implementation="reference")
    state = copy.deepcopy(ref_model.state_dict())  # the initial weights (ref_model trains)
    fused_model, _ = _model_and_batch("convdraw", batch_size, state)
    comp_model, _ = _model_and_batch("convdraw", batch_size, state)
    ref_step = _step_fn(ref_model, x, ref_model)
    ref_steps = 0  # how many steps the reference model takes here (its weights train)

    def ref():
        nonlocal ref_steps
        ref_steps += 1
        ref_step()

    fused = _step_fn(fused_model, x, fused_model)
    comp, _, _ = _compiled_step(comp_model, x)
    bf16_model, _ = _model_and_batch("convdraw", batch_size, state)
    bf16 = _step_fn(bf16_model, x, _bf16_forward(bf16_model))
    ref_img_s, fused_img_s, r_fused, _, _ = _paired_steps(ref, fused, batch_size, rounds, reps)
    _, comp_img_s, r_comp, _, _ = _paired_steps(ref, comp, batch_size, rounds, reps)
    _, bf16_img_s, r_bf16, _, _ = _paired_steps(ref, bf16, batch_size, rounds, reps)
    # how far bfloat16 moves the numbers: one forward from the same parameters and noise, at
    # initialisation and with the weights the reference reached in its timed steps
    rel = {}
    for when, weights in (("init", state), ("trained", ref_model.state_dict())):
        probe, _ = _model_and_batch("convdraw", batch_size, weights)
        with torch.no_grad():
            torch.manual_seed(1)
            out32 = probe(x)
            torch.manual_seed(1)
            out16 = _bf16_forward(probe)(x)
        for k in ("x_mean", "kl"):
            a, b = getattr(out32, k), getattr(out16, k).float()
            rel[f"{k}_{when}"] = float((b - a).norm() / a.norm())
    return {"reference_img_s": ref_img_s, "fused_img_s": fused_img_s,
            "fused_compiled_img_s": comp_img_s, "fused_bf16_img_s": bf16_img_s,
            "fused_over_reference": r_fused, "fused_compiled_over_reference": r_comp,
            "fused_bf16_over_reference": r_bf16, "bf16_relative_change": rel,
            "reference_steps_taken": ref_steps}


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


def _fmt(c: dict[str, float]) -> str:
    return f"{c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", default="conv_vae,vae_nvp,convdraw")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--warm-cache", action="store_true",
                   help="keep the user's inductor cache (default: a fresh one, cold compiles)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if not a.warm_cache:  # a fresh compiler cache: the compile times a new machine pays
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_speed_inductor_")
    rounds, reps = (3, 3) if a.quick else (5, 5)
    res: dict = {"torch": torch.__version__, "threads": 1, "rounds": rounds,
                 "load_before": os.getloadavg()}
    print(f"torch {torch.__version__}, 1 thread, {rounds} ABBA rounds; ratios: min / median / "
          f"max; load average {res['load_before'][0]:.2f} on {os.cpu_count()} cores")
    models = a.models.split(",")

    def per_model(key, bench, names, line) -> None:
        """``res[key]``: ``bench`` of each model in ``names``, one printed ``line`` each."""
        res[key] = []
        for name in names:
            r = bench(name, 32, rounds, reps)
            res[key].append(r)
            print(f"{name:9s} {line(r)}")

    # compile first, so that each model's first compilation is a cold one
    per_model("compile", bench_compile, models, lambda r: (
        f"eager {r['eager_img_s']:5.0f} img/s, compiled {r['compiled_img_s']:5.0f}; compiled ÷ "
        f"eager {_fmt(r['compiled_over_eager'])}; compile cold {r['compile_cold_s']:.0f} s / "
        f"warm {r['compile_warm_s']:.0f} s, pays after {r['break_even_steps_cold']:,.0f} / "
        f"{r['break_even_steps_warm']:,.0f} steps"))
    per_model("adam", bench_adam, models, lambda r: (
        f"step with the for-loop Adam {r['for_loop_img_s']:5.0f} img/s, fused "
        f"{r['fused_img_s']:5.0f}; fused ÷ for-loop {_fmt(r['fused_over_for_loop'])}"))
    per_model("decoder_layout", bench_decoder_layout, [m for m in models if m != "convdraw"],
              lambda r: (f"channels_last ÷ NCHW decoder, step images/s: 1 channel "
                         f"{_fmt(r['c1']['channels_last_over_nchw'])}, 3 channels "
                         f"{_fmt(r['c3']['channels_last_over_nchw'])}"))
    per_model("precision", bench_precision, models, lambda r: (
        f"step in float32 {r['float32_img_s']:5.0f} img/s, precision=bfloat16 "
        f"{r['bfloat16_img_s']:5.0f}; bfloat16 ÷ float32 {_fmt(r['bfloat16_over_float32'])} "
        "(other numbers)"))
    f = bench_convdraw_fused(32, rounds, reps)
    res["convdraw_fused"] = f
    print(f"ConvDRAW reference {f['reference_img_s']:.0f} img/s, fused {f['fused_img_s']:.0f}, "
          f"fused + compiled {f['fused_compiled_img_s']:.0f}")
    print(f"ConvDRAW fused ÷ reference {_fmt(f['fused_over_reference'])} (goal ≥ 1.5); "
          f"fused + compiled ÷ reference {_fmt(f['fused_compiled_over_reference'])}")
    rel = f["bf16_relative_change"]
    print(f"  other numbers: fused with precision=bfloat16 ÷ reference "
          f"{_fmt(f['fused_bf16_over_reference'])} ({f['fused_bf16_img_s']:.0f} img/s); one "
          f"forward's relative change, x_mean / KL: {rel['x_mean_init']:.1e} / "
          f"{rel['kl_init']:.1e} at initialisation, {rel['x_mean_trained']:.1e} / "
          f"{rel['kl_trained']:.1e} after the reference's {f['reference_steps_taken']} timed "
          f"Adam steps on its one noise batch")
    m = bench_marginal(2000 if a.quick else 10_000, 32, rounds)
    res["marginal_kl"] = m
    print(f"marginal KL (N = S = {m['N']:,}, d = 32, blocks {m['blocks']}) ÷ same-FLOP matmul: "
          f"{_fmt(m['estimate_over_matmul'])} (goal ≤ 1.1 at N = 10,000)")
    q = bench_pairs(1024 if a.quick else 2048, 32, rounds)
    res["nvp_pairs"] = q
    print(f"VAE+NVP pairs (block {q['block']}): eager {q['eager_pairs_s']:,.0f} pairs/s, "
          f"compiled ÷ eager {_fmt(q['compiled_over_eager'])} (compile {q['compile_s']:.0f} s)")
    print(f"VAE+NVP pairs, eager ÷ same-FLOP matmul ({q['flops_per_pair'] / 1e3:.0f} kFLOP per "
          f"pair): {_fmt(q['eager_over_same_flop_matmul'])}")
    d = bench_convdraw_pairs(64 if a.quick else 256, rounds)
    res["convdraw_pairs"] = d
    print(f"ConvDRAW pairs (subsampled estimator, log_q on {d['pairs']} rows): "
          f"{d['pairs_s']:,.0f} pairs/s, ÷ same-FLOP matmul ({d['flops_per_pair'] / 1e6:.1f} "
          f"MFLOP per pair): {_fmt(d['eager_over_same_flop_matmul'])}")
    res["load_after"] = os.getloadavg()
    print(f"load average after: {res['load_after'][0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
