"""Speed of the theory chapter's fixed-point code (Fig. 2 sweep and the Eq. 25 projection).

Measures, in one run:

1. the full Fig. 2 sweep of Appendix A: 1,024 basis functions (32×32 grid), 100 β values
   (log-spaced, 1e-3 … 1), at most 400 smoothed iterations (α = 0.9, tol = 1e-3), on the
   chapter's 60-point blob mixture — batched over β (:func:`geco_core.theory.fixed_point_sweep`,
   float32 and float64);
2. the same work done the plain way, one β at a time with the float64 reference
   :func:`geco_core.theory.fixed_point_map`, timed on a few β values and scaled to the total
   number of iterations the sweep ran (the per-iteration cost of the reference does not depend
   on β);
3. one Lipschitz projection (Eq. 25, dense Cholesky) on the 24×24 and 32×32 grids.

It prints the times and the speed-up ratios; the target is the full sweep in under 10 s on
2 cores. Run: ``python benchmarks/bench_theory.py`` (``--repeats 3`` for the best of three).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from data_builders.mixtures import fig2_blobs, mixture_of_lines
from geco_core import theory


def _best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--n-betas", type=int, default=100)
    parser.add_argument("--max-iter", type=int, default=400)
    args = parser.parse_args()

    x, _ = fig2_blobs(seed=0)
    grid = theory.latent_grid(32)
    betas = np.geomspace(1e-3, 1.0, args.n_betas)
    print(f"CPU cores visible: {os.cpu_count()}; load average: {os.getloadavg()}")
    print(
        f"data: {x.shape[0]} points; basis: {grid.n_tiles} tiles; {betas.size} betas; "
        f"<= {args.max_iter} iterations (alpha 0.9, tol 1e-3)"
    )

    def sweep(dtype: str) -> theory.FixedPointSweep:
        return theory.fixed_point_sweep(
            x, betas, grid, max_iter=args.max_iter, dtype=dtype, progress=False
        )

    t32, res32 = _best_of(args.repeats, lambda: sweep("float32"))
    t64, res64 = _best_of(args.repeats, lambda: sweep("float64"))
    total_iters = int(res32.n_iter.sum())
    print(
        f"batched sweep, float32: {t32:7.2f} s  ({total_iters} beta-iterations, "
        f"{res32.converged.mean():.0%} converged)  -> under 10 s: {t32 < 10}"
    )
    print(
        f"batched sweep, float64: {t64:7.2f} s  "
        f"(max |psi32 - psi64| = {np.abs(res32.psi - res64.psi).max():.1e})"
    )

    # Plain reference: one beta at a time, float64, Eq. 20 + smoothing, fixed 25 iterations.
    psi0 = theory.init_reconstructions(grid, 0.1, seed=0)
    sample = betas[:: max(1, betas.size // 5)]
    n_ref = 25

    def reference() -> None:
        for beta in sample:
            psi = psi0.copy()
            for _ in range(n_ref):
                psi = 0.9 * psi + 0.1 * theory.fixed_point_map(x, psi, beta, grid.log_prior)

    t_ref, _ = _best_of(args.repeats, reference)
    per_iter = t_ref / (sample.size * n_ref)
    t_plain = per_iter * total_iters
    print(
        f"plain per-beta float64 reference: {per_iter * 1e3:.2f} ms per beta-iteration, "
        f"{t_plain:.1f} s for the same {total_iters} beta-iterations"
    )
    print(
        f"speed-up of the batched sweep: float32 {t_plain / t32:.1f}x, "
        f"float64 {t_plain / t64:.1f}x; float32 vs float64 {t64 / t32:.2f}x"
    )

    # Eq. 25: one projection (dense Cholesky solve) per iteration of the Lipschitz runs.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    xl, _ = mixture_of_lines(seed=0)
    for size in (24, 32):
        g = theory.latent_grid(size)
        w = theory.lipschitz_weights(g, 0.2, 1e-3)
        xbar = theory.init_reconstructions(g, seed=0)
        marginal = theory.tile_responsibilities(xl, xbar, 3e-3, g.log_prior).mean(0)

        def solves(w=w, xbar=xbar, marginal=marginal):
            return [theory.lipschitz_projection(xbar, marginal, w, 3e-3) for _ in range(5)]

        t_default, _ = _best_of(3, solves)
        line = f"Eq. 25 projection, {g.n_tiles} tiles: {t_default / 5 * 1e3:6.1f} ms per solve"
        if threadpool_limits is not None:
            with threadpool_limits(limits=1, user_api="blas"):
                t_one, _ = _best_of(3, solves)
            line += (
                f" (default BLAS threads), {t_one / 5 * 1e3:6.1f} ms on one thread "
                f"(ratio {t_default / t_one:.1f}x)"
            )
        t_run, run = _best_of(
            1,
            lambda g=g: theory.lipschitz_fixed_points(xl, 3e-3, [1e-3], 0.2, g, progress=False)[0],
        )
        print(line)
        print(
            f"  a Fig. 7 panel on {g.n_tiles} tiles ({int(run.n_iter[0])} iterations): "
            f"{t_run:5.1f} s"
        )


if __name__ == "__main__":
    main()
