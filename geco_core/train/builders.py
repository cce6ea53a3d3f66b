"""What a :class:`~geco_core.train.config.TrainConfig` names, built: data, model, objective.

- :func:`load_data` — the dataset (:func:`data_builders.load_dataset`);
- :func:`build_model_for` — the model at the config's size (:func:`geco_core.models.build_model`);
- :func:`build_objective` — ELBO (Eq. 1), GECO (Eq. 2, Algorithm 1) with the config's
  constraints of Table 1, the GQN-annealed β or a fixed-β β-VAE (:mod:`geco_core.objectives`).

The engine supplies what a constraint cannot build from its name alone: the data shape of the
per-group RE and the pretrained MNIST classifier of CLA and of ``FRE(features="classifier")``.

Example:
    >>> from geco_core.train import TrainConfig
    >>> cfg = TrainConfig(constraint="re,pncc", kappa=[0.1, 0.8], progress=False)
    >>> obj = build_objective(cfg, (1, 28, 28))
    >>> obj.name, [type(c).__name__ for c in obj.constraints], obj.geco.alpha
    ('geco', ['RE', 'PNCC'], 0.99)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from geco_core.constraints import build_constraint
from geco_core.models import LatentVariableModel, build_model, load_pretrained_classifier
from geco_core.objectives import (
    ELBO,
    OBJECTIVES,
    AnnealedBeta,
    BetaVAE,
    GECOObjective,
    Objective,
)
from geco_core.train.config import TrainConfig, constraint_kwargs_for

__all__ = ["build_model_for", "build_objective", "load_data", "make_constraint", "target_labels"]


def load_data(cfg: TrainConfig):
    """The config's dataset (:class:`data_builders.ImageDataset`)."""
    from data_builders.registry import load_dataset

    return load_dataset(
        cfg.dataset,
        cfg.split,
        seed=cfg.seed,
        root=cfg.data_root,
        download=cfg.download,
        **cfg.dataset_kwargs,
    )


def target_labels(data) -> Tensor:
    """Labels of ``x`` (not of the context): the one ``x_label_columns`` column when there is
    one (MNIST-rotate, -sum: l₂), all columns otherwise."""
    labels = data.labels
    cols = data.meta.get("x_label_columns")
    if labels.dim() == 2 and cols is not None and len(cols) == 1:
        return labels[:, int(cols[0])]
    return labels


def build_model_for(
    cfg: TrainConfig, image_shape: Sequence[int], context_shape: Sequence[int] | None
) -> LatentVariableModel:
    """``cfg.model`` at ``cfg.model_size`` for images ``image_shape``, with ``model_kwargs``."""
    return build_model(
        cfg.model,
        image_shape=tuple(image_shape),
        context_shape=None if context_shape is None else tuple(context_shape),
        size=cfg.model_size,
        **cfg.model_kwargs,
    )


def _constraint_kwargs(cfg: TrainConfig, name: str) -> dict[str, Any]:
    return constraint_kwargs_for(cfg.constraint_kwargs, cfg.constraints, name)


class _ClassifierFeatures(nn.Module):
    """FRE features f(x): the first ``depth`` layers of the pretrained MNIST classifier."""

    def __init__(self, classifier: nn.Module, depth: int = 5) -> None:
        super().__init__()
        self.classifier, self.depth = classifier, int(depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x, depth=self.depth)


def make_constraint(
    name: str, kappa: float, image_shape, kw: dict[str, Any], data_source: str = "mnist-60k"
) -> nn.Module:
    """``build_constraint`` plus what the engine can supply: GroupedRE's ``data_shape``, the
    pretrained MNIST classifier of ``data_source`` (the data's ``source``:
    :func:`geco_core.models.classifier.weights_path`) for CLA and for
    ``FRE(features="classifier", depth=k)``."""
    key = name.lower().replace("-", "_")
    if key == "grouped_re" and image_shape is not None:
        kw.setdefault("data_shape", tuple(image_shape))
    if key == "cla" and "classifier" not in kw:
        kw["classifier"] = load_pretrained_classifier(source=data_source)
    if key == "fre" and kw.get("features") == "classifier":
        net = load_pretrained_classifier(source=data_source)
        kw["features"] = _ClassifierFeatures(net, kw.pop("depth", 5))
    return build_constraint(name, kappa, **kw)


def build_objective(
    cfg: TrainConfig, image_shape: Sequence[int] | None = None, data_source: str = "mnist-60k"
) -> Objective:
    """The objective named by ``cfg.objective`` with the config's hyper-parameters.

    ``image_shape`` (C, H, W) lets per-group RE constraints size themselves; ``data_source``
    (the data's ``source``) picks the MNIST classifier of CLA / FRE.
    """
    if cfg.objective == "elbo":
        return ELBO(sigma=cfg.sigma, learn_sigma=cfg.learn_sigma)
    if cfg.objective == "annealed":
        return AnnealedBeta(cfg.anneal_sigma_start, cfg.anneal_sigma_end, cfg.anneal_steps)
    if cfg.objective == "beta_vae":
        return BetaVAE(cfg.beta)
    cls = OBJECTIVES[cfg.objective]
    if not cls.takes_constraints:  # σ-VAE, ControlVAE (geco_core.objectives.alternatives)
        return cls(**cfg.objective_kwargs)
    constraints = [
        make_constraint(name, kappa, image_shape, _constraint_kwargs(cfg, name), data_source)
        for name, kappa in zip(cfg.constraints, cfg.kappas)
    ]
    if cls.takes_objective_kwargs:  # the Lagrangians of geco_core.objectives.alternatives
        return cls(constraints, **cfg.objective_kwargs)
    return GECOObjective(
        constraints,
        alpha=cfg.alpha,
        nu=cfg.nu,
        lambda_init=cfg.lambda_init,
        **cfg.geco_kwargs,
    )
