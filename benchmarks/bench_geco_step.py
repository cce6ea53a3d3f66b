"""Time of a GECO training step vs a plain ELBO step (issue 2's benchmark; target ratio <= 1.02).

Both steps run on the same small convolutional VAE, the same optimizer and the same batch and
differ only in the loss:

- ELBO (Eq. 1, Gaussian likelihood with a fixed σ): ``mean_b[KL_b + D·MSE_b/(2σ²)]``;
- GECO (Algorithm 1 with the RE constraint of Table 1): ``geco.loss(mean_b KL_b, Ĉ)`` with
  ``Ĉ = RE(κ).batch_mean(x, x̂)``, which includes the moving average and the multiplier update.

The two kinds of step alternate in ABBA order (so slow drifts in the machine's load hit both
alike); the script prints the median time of each, their ratio, the median of the per-pair
ratios and, separately, the cost of one ``geco.loss`` call in isolation.

Usage::

    python benchmarks/bench_geco_step.py [--reps 300] [--batch 64] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

from geco_core.constraints import RE
from geco_core.geco import GECO


class ConvVAE(nn.Module):
    """A small 28×28 conv VAE (diagonal Gaussian posterior, N(0, I) prior), for timing only."""

    def __init__(self, latent_dim: int = 16, width: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        kl = 0.5 * (mu.square() + (2 * log_sigma).exp() - 2 * log_sigma - 1).sum(1)
        return self.decoder(z), kl


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps of each kind")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = ConvVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 1, 28, 28, device=device)
    sigma, dims = 0.1, x[0].numel()
    # κ² = 1/12, the variance of the uniform-noise batch (the MSE of predicting its mean), so the
    # constraint sits near its boundary and λ stays O(1)
    constraint = RE(kappa=(1 / 12) ** 0.5)
    geco = GECO(n_constraints=1, alpha=0.99, nu=1.0)

    def elbo_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        x_hat, kl = model(x)
        mse = (x - x_hat).square().flatten(1).mean(1)
        loss = (kl + mse * (dims / (2 * sigma**2))).mean()
        loss.backward()
        optimizer.step()

    def geco_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        x_hat, kl = model(x)
        loss = geco.loss(kl.mean(), constraint.batch_mean(x, x_hat))
        loss.backward()
        optimizer.step()

    def timed(step) -> float:
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        elbo_step()
        geco_step()
    t_elbo: list[float] = []
    t_geco: list[float] = []
    for i in range(args.reps):
        if i % 2 == 0:
            t_elbo.append(timed(elbo_step))
            t_geco.append(timed(geco_step))
        else:
            t_geco.append(timed(geco_step))
            t_elbo.append(timed(elbo_step))

    # The cost of geco.loss alone, on tensors like the ones of a step.
    kl_in = torch.tensor(1.0, device=device, requires_grad=True)
    c_in = torch.tensor([0.0], device=device, requires_grad=True)  # keeps λ where it is
    n_calls = 20 * args.reps
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_calls):
        geco.loss(kl_in, c_in)
    _sync(device)
    per_call = (time.perf_counter() - start) / n_calls

    m_elbo, m_geco = statistics.median(t_elbo), statistics.median(t_geco)
    pair_ratio = statistics.median(g / e for g, e in zip(t_geco, t_elbo))
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} reps={args.reps}")
    print(f"ELBO step  median {m_elbo * 1e3:8.3f} ms")
    print(f"GECO step  median {m_geco * 1e3:8.3f} ms")
    print(f"ratio GECO/ELBO (medians)          {m_geco / m_elbo:.4f}  (target <= 1.02)")
    print(f"ratio GECO/ELBO (median of pairs)  {pair_ratio:.4f}")
    print(f"geco.loss alone: {per_call * 1e6:.1f} us per call; lambda={geco.lambdas.tolist()}")


if __name__ == "__main__":
    main()
