"""The book's latent-variable models and the MNIST classifier used by the CLA / FRE constraints.

- :class:`ConvVAE` (``"conv_vae"``) — diagonal-Gaussian posterior, N(0, I) prior.
- :class:`VAENVP` (``"vae_nvp"``) — conv decoder + fully connected conditional RealNVP
  posterior (paper §4.1, Table 2, Fig. 8).
- :class:`ConvDRAW` (``"convdraw"``) — Gregor et al. (2016), unconditional and conditional.
- :class:`MNISTClassifier`, :func:`load_pretrained_classifier` — the "simple convolutional
  MNIST classifier" of Table 1 (CLA) and its first layers as FRE features.

All models implement :class:`~geco_core.models.base.LatentVariableModel` and run on whatever
device their parameters and inputs live on.

Model sizes (:data:`MODEL_SIZES`): the paper does not list layer sizes, so ``size="small"``
(the constructors' defaults) is sized to train on 28×28 MNIST on a laptop CPU in minutes, and
``size="paper"`` is a larger configuration for the paper's scale of training (10⁵–10⁶ steps on
a GPU). Explicit keyword arguments override either.

Example:
    >>> m = build_model("conv_vae", image_shape=(1, 28, 28), latent_dim=8)
    >>> m.latent_dim, m.conditional
    (8, False)
    >>> build_model("vae", image_shape=(1, 28, 28))
    Traceback (most recent call last):
    ...
    ValueError: name: unknown value 'vae'; valid choices: conv_vae, convdraw, vae_nvp
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from geco_base.checks import check_choice
from geco_core.models.base import POSTERIOR_KINDS, LatentVariableModel, VAEOutput
from geco_core.models.conv_vae import ConvVAE
from geco_core.models.convdraw import ConvDRAW, ConvLSTMCell
from geco_core.models.nvp import VAENVP, ConditionalAffineCoupling

__all__ = [
    "MAX_PARAMETERS",
    "MODELS",
    "MODEL_SIZES",
    "POSTERIOR_KINDS",
    "ConditionalAffineCoupling",
    "ConvDRAW",
    "ConvLSTMCell",
    "ConvVAE",
    "LatentVariableModel",
    "MNISTClassifier",
    "VAENVP",
    "VAEOutput",
    "build_model",
    "load_pretrained_classifier",
]

MODELS: dict[str, type[LatentVariableModel]] = {
    "conv_vae": ConvVAE,
    "convdraw": ConvDRAW,
    "vae_nvp": VAENVP,
}

#: Constructor arguments per model size and model. "small": the constructors' defaults (trains
#: on two CPU cores in minutes); "paper": wider and deeper, for GPU runs at the paper's scale
#: (the paper gives no layer sizes; these are ours).
#: The most parameters :func:`build_model` builds (4 GiB in float32): a size typo such as
#: ``latent_dim=10**9`` is refused in one line instead of failing inside the allocator.
MAX_PARAMETERS = 10**9

MODEL_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "small": {"conv_vae": {}, "convdraw": {}, "vae_nvp": {}},
    "paper": {
        "conv_vae": {"latent_dim": 64, "channels": (64, 128), "hidden": 512},
        "vae_nvp": {
            "latent_dim": 64,
            "channels": (64, 128),
            "context_dim": 512,
            "n_flows": 8,
            "flow_hidden": 512,
        },
        "convdraw": {
            "steps": 8,
            "hidden": 128,
            "z_channels": 4,
            "read_channels": 64,
            "kernel": 5,
            "context_channels": 64,
        },
    },
}


def __getattr__(name: str) -> Any:
    # Lazy: the models import without loading the classifier module.
    if name in ("MNISTClassifier", "load_pretrained_classifier"):
        from geco_core.models import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'geco_core.models' has no attribute {name!r}")


def build_model(
    name: str,
    image_shape: Sequence[int] = (1, 28, 28),
    context_shape: Sequence[int] | None = None,
    size: str = "small",
    **kw: Any,
) -> LatentVariableModel:
    """Build a model by name: ``"conv_vae"``, ``"vae_nvp"`` or ``"convdraw"``.

    Args:
        name: a key of :data:`MODELS` (unknown → ValueError listing the valid choices).
        image_shape: (C, H, W) of x.
        context_shape: (C_ctx, H, W) of the context image for a conditional model, else None.
        size: ``"small"`` (the constructors' defaults) or ``"paper"`` (larger), see
            :data:`MODEL_SIZES`.
        **kw: constructor arguments, overriding the size's.

    Example:
        >>> build_model("convdraw", (1, 28, 28), context_shape=(2, 28, 28), steps=2).conditional
        True
        >>> build_model("conv_vae", size="paper").latent_dim
        64
    """
    check_choice(name, "name", sorted(MODELS))
    check_choice(size, "size", MODEL_SIZES)
    kwargs = {**MODEL_SIZES[size].get(name, {}), **kw}
    with torch.device("meta"):  # count the parameters before allocating any
        n = sum(p.numel() for p in MODELS[name](image_shape=image_shape,
                                                 context_shape=context_shape,
                                                 **kwargs).parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"model_kwargs: {name} with {kw!r} would have {n:,} parameters "
                         f"({4 * n / 2**30:,.1f} GiB in float32), more than the "
                         f"{MAX_PARAMETERS:,} allowed; use smaller sizes")
    return MODELS[name](image_shape=image_shape, context_shape=context_shape, **kwargs)
