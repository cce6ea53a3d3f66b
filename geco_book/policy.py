"""The cpu-scale training policy: how the book trains at a scale the paper never ran at.

The paper trains for 10⁵–10⁶ steps with Adam at 1e-5 (ConvDRAW) and 1e-6 (VAE+NVP) and GECO's
α = 0.99 (§4.1). Those are the library's defaults (:data:`geco_core.train.PAPER_LR`) and the
book's ``gpu`` profile. A chapter at the ``cpu`` profile has 10³–10⁴ steps of small models on
two cores, which needs two changes, both made here and nowhere else:

- **Learning rates.** At 1e-5 a run of minutes leaves the model at its initialisation. Adam's
  standard 1e-3 trains the small conv VAE and ConvDRAW stably; the NVP posterior is less
  stable (its coupling layers amplify large updates), hence 3e-4.
- **GECO's moving average, α = 0.9.** Algorithm 1 needs the moving average C_ma to track E[C]
  faster than the model changes. At lr 1e-3 the reconstruction error of a fresh model halves
  within ~50 steps, so at α = 0.99 (a ~100-step memory) C_ma lags far behind Ĉ and keeps
  growing λ long after the constraint is met. Measured (conv VAE, MNIST, κ = 0.1, batch 32,
  ν = 1): α = 0.99 drove λ to 1e12 in 300 steps; α = 0.9 let λ follow the constraint (≈ 3e5 at
  step 600 with MSE still above κ²).

Chapter 02 (Micro-MNIST) departs from this on purpose and says why in its own settings: its
batch is the whole 7-image data set, so it keeps the paper's α = 0.99 and limits λ's change
per step with GECO's factor clamp instead.

Example:
    >>> train_settings("vae_nvp", "cpu")
    {'lr': 0.0003, 'alpha': 0.9, 'nu': 1.0, 'model_size': 'small'}
    >>> train_settings("convdraw", "gpu")["lr"]
    1e-05
"""

from __future__ import annotations

from typing import Any

from geco_book.profiles import PROFILES
from geco_core.checks import check_choice

__all__ = ["CPU_LR", "GECO_SETTINGS", "MODEL_SIZE", "train_settings"]

#: Adam learning rates at the cpu (and smoke) profile, per model (see the module docstring).
CPU_LR: dict[str, float] = {"convdraw": 1e-3, "vae_nvp": 3e-4, "conv_vae": 1e-3}

#: GECO's moving-average slowness α and multiplier step ν per profile. gpu: the paper's α = 0.99
#: (§4.1) and ν = 1 (the paper gives no ν); cpu/smoke: α = 0.9 (module docstring).
GECO_SETTINGS: dict[str, dict[str, float]] = {
    "smoke": {"alpha": 0.9, "nu": 1.0},  # = cpu: smoke checks the cpu code path, only shorter
    "cpu": {"alpha": 0.9, "nu": 1.0},
    "gpu": {"alpha": 0.99, "nu": 1.0},
}

#: Model sizes (:data:`geco_core.models.MODEL_SIZES`) per profile: the small models train on two
#: cores in minutes; "paper" is the larger configuration for a GPU.
MODEL_SIZE: dict[str, str] = {"smoke": "small", "cpu": "small", "gpu": "paper"}


def train_settings(model: str, profile: str) -> dict[str, Any]:
    """The :class:`geco_core.train.TrainConfig` fields this policy sets for ``model`` at
    ``profile``: ``lr``, ``alpha``, ``nu`` and ``model_size``."""
    from geco_core.models import MODELS
    from geco_core.train import PAPER_LR

    check_choice(profile, "profile", PROFILES)
    check_choice(model, "model", tuple(MODELS))
    lr = PAPER_LR[model] if profile == "gpu" else CPU_LR[model]
    return {"lr": lr, **GECO_SETTINGS[profile], "model_size": MODEL_SIZE[profile]}
