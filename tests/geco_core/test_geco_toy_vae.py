"""A tiny VAE on toy data trained with GECO + RE: the constraint is met at the boundary when it
is active, and λ falls while the KL goes to 0 when it is inactive (κ² above the data variance)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from geco_core.constraints import RE
from geco_core.geco import GECO


def toy_data(n: int = 2048, seed: int = 0) -> Tensor:
    """8-D data in [0, 1] on a noisy 2-D manifold: x = sigmoid(A z) + noise."""
    g = torch.Generator().manual_seed(seed)
    a = 1.5 * torch.randn(2, 8, generator=g)
    z = torch.randn(n, 2, generator=g)
    return (torch.sigmoid(z @ a) + 0.01 * torch.randn(n, 8, generator=g)).clamp(0, 1)


class TinyVAE(nn.Module):
    """MLP VAE: diagonal Gaussian posterior, N(0, I) prior, sigmoid decoder mean."""

    def __init__(self, data_dim: int = 8, latent_dim: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(data_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, data_dim), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        kl = 0.5 * (mu.square() + (2 * log_sigma).exp() - 2 * log_sigma - 1).sum(1)
        return self.decoder(z), kl


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops run several times faster on one thread, above all on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(kappa: float, steps: int, nu: float, lambda_init: float, seed: int = 0):
    torch.manual_seed(seed)
    x = toy_data()
    model = TinyVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    geco = GECO(n_constraints=1, alpha=0.9, nu=nu, lambda_init=lambda_init)
    constraint = RE(kappa=kappa)
    kls = []
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (128,))]
        x_hat, kl = model(batch)
        loss = geco.loss(kl.mean(), constraint.batch_mean(batch, x_hat))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        kls.append(kl.mean().item())
    return x, geco, kls


def test_active_constraint_is_met_at_the_boundary():
    kappa = 0.1  # κ² = 0.01, well below the data variance (≈ 0.08 per dimension)
    x, geco, kls = train(kappa, steps=500, nu=2.0, lambda_init=1.0)
    assert x.var(0).mean() > 5 * kappa**2
    mse_ma = geco.c_ma.item() + kappa**2  # the moving average of the per-pixel MSE
    assert abs(mse_ma - kappa**2) <= 0.1 * kappa**2
    lam = geco.lambdas.item()
    assert math.isfinite(lam) and lam > 10.0  # the constraint is active: λ rose from 1
    assert geco.beta == pytest.approx(1 / lam)
    assert sum(kls[-50:]) / 50 > 0.5  # the latents carry information


def test_inactive_constraint_lets_lambda_fall_and_kl_vanish():
    kappa = 0.49  # κ² = 0.24, three times the data variance: the mean alone satisfies it
    x, geco, kls = train(kappa, steps=300, nu=0.5, lambda_init=1000.0)
    assert x.var(0).mean() < kappa**2 / 2
    assert geco.c_ma.item() < 0  # slack
    lam = geco.lambdas.item()
    assert math.isfinite(lam) and 0 <= lam < 1e-3 * 1000.0
    assert max(kls) > 0.2  # the latents were used while λ was large ...
    assert sum(kls[-20:]) / 20 < 0.02  # ... and are switched off once the inequality is inactive
