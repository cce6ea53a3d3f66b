"""Reconstruction constraints of Table 1 (RE, per-group RE, FRE, CLA, pNCC) as modules.

A constraint compares data ``x`` with a reconstruction ``x_hat = g(z)`` and returns one value per
example, ``[B]`` (or ``[B, L]`` for a vector constraint with L components). The sign convention
is the paper's (§3): the constraint is **satisfied when its value is <= 0**, and GECO enforces
``E[C] <= 0`` through the batch mean Ĉ (:meth:`Constraint.batch_mean`), which is what
:meth:`geco_core.geco.GECO.loss` takes::

    constraint = RE(kappa=0.1)
    out = model(x)
    loss = geco.loss(out.kl.mean(), constraint.batch_mean(x, out.x_mean))

Each constraint keeps its tolerance in ``kappa`` (a number > 0, at most ``kappa_max``: 1e3
for the error constraints RE, per-group RE and FRE — RMS tolerances on data in [0, 1], where
any κ ≥ 1 is already never active — and 1 for CLA and pNCC, whose κ is a probability or a
correlation) and declares ``n_constraints`` (L, the length of Ĉ, hence of GECO's λ). Images are
float tensors ``[B, C, H, W]`` in [0, 1]: every constraint refuses an integer ``x``/``x_hat``
(TypeError) and data ``x`` outside [0, 1] (ValueError; one min/max pass over x).
Every formula lives in one named function that cites Table 1; the modules only hold the
hyper-parameters (and, for FRE/CLA, the feature network or classifier).

References:
    D. J. Rezende, F. Viola. "Taming VAEs". arXiv:1810.00597, 2018. Table 1 and its caption,
    §3.2, §4.1, Appendix E.1; workshop version: "bounding reconstruction error independently
    for each dimension".

Example:
    >>> import torch
    >>> x = torch.rand(4, 1, 8, 8)
    >>> build_constraint("re", kappa=0.1)(x, x)  # exact reconstruction: −κ²
    tensor([-0.0100, -0.0100, -0.0100, -0.0100])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geco_base.checks import (
    check_class_labels,
    check_float_tensor,
    check_int,
    check_positive,
    check_unit_interval,
)

__all__ = [
    "CLA",
    "CONSTRAINTS",
    "FRE",
    "PNCC",
    "RE",
    "Constraint",
    "GroupedRE",
    "build_constraint",
    "classification_constraint",
    "feature_reconstruction_error",
    "grouped_reconstruction_error",
    "local_statistics",
    "patch_ncc",
    "reconstruction_error",
    "whitened_patches",
]


# ------------------------------------------------------------------------------- validation
def _check_pair(x: Tensor, x_hat: Tensor, min_dim: int = 2) -> None:
    """x: floating data ``[B, ...]`` in [0, 1]; x_hat: a floating tensor of the same shape."""
    if not isinstance(x, Tensor) or x.dim() < min_dim:
        raise ValueError(f"x must be a tensor [B, ...] with >= {min_dim} dims, got {x!r:.60}")
    if not isinstance(x_hat, Tensor) or x_hat.shape != x.shape:
        shape = list(x_hat.shape) if isinstance(x_hat, Tensor) else type(x_hat).__name__
        raise ValueError(f"x_hat must have the shape of x {list(x.shape)}, got {shape}")
    check_float_tensor(x, "x", images=True)
    check_float_tensor(x_hat, "x_hat", images=True)
    check_unit_interval(x, "x")


# -------------------------------------------------------------------------------- formulas
def reconstruction_error(x: Tensor, x_hat: Tensor, kappa: float) -> Tensor:
    """Table 1, RE: ``‖x − g(z)‖² − κ²`` per example, the squared error averaged over dims.

    Returns ``[B]``: ``mean_d (x_d − x̂_d)² − κ²``, in squared data units per dimension.
    """
    return (x - x_hat).square().flatten(1).mean(1) - kappa**2


def grouped_reconstruction_error(x: Tensor, x_hat: Tensor, kappa_sq: Tensor, dim: int) -> Tensor:
    """Table 1's RE bounded separately per group (workshop paper: "bounding reconstruction error
    independently for each dimension"): ``mean_{d ∈ group l} (x_d − x̂_d)² − κ_l²``.

    Args:
        x, x_hat: ``[B, ...]``.
        kappa_sq: κ_l², ``[L]``.
        dim: 1 for per-channel groups (``x`` is ``[B, C, ...]``, L = C); 0 for one group per
            dimension (L = the number of dimensions of one example).

    Returns:
        ``[B, L]``.
    """
    err = (x - x_hat).square()
    per_group = err.flatten(2).mean(2) if dim == 1 else err.flatten(1)
    return per_group - kappa_sq


def local_statistics(x: Tensor, window: int, stride: int = 1, eps: float = 1e-6) -> Tensor:
    """Local image statistics for FRE (Table 1's caption: "local image statistics, such as mean
    and standard deviation"): per channel, the mean and standard deviation of every
    ``window × window`` window (no padding), computed with :func:`torch.nn.functional.avg_pool2d`.

    ``std = sqrt(max(E[x²] − E[x]², 0) + eps)``; ``eps`` keeps the gradient finite on flat
    windows (whose std then reads ``sqrt(eps)``).

    Args:
        x: images ``[B, C, H, W]``.

    Returns:
        ``[B, 2C, H', W']``: the C local means, then the C local standard deviations.
    """
    mean = F.avg_pool2d(x, window, stride)
    var = F.avg_pool2d(x.square(), window, stride) - mean.square()
    return torch.cat([mean, (var.clamp_min(0.0) + eps).sqrt()], dim=1)


def feature_reconstruction_error(f_x: Tensor, f_x_hat: Tensor, kappa: float) -> Tensor:
    """Table 1, FRE: ``‖f(x) − f(g(z))‖² − κ²`` per example, averaged over feature dims.

    Returns ``[B]``: ``mean_k (f_k(x) − f_k(x̂))² − κ²`` in squared feature units.
    """
    return (f_x - f_x_hat).square().flatten(1).mean(1) - kappa**2


def classification_constraint(
    output: Tensor, labels: Tensor, kappa: float, outputs: str = "logits"
) -> Tensor:
    """Table 1, CLA, with the sign that makes it a "≤ 0 when satisfied" constraint:
    ``κ − l(x)ᵀc(g(z))``, where ``l(x)ᵀc(x̂)`` is the probability that the classifier gives
    the true label of x when shown x̂.

    Args:
        output: classifier output on x̂, ``[B, K]``: logits (``outputs="logits"``, turned into
            probabilities with a softmax) or probabilities (``outputs="probs"``).
        labels: true class indices of x, ``[B]`` (the one-hot l(x) of Table 1), int64.

    Returns:
        ``[B]``, in probability units, in ``[κ − 1, κ]``.
    """
    if outputs == "logits":
        p_true = output.log_softmax(1).gather(1, labels[:, None]).squeeze(1).exp()
    else:
        p_true = output.gather(1, labels[:, None]).squeeze(1)
    return kappa - p_true


def whitened_patches(x: Tensor, patch_size: int, stride: int, eps: float = 1e-6) -> Tensor:
    """ψ(x, i) of Table 1's pNCC: every ``patch_size × patch_size`` patch (all channels
    together, extracted with :func:`torch.nn.functional.unfold`), minus its mean, divided by
    ``sqrt(‖·‖² + eps)`` so that it has (nearly) unit norm; a flat patch maps to 0.

    Returns:
        ``[B, N, C·p·p]`` for N patch locations.
    """
    patches = F.unfold(x, patch_size, stride=stride)  # [B, C·p·p, N]
    centred = patches - patches.mean(1, keepdim=True)
    psi = centred * torch.rsqrt(centred.square().sum(1, keepdim=True) + eps)
    return psi.transpose(1, 2)


def patch_ncc(
    x: Tensor, x_hat: Tensor, kappa: float, patch_size: int, stride: int, eps: float = 1e-6
) -> Tensor:
    """Table 1, pNCC: ``κ − mean_i ψ(x, i)ᵀψ(g(z), i)`` per example (see :func:`whitened_patches`).

    Table 1 writes a sum over patch locations i of ``κ − ψᵀψ``; we take the mean, so κ is a
    target *average* normalised cross-correlation in (0, 1] that does not depend on the image
    size (the sum is N times this value).

    Returns:
        ``[B]``, dimensionless, in ``[κ − 1, κ + 1]``.
    """
    psi_x = whitened_patches(x, patch_size, stride, eps)
    psi_hat = whitened_patches(x_hat, patch_size, stride, eps)
    return kappa - (psi_x * psi_hat).sum(2).mean(1)


# --------------------------------------------------------------------------------- modules
class Constraint(nn.Module):
    """Base class: ``forward(x, x_hat, **kw)`` returns per-example values ``[B]`` (or
    ``[B, L]`` for a vector constraint), satisfied when ``<= 0``.

    Attributes:
        kappa: the tolerance κ > 0 (its unit is the constraint's own; see each subclass).
        n_constraints: L, the length of the batch mean Ĉ, i.e. of GECO's λ.
    """

    n_constraints: int = 1
    #: The largest κ accepted: 1e3 for error tolerances on data in [0, 1] (κ² must stay far
    #: from float32's overflow), 1 for a probability or correlation (CLA, pNCC).
    kappa_max: float = 1e3

    def __init__(self, kappa: float) -> None:
        super().__init__()
        self.kappa = check_positive(kappa, "kappa", upper=self.kappa_max)

    def forward(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        raise NotImplementedError

    def batch_mean(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        """Ĉ, the batch mean of :meth:`forward`, shape ``[n_constraints]`` (for GECO.loss)."""
        values = self(x, x_hat, **kwargs)
        return values.reshape(values.shape[0], self.n_constraints).mean(0)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}"


class RE(Constraint):
    """Reconstruction error (Table 1, RE): ``mean_d (x_d − x̂_d)² − κ²`` per example, ``[B]``.

    Units: squared data units per dimension (the mean, not the sum, over pixels and channels),
    so κ is a per-pixel RMS tolerance for data in [0, 1]: the paper's κ ∈ {0.06, …, 0.175}
    (Fig. 4) are RMS errors of 6–17.5 % of the pixel range, and Fig. 5's MSE 0.00029 is
    κ ≈ 0.017. Satisfied (≤ 0) when the mean squared error is at most κ².

    With this constraint GECO's λ is 1/β of a β-VAE (§3.2).

    Example:
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> RE(kappa=0.5)(x, x + 1.0)  # MSE 1, κ² = 0.25
        tensor([0.7500, 0.7500])
    """

    def forward(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        _check_pair(x, x_hat)
        return reconstruction_error(x, x_hat, self.kappa)


class GroupedRE(Constraint):
    """RE bounded independently per group (a vector constraint with one λ per group), ``[B, L]``.

    ``groups="channel"``: one constraint per channel, ``mean_{h,w} (x_c − x̂_c)² − κ_c²``, e.g.
    the three colour channels of Color-MNIST (L = C). ``groups="dimension"``: one constraint per
    dimension of an example, ``(x_d − x̂_d)² − κ_d²`` (L = C·H·W), the workshop paper's "bounding
    reconstruction error independently for each dimension".

    Units and sign as :class:`RE` (κ a per-pixel RMS tolerance; ≤ 0 satisfied).

    Args:
        kappa: κ > 0, one number for all groups or a sequence of L values.
        data_shape: the shape of one example, e.g. ``(3, 28, 28)`` (fixes L).
        groups: ``"channel"`` or ``"dimension"``.

    Example:
        >>> c = GroupedRE(kappa=0.1, data_shape=(3, 4, 4))
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> c(x, x).shape, c.n_constraints
        (torch.Size([2, 3]), 3)
    """

    GROUPS = ("channel", "dimension")

    def __init__(
        self, kappa: float | Sequence[float], data_shape: Sequence[int], groups: str = "channel"
    ) -> None:
        if groups not in self.GROUPS:
            raise ValueError(f"groups must be one of {list(self.GROUPS)}, got {groups!r}")
        shape = tuple(data_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"data_shape must be a tuple of positive ints, got {data_shape!r}")
        if groups == "channel" and len(shape) < 2:
            raise ValueError(f"data_shape must be (C, ...) for groups='channel', got {shape}")
        n = shape[0] if groups == "channel" else math.prod(shape)
        kappas = [kappa] if isinstance(kappa, numbers.Real) else list(kappa)
        if len(kappas) not in (1, n):
            raise ValueError(f"kappa must be a number or {n} numbers (one per group), got {kappa}")
        kappas = [check_positive(k, "kappa", upper=self.kappa_max) for k in kappas]
        super().__init__(kappas[0])
        self.kappa = kappas[0] if len(kappas) == 1 else tuple(kappas)
        self.data_shape, self.groups, self.n_constraints = shape, groups, n
        kappa_sq = torch.tensor(kappas, dtype=torch.float64).square().expand(n).clone()
        self.register_buffer("kappa_sq", kappa_sq, persistent=False)

    def forward(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        _check_pair(x, x_hat)
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape [B, *{self.data_shape}], got {list(x.shape)}")
        dim = 1 if self.groups == "channel" else 0
        return grouped_reconstruction_error(x, x_hat, self.kappa_sq.to(x.dtype), dim)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}, data_shape={self.data_shape}, groups={self.groups!r}"


class FRE(Constraint):
    """Feature reconstruction error (Table 1, FRE): ``mean_k (f_k(x) − f_k(x̂))² − κ²``, ``[B]``.

    ``f`` is either a feature callable (Table 1's caption: the first layers of a classifier —
    the paper used a pretrained CIFAR-10 ResNet; here e.g. the project's MNIST classifier) or
    ``"local_stats"``: per-channel local means and standard deviations over ``window × window``
    windows (:func:`local_statistics`), the caption's "local image statistics".

    Units: squared feature units per feature (the mean over features, as RE averages over
    pixels), so κ is an RMS tolerance per feature; for ``"local_stats"`` on images in [0, 1]
    that is a fraction of the pixel range, like RE's κ. Satisfied (≤ 0) when the mean squared
    feature error is at most κ².

    ``f(x)`` (the target) is computed without gradient; gradients flow through ``f(x̂)``. A
    feature network should be in eval mode with frozen parameters (``requires_grad_(False)``);
    an :class:`~torch.nn.Module` is registered as a submodule so ``.to(device)`` moves it.

    Args:
        kappa: κ > 0.
        features: a callable ``[B, C, H, W] -> [B, ...]`` or ``"local_stats"``.
        window, stride, eps: for ``"local_stats"`` (see :func:`local_statistics`).

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> FRE(kappa=0.1, window=3)(x, x)
        tensor([-0.0100, -0.0100])
    """

    FEATURES = ("local_stats",)

    def __init__(
        self,
        kappa: float,
        features: Callable[[Tensor], Tensor] | str = "local_stats",
        window: int = 5,
        stride: int = 1,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(kappa)
        if isinstance(features, str):
            if features not in self.FEATURES:
                raise ValueError(
                    f"features must be a callable or one of {list(self.FEATURES)}, got {features!r}"
                )
        elif not callable(features):
            raise ValueError(f"features must be a callable or 'local_stats', got {features!r}")
        self.features = features
        self.window = check_int(window, "window")
        self.stride = check_int(stride, "stride")
        self.eps = check_positive(eps, "eps")

    def feature_map(self, x: Tensor) -> Tensor:
        """f(x): the configured features of ``x``."""
        if isinstance(self.features, str):
            if x.dim() != 4:
                raise ValueError(f"x must be images [B, C, H, W] for 'local_stats', got {x.shape}")
            return local_statistics(x, self.window, self.stride, self.eps)
        return self.features(x)

    def forward(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        _check_pair(x, x_hat)
        with torch.no_grad():
            f_x = self.feature_map(x)
        return feature_reconstruction_error(f_x, self.feature_map(x_hat), self.kappa)

    def extra_repr(self) -> str:
        if isinstance(self.features, str):
            return f"kappa={self.kappa}, features='local_stats', window={self.window}"
        return f"kappa={self.kappa}"


class CLA(Constraint):
    """Classification accuracy (Table 1, CLA): ``κ − l(x)ᵀc(x̂)`` per example, ``[B]``.

    ``l(x)ᵀc(x̂)`` is the probability a classifier c assigns to the true label of x when shown
    the reconstruction x̂; the constraint is satisfied (≤ 0) when that probability reaches κ.

    Sign: Table 1 prints ``l(x)ᵀc(g(z)) − κ``, which with the paper's "≤ 0" convention would
    ask the true-class probability to stay *below* κ — a constraint a decoder meets by
    producing garbage, and one that gets *stronger* as κ shrinks. Appendix E.1 says the
    opposite: "smaller κ for the CLA constraint" makes the constraint *weaker*, and Fig. 8 uses
    κ = 0.9 as a demanding setting. Only ``κ − l(x)ᵀc(x̂)`` is consistent with both, so we read
    Table 1's sign as a typo.

    Units: probability, so 0 < κ ≤ 1. The classifier maps ``[B, ...]`` images to ``[B, K]``
    **logits** by default (a softmax is applied); pass ``outputs="probs"`` for a classifier
    that already returns class probabilities (Table 1's c). It should be in eval mode with
    frozen parameters; it is registered as a submodule.

    Call as ``cla(x, x_hat, labels=y)`` with ``y`` the int64 labels ``[B]``.

    Example:
        >>> clf = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x = torch.rand(5, 1, 2, 2)
        >>> CLA(kappa=0.9, classifier=clf)(x, x, labels=torch.zeros(5, dtype=torch.long)).shape
        torch.Size([5])
    """

    OUTPUTS = ("logits", "probs")
    kappa_max = 1.0

    def __init__(
        self, kappa: float, classifier: Callable[[Tensor], Tensor], outputs: str = "logits"
    ) -> None:
        super().__init__(kappa)
        if not callable(classifier):
            raise ValueError(f"classifier must be callable, got {classifier!r}")
        if outputs not in self.OUTPUTS:
            raise ValueError(f"outputs must be one of {list(self.OUTPUTS)}, got {outputs!r}")
        self.classifier = classifier
        self.outputs = outputs

    def forward(self, x: Tensor, x_hat: Tensor, labels: Tensor | None = None, **kwargs) -> Tensor:
        _check_pair(x, x_hat)
        if (
            not isinstance(labels, Tensor)
            or labels.shape != x.shape[:1]
            or labels.is_floating_point()
        ):
            raise ValueError(
                f"labels must be an integer tensor of shape [{x.shape[0]}] (true classes of x), "
                f"got {labels if labels is None else list(labels.shape)}"
            )
        output = self.classifier(x_hat)
        if output.dim() != 2 or output.shape[0] != x.shape[0]:
            raise ValueError(f"classifier must return [B, K], got {list(output.shape)}")
        check_class_labels(labels, "labels", x.shape[0], output.shape[1])
        return classification_constraint(output, labels.long(), self.kappa, self.outputs)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}, outputs={self.outputs!r}"


class PNCC(Constraint):
    """Patch normalised cross-correlation (Table 1, pNCC):
    ``κ − mean_i ψ(x, i)ᵀψ(x̂, i)`` per example, ``[B]`` (see :func:`patch_ncc`).

    ψ(x, i) is the whitened patch at location i: all channels of a ``patch_size × patch_size``
    patch, minus their mean, divided by their norm (with ``eps``). ψᵀψ' is then the Pearson
    correlation of the two patches, invariant to brightness and contrast. Dimensionless; κ is
    the required mean correlation, 0 < κ ≤ 1; satisfied (≤ 0) when the mean patch correlation
    reaches κ. ``pNCC(x, x) = κ − 1`` when no patch of x is flat.

    Flat patches (constant target, e.g. MNIST background) whiten to 0 and contribute 0 to the
    mean, so the reachable correlation is the fraction of textured patches: evaluate
    ``PNCC(kappa, ...)(x, x)`` on data to choose κ below it.

    Args:
        kappa: κ ∈ (0, 1].
        patch_size: side p of the square patches.
        stride: distance between patch locations (``stride < patch_size`` overlaps them).
        eps: added to the squared patch norm.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> PNCC(kappa=0.9, patch_size=3, stride=1)(x, x)  # κ − 1
        tensor([-0.1000, -0.1000])
    """

    kappa_max = 1.0

    def __init__(
        self, kappa: float, patch_size: int = 5, stride: int = 1, eps: float = 1e-6
    ) -> None:
        super().__init__(kappa)
        self.patch_size = check_int(patch_size, "patch_size")
        self.stride = check_int(stride, "stride")
        self.eps = check_positive(eps, "eps")

    def forward(self, x: Tensor, x_hat: Tensor, **kwargs) -> Tensor:
        _check_pair(x, x_hat, min_dim=4)
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} exceeds the image size {x.shape[-2:]}")
        return patch_ncc(x, x_hat, self.kappa, self.patch_size, self.stride, self.eps)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}, patch_size={self.patch_size}, stride={self.stride}"


CONSTRAINTS: dict[str, type[Constraint]] = {
    "re": RE,
    "grouped_re": GroupedRE,
    "fre": FRE,
    "cla": CLA,
    "pncc": PNCC,
}


def build_constraint(name: str, kappa: float, **kwargs) -> Constraint:
    """Construct a constraint by name (case-insensitive): ``"re"``, ``"grouped_re"``, ``"fre"``,
    ``"cla"`` or ``"pncc"``; ``kwargs`` go to its class.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names) or ``kappa <= 0``.

    Example:
        >>> build_constraint("pncc", kappa=0.8, patch_size=3)
        PNCC(kappa=0.8, patch_size=3, stride=1)
    """
    key = str(name).lower().replace("-", "_")
    if key not in CONSTRAINTS:
        raise ValueError(f"unknown constraint name {name!r}; valid names: {sorted(CONSTRAINTS)}")
    if isinstance(kappa, numbers.Real):
        check_positive(kappa, "kappa")
    return CONSTRAINTS[key](kappa, **kwargs)
