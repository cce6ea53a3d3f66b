"""GECO — Generalized ELBO with Constrained Optimization (Rezende & Viola 2018, Algorithm 1).

GECO minimises the KL term of a VAE subject to expectation constraints
``E[C(x, g(z))] <= 0`` (one or several, e.g. a reconstruction error below a tolerance) by
following the Lagrangian of Eq. 2,

    L_λ = E[KL[q(z|x); π(z)]] + λᵀ E[C(x, g(z))],

downhill in the model parameters and "uphill" in the multipliers λ. Algorithm 1 makes the
multiplier update multiplicative, ``λᵗ = λᵗ⁻¹ · exp(ν · C_maᵗ)``, so λ stays positive, and
drives it with an exponential moving average ``C_ma`` of the batch estimates ``Ĉ``; the model
receives the gradient of the *current* batch estimate only ("we only apply the gradients to the
last step of the moving average", §3.4).

λ and β (§3.2): with the reconstruction constraint ``C = ‖x − g(z)‖² − κ²`` the loss
``KL + λ·C`` is, up to the constant ``λκ²`` and an overall factor λ, the β-VAE loss
``‖x − g(z)‖² + β·KL`` with ``β = 1/λ``. GECO therefore tunes β automatically from κ
(:attr:`GECO.beta`); a large λ (small β) emphasises reconstruction, a small λ compression.

The multiplier arithmetic lives in small named functions (:func:`constraint_moving_average`,
:func:`constraint_with_ma_value`, :func:`multiplier_update`, :func:`lagrangian`,
:func:`geco_step`) acting on a :class:`GECOState`; :class:`GECO` wires them together, handles
devices, distributed averaging and non-finite estimates, and saves/restores its state.

References:
    D. J. Rezende, F. Viola. "Taming VAEs". arXiv:1810.00597, 2018. §3.2, §3.4, Algorithm 1.

Example:
    >>> import torch
    >>> geco = GECO(n_constraints=1, alpha=0.99, nu=1.0)
    >>> x_hat = torch.zeros(8, 4, requires_grad=True)
    >>> kl = torch.tensor(2.0)
    >>> c_hat = ((x_hat - 0.5) ** 2).mean().reshape(1) - 0.1**2  # RE with κ = 0.1
    >>> loss = geco.loss(kl, c_hat)
    >>> loss.backward()
    >>> geco.step_count, round(geco.lambdas.item(), 4)  # constraint violated: λ grew
    (1, 1.2712)
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from geco_base.checks import check_float32, check_fraction, check_int, check_positive
from geco_core.feasibility import propose_nu

__all__ = [
    "GECO",
    "NU_AUTO",
    "GECOState",
    "constraint_moving_average",
    "constraint_with_ma_value",
    "geco_step",
    "lagrangian",
    "multiplier_update",
    "resolve_auto_nu",
]

_STATE_KEYS = ("lambdas", "c_ma", "step_count", "bad_steps")
#: ``GECO(nu=NU_AUTO)``: ν from the first batch's constraint (:func:`resolve_auto_nu`).
NU_AUTO = "auto"


@dataclass
class GECOState:
    """Everything GECO learns, as tensors on the constraint's device (cooper-style state).

    Attributes:
        lambdas: λᵗ, the multipliers after the latest accepted step, ``[L]``, positive.
        c_ma: C_maᵗ, the moving average of the constraint estimates, ``[L]`` (zeros before the
            first accepted step; Algorithm 1 initialises it with Ĉ⁰).
        step: t, the number of accepted steps so far (int64 scalar). Steps whose Ĉ is not finite
            are not accepted and do not advance t.
        bad_steps: number of consecutive steps with a non-finite Ĉ (int64 scalar).
    """

    lambdas: Tensor
    c_ma: Tensor
    step: Tensor
    bad_steps: Tensor


def constraint_moving_average(c_ma: Tensor, c_hat: Tensor, alpha: float, first: Tensor) -> Tensor:
    """Algorithm 1's moving average: ``C_ma⁰ = Ĉ⁰``, ``C_maᵗ = α·C_maᵗ⁻¹ + (1 − α)·Ĉᵗ``.

    Args:
        c_ma: C_maᵗ⁻¹, ``[L]``.
        c_hat: Ĉᵗ (detached), ``[L]``.
        alpha: α ∈ [0, 1), the slowness of the average (the paper uses 0.99).
        first: boolean scalar tensor, true at t = 0.
    """
    return torch.where(first, c_hat, torch.lerp(c_ma, c_hat, 1.0 - alpha))


def constraint_with_ma_value(c_hat: Tensor, c_ma: Tensor) -> Tensor:
    """§3.4 / Algorithm 1: ``Cᵗ = Ĉᵗ + stopgrad(C_maᵗ − Ĉᵗ)``.

    The value is the moving average, the gradient that of the current batch estimate, so
    ``∂Cᵗ/∂Ĉᵗ = 1`` and nothing is back-propagated through earlier batches.
    """
    return c_hat + (c_ma - c_hat.detach())


def lagrangian(kl: Tensor, lambdas: Tensor, c: Tensor) -> Tensor:
    """Eq. 2: ``L_λ = KL + λᵀC`` (λ a constant for autograd: pass a tensor without grad)."""
    return kl + torch.dot(lambdas, c)


def multiplier_update(
    lambdas: Tensor,
    c_ma: Tensor,
    nu: float | Tensor,
    log_factor_bounds: tuple[float, float] | None = None,
    lambda_bounds: tuple[float, float] | None = None,
    satisfied_speedup: float = 1.0,
) -> Tensor:
    """Algorithm 1, last line: ``λᵗ = λᵗ⁻¹ · exp(ν · C_maᵗ)`` (``Δ log λ ∝ Cᵗ``), elementwise.

    Args:
        lambdas: λᵗ⁻¹, ``[L]``.
        c_ma: C_maᵗ (the value of Cᵗ), ``[L]``.
        nu: ν > 0, the step size of log λ per unit of constraint (a number, or ``[L]``).
        log_factor_bounds: optional ``(log lo, log hi)``: the factor ``exp(ν C_ma)`` is clamped
            to ``[lo, hi]`` (the ``factor_clamp`` option of :class:`GECO`).
        lambda_bounds: optional ``(lo, hi)``: the new λ is clamped to it.
        satisfied_speedup: s ≥ 1: where the constraint is satisfied (``C_ma < 0``) the step is
            ``ν·s·C_ma`` (the ``satisfied_speedup`` option of :class:`GECO`; 1 = Algorithm 1).

    Example:
        >>> lam = torch.tensor([1.0, 1.0])
        >>> multiplier_update(lam, torch.tensor([0.5, -0.5]), nu=1.0, satisfied_speedup=2.0).log()
        tensor([ 0.5000, -1.0000])
    """
    log_factor = c_ma * nu
    if satisfied_speedup != 1.0:
        log_factor = torch.where(c_ma < 0, log_factor * satisfied_speedup, log_factor)
    if log_factor_bounds is not None:
        log_factor = log_factor.clamp(*log_factor_bounds)
    new = lambdas * torch.exp(log_factor)
    if lambda_bounds is not None:
        new = new.clamp(*lambda_bounds)
    return new


def geco_step(
    state: GECOState,
    c_hat: Tensor,
    alpha: float,
    nu: float | Tensor,
    update_every: int = 1,
    warmup_steps: int = 0,
    log_factor_bounds: tuple[float, float] | None = None,
    lambda_bounds: tuple[float, float] | None = None,
    satisfied_speedup: float = 1.0,
) -> GECOState:
    """One multiplier step of Algorithm 1 on a detached estimate Ĉᵗ; returns the new state.

    Branch-free (``torch.where``) so that it never synchronises an accelerator with the host:
    a non-finite Ĉ — or one that would overflow λ to ∞ or underflow it to 0 — leaves λ, C_ma
    and t as they were and increments ``bad_steps``; any other resets ``bad_steps``. λ changes
    only at accepted steps ``t >= warmup_steps`` with ``(t − warmup_steps + 1) % update_every
    == 0`` (every step with the default options).
    """
    ok = torch.isfinite(c_hat).all()
    t = state.step
    c_ma = torch.where(ok, constraint_moving_average(state.c_ma, c_hat, alpha, t == 0), state.c_ma)
    lambdas = multiplier_update(state.lambdas, c_ma, nu, log_factor_bounds, lambda_bounds,
                                satisfied_speedup)
    # a finite Ĉ can still overflow λ to inf or underflow it to 0 (no lambda_bounds): a bad
    # step too, so that λ never leaves (0, ∞) and the engine's bad-step limit sees it
    ok = ok & torch.isfinite(lambdas).all() & (lambdas > 0).all()
    c_ma = torch.where(ok, c_ma, state.c_ma)
    due = ok
    if warmup_steps > 0:
        due = due & (t >= warmup_steps)
    if update_every > 1:
        due = due & ((t - warmup_steps + 1).remainder(update_every) == 0)
    return GECOState(
        lambdas=torch.where(due, lambdas, state.lambdas),
        c_ma=c_ma,
        step=t + ok,
        bad_steps=(state.bad_steps + 1).masked_fill(ok, 0),
    )


def resolve_auto_nu(c0: Sequence[float]) -> float | list[float]:
    """ν of ``GECO(nu="auto")`` from the first accepted batch estimate Ĉ⁰ (one value per
    constraint): ``ν_l = propose_nu(Ĉ⁰_l)`` = 0.05 / |Ĉ⁰_l|
    (:func:`geco_core.feasibility.propose_nu`), a float for one constraint.

    Example:
        >>> resolve_auto_nu([0.2]), resolve_auto_nu([0.1, -0.5])
        (0.25, [0.5, 0.1])
    """
    values = [propose_nu(v) for v in c0]
    return values[0] if len(values) == 1 else values


def _all_reduce_mean(c: Tensor) -> Tensor:
    """Mean of ``c`` over the ranks of the default process group (on a copy; gloo has no AVG)."""
    c = c.clone()
    dist.all_reduce(c, op=dist.ReduceOp.SUM)
    return c / dist.get_world_size()


def _positive_vector(value: float | Sequence[float] | Tensor, n: int, name: str) -> Tensor:
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {value!r}")
    try:
        t = torch.as_tensor(value, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a number or a sequence of numbers, got {value!r}"
        ) from None
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(
            f"{name} must be a number or have n_constraints={n} entries, got {value!r}"
        )
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    for v in t.tolist():
        check_float32(v, name)
    return t


def _interval(
    value: Sequence[float] | None, name: str, lo_min: float
) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {value!r}") from None
    if not (lo >= lo_min and lo < hi) or math.isnan(hi):
        raise ValueError(f"{name} must satisfy {lo_min} <= lo < hi, got {value!r}")
    return lo, hi


class GECO:
    """Lagrange multipliers for constrained VAE training, exactly Algorithm 1 by default.

    Call :meth:`loss` once per training step with the batch-mean KL and the batch-mean
    constraint vector Ĉᵗ (differentiable), back-propagate the returned loss and step the model's
    optimizer as usual. At step t = 0, 1, 2, … (default options):

    1. ``C_ma⁰ = Ĉ⁰``; ``C_maᵗ = α·C_maᵗ⁻¹ + (1 − α)·Ĉᵗ`` (:func:`constraint_moving_average`);
    2. ``Cᵗ = Ĉᵗ + stopgrad(C_maᵗ − Ĉᵗ)`` (:func:`constraint_with_ma_value`);
    3. the returned loss is ``kl + Σ_l λᵗ⁻¹_l · Cᵗ_l`` (Eq. 2) with λ a constant for autograd,
       so ``∂loss/∂Ĉ_l = λᵗ⁻¹_l`` and ``∂loss/∂kl = 1``; ``λ⁻¹ = lambda_init``;
    4. ``λᵗ = λᵗ⁻¹ · exp(ν · C_maᵗ)`` elementwise (:func:`multiplier_update`).

    A constraint is satisfied when ``C <= 0``: a violated constraint (``C_ma > 0``) makes its
    λ grow (more weight on it, β = 1/λ falls), a slack one makes λ shrink towards the pure
    KL-minimisation of an inactive inequality.

    Nothing updates outside training: in eval mode (:meth:`eval`) or under
    :func:`torch.no_grad` the call returns the plain Lagrangian ``kl + λᵀĈ`` with the current
    λ and leaves the state untouched.

    Args:
        n_constraints: L, the length of Ĉ (one multiplier per constraint).
        alpha: α ∈ [0, 1), slowness of the moving average; the paper uses 0.99 (§4.1).
            ``alpha=0`` drives λ by the raw batch estimates.
        nu: ν > 0, the proportionality constant of ``Δ log λ ∝ Cᵗ`` (Algorithm 1 gives none),
            in 1/(unit of C) per step; or ``"auto"``: ν is set at the first accepted step from
            that step's estimate, ``ν_l = propose_nu(Ĉ⁰_l)`` = 0.05/|Ĉ⁰_l|
            (:func:`geco_core.feasibility.propose_nu`, one ν per constraint), so that log λ
            moves by at most 5 % per step at the start, whatever the constraint's unit; the
            resolved ν is in :attr:`nu` and in :meth:`state_dict`. The default 1.0 keeps runs
            comparable with earlier ones; it can let λ overshoot by orders of magnitude while
            the model catches up, which is why the book's policy uses ``nu="auto"`` (the study:
            the book's chapter 05).
        lambda_init: λ⁻¹ > 0, a number or one value per constraint. Algorithm 1 uses 1.
        update_every: k ≥ 1 (option; default 1 = off). λ changes only on every k-th accepted
            step (after the warm-up), by the factor of that step, so the effective rate is ν/k;
            the moving average still sees every batch. Use it to slow λ relative to the model
            (two-timescale updates) or to update once per gradient-accumulation cycle.
        factor_clamp: ``(lo, hi)`` with ``0 < lo <= 1 <= hi`` (option; default None = off).
            The per-step factor ``exp(ν C_ma)`` is clamped to ``[lo, hi]``, e.g. (0.9, 1.1):
            λ then changes by at most 10 % per step. Use it when early constraint values are
            far from 0 (a random decoder, a CLA constraint at κ = 0.9) and ν·C_ma would
            otherwise move λ by orders of magnitude in a few steps.
        lambda_bounds: ``(lo, hi)`` with ``0 <= lo < hi`` (option; default None = off); λ is
            clamped to it after every update and ``lambda_init`` must lie inside. A floor
            matters because a multiplicative update cannot leave 0 and an inactive constraint
            (κ² above the data variance) makes λ decay geometrically until it underflows; a
            ceiling stops overflow when the constraint cannot be met. EfficientMORL (Emami et
            al. 2021, ``lib/geco.py``) floors its multiplier at ≈ 1 on a summed-NLL scale ("so
            that the model estimates a proper ELBO at the end of training"); on the
            per-pixel-MSE scale of :mod:`geco_core.objectives` the same floor — never weight
            the reconstruction less than a Gaussian likelihood of unit σ would — is λ ≥ D/2.
        satisfied_speedup: s ≥ 1 (option; default 1 = off). While the constraint is satisfied
            (``C_ma < 0``) λ moves with step ``s·ν`` instead of ν, so a λ that overshot while
            the model was catching up comes back s times faster. The multiplicative update
            is asymmetric at the boundary: early violations are large (a fresh decoder's MSE
            is many times κ²) and grow λ quickly, while the slack of a met constraint is small
            and shrinks λ slowly. From the GECO of applied-ai-lab/genesis (``utils/geco.py``,
            option ``speedup``, 10 in their training defaults), which applies it when the
            reconstruction error is below its goal; EfficientMORL (``lib/geco.py``,
            ``step_size_acceleration``, 5 in two of its configs) does the same.
        warmup_steps: w ≥ 0 (option; default 0 = off). λ stays at ``lambda_init`` for the first
            w accepted steps (a β-VAE with β = 1/lambda_init) while the moving average still
            runs, so λ does not react to the large, transient reconstruction error of a
            randomly initialised decoder.
        max_bad_steps: after this many consecutive non-finite Ĉ, raise
            :class:`FloatingPointError`. Each non-finite Ĉ leaves λ, C_ma and t unchanged and
            warns (:class:`RuntimeWarning`); the returned loss is then non-finite too, so the
            caller should skip that optimizer step.

    Distributed training: when :mod:`torch.distributed` is initialised, every training-mode
    call all-reduces (mean) a detached copy of Ĉᵗ before the moving average, so all ranks hold
    identical C_ma and λ while each rank's gradient is still that of its own batch (which DDP
    then averages). All ranks must call :meth:`loss` in the same mode, the same number of times.

    Performance: the update is branch-free tensor arithmetic on the device of Ĉ (no
    ``.item()``); on CUDA the non-finite check is read back asynchronously, so a warning or
    error can arrive a step or two late.

    References:
        Rezende & Viola, "Taming VAEs", 2018: Eq. 2, §3.2 (λ = 1/β), §3.4, Algorithm 1.

    Example:
        >>> import torch
        >>> geco = GECO(n_constraints=2, alpha=0.5, nu=1.0, lambda_init=[1.0, 2.0])
        >>> c_hat = torch.tensor([0.1, -0.2], requires_grad=True)
        >>> loss = geco.loss(torch.tensor(3.0), c_hat)
        >>> loss.backward()
        >>> c_hat.grad.tolist()  # λ⁻¹
        [1.0, 2.0]
        >>> torch.allclose(geco.lambdas, torch.tensor([1.0, 2.0]) * torch.exp(c_hat.detach()))
        True
    """

    def __init__(
        self,
        n_constraints: int = 1,
        alpha: float = 0.99,
        nu: float | str = 1.0,
        lambda_init: float | Sequence[float] = 1.0,
        *,
        update_every: int = 1,
        factor_clamp: tuple[float, float] | None = None,
        lambda_bounds: tuple[float, float] | None = None,
        warmup_steps: int = 0,
        satisfied_speedup: float = 1.0,
        max_bad_steps: int = 10,
    ) -> None:
        self.n_constraints = check_int(n_constraints, "n_constraints")
        self.alpha = check_fraction(alpha, "alpha")
        if isinstance(nu, str):
            if nu != NU_AUTO:
                raise TypeError(f"nu must be a real number > 0 or {NU_AUTO!r}, got {nu!r}")
            self.nu_auto, self.nu = True, None
        else:
            self.nu_auto, self.nu = False, check_float32(nu, "nu")
        init = _positive_vector(lambda_init, self.n_constraints, "lambda_init")
        self.update_every = check_int(update_every, "update_every")
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
        self.max_bad_steps = check_int(max_bad_steps, "max_bad_steps")
        self.satisfied_speedup = check_positive(satisfied_speedup, "satisfied_speedup")
        if self.satisfied_speedup < 1.0:
            raise ValueError(f"satisfied_speedup must be >= 1, got {satisfied_speedup!r}")
        self.factor_clamp = _interval(factor_clamp, "factor_clamp", 0.0)
        if self.factor_clamp is not None and not (
            0.0 < self.factor_clamp[0] <= 1.0 <= self.factor_clamp[1]
        ):
            raise ValueError(f"factor_clamp must satisfy 0 < lo <= 1 <= hi, got {factor_clamp!r}")
        self._log_factor_bounds = (
            None
            if self.factor_clamp is None
            else (math.log(self.factor_clamp[0]), math.log(self.factor_clamp[1]))
        )
        self.lambda_bounds = _interval(lambda_bounds, "lambda_bounds", 0.0)
        if self.lambda_bounds is not None:
            lo, hi = self.lambda_bounds
            if bool(((init < lo) | (init > hi)).any()):
                raise ValueError(f"lambda_init={lambda_init!r} lies outside lambda_bounds={lo, hi}")
        self.lambda_init = init
        self.training = True
        n = self.n_constraints
        self._c_shapes = (torch.Size([n]), torch.Size([])) if n == 1 else (torch.Size([n]),)
        self.state = GECOState(
            lambdas=init.clone(),  # float64 until the first Ĉ fixes the dtype
            c_ma=torch.zeros(self.n_constraints, dtype=torch.float64),
            step=torch.zeros((), dtype=torch.int64),
            bad_steps=torch.zeros((), dtype=torch.int64),
        )
        self._pending: deque[tuple[Tensor, torch.cuda.Event]] = deque()

    # ----------------------------------------------------------------------------- hot path
    def loss(self, kl: Tensor, c_hat: Tensor) -> Tensor:
        """The GECO loss of this step, then the multiplier update (Algorithm 1).

        Args:
            kl: scalar tensor, the batch mean of KL[q(z|x); π(z)] (differentiable).
            c_hat: Ĉᵗ, tensor ``[n_constraints]`` of batch means of the constraints
                (differentiable); a 0-d tensor is accepted when ``n_constraints == 1``.

        Returns:
            Scalar ``kl + Σ_l λᵗ⁻¹_l Cᵗ_l`` in training mode with gradients enabled, otherwise
            ``kl + Σ_l λ_l Ĉ_l`` with the current λ and no state change.
        """
        if not isinstance(kl, Tensor) or kl.dim() != 0:
            raise ValueError(f"kl must be a scalar tensor, got {_describe(kl)}")
        if not isinstance(c_hat, Tensor) or c_hat.shape not in self._c_shapes:
            raise ValueError(
                f"c_hat must be a tensor of shape [{self.n_constraints}] (n_constraints), "
                f"got {_describe(c_hat)}"
            )
        if not kl.is_floating_point():
            raise TypeError(f"kl must be a floating-point tensor, got dtype {kl.dtype}")
        if not c_hat.is_floating_point():
            raise TypeError(
                f"c_hat must be a floating-point tensor, got dtype {c_hat.dtype} (an integer "
                "estimate would make λ an integer inside the loss)"
            )
        c_hat = c_hat.reshape(self.n_constraints)
        state = self._state_for(c_hat)
        lam_prev = state.lambdas
        if lam_prev.dtype != c_hat.dtype:
            lam_prev = lam_prev.to(c_hat.dtype)
        if not (self.training and torch.is_grad_enabled()):
            return lagrangian(kl, lam_prev, c_hat)
        # a non-finite KL makes this step a bad one too (no NaN may enter λ or C_ma); marked
        # before the all-reduce, so that every rank skips it
        c = c_hat.detach().masked_fill(~torch.isfinite(kl.detach()), math.nan)
        if dist.is_available() and dist.is_initialized():
            c = _all_reduce_mean(c)
        if c.dtype != state.c_ma.dtype:
            c = c.to(state.c_ma.dtype)
        nu = self._nu_for(c)
        new = geco_step(
            state,
            c,
            self.alpha,
            nu,
            self.update_every,
            self.warmup_steps,
            self._log_factor_bounds,
            self.lambda_bounds,
            self.satisfied_speedup,
        )
        self.state = new
        self._watch(new.bad_steps)
        c_ma = new.c_ma if new.c_ma.dtype == c_hat.dtype else new.c_ma.to(c_hat.dtype)
        return lagrangian(kl, lam_prev, constraint_with_ma_value(c_hat, c_ma))

    def _nu_for(self, c: Tensor) -> float | Tensor:
        """ν for this step: the number given, or (``nu="auto"``) the rule's ν, resolved from
        the first finite estimate (one host read, at that step only). Before that, a
        placeholder 1.0: a non-finite Ĉ changes nothing (:func:`geco_step`)."""
        if self.nu is None:
            if not bool(torch.isfinite(c).all()):
                return 1.0
            try:
                self.nu = resolve_auto_nu(c.tolist())
            except ValueError as e:
                raise ValueError(f"nu='auto': the first constraint estimate {c.tolist()} "
                                 f"gives no ν ({e}); pass a number") from None
        if isinstance(self.nu, float):
            return self.nu
        return torch.tensor(self.nu, dtype=c.dtype, device=c.device)

    def _state_for(self, c_hat: Tensor) -> GECOState:
        """Move the state to Ĉ's device; keep it in float64 for float64 Ĉ, else float32."""
        s = self.state
        dtype = torch.float64 if c_hat.dtype == torch.float64 else torch.float32
        if s.lambdas.device != c_hat.device or s.lambdas.dtype != dtype:
            s = self.state = GECOState(
                lambdas=s.lambdas.to(c_hat.device, dtype),
                c_ma=s.c_ma.to(c_hat.device, dtype),
                step=s.step.to(c_hat.device),
                bad_steps=s.bad_steps.to(c_hat.device),
            )
        return s

    def _watch(self, bad_steps: Tensor) -> None:
        """Warn/raise on non-finite Ĉ without blocking an accelerator (read back when ready)."""
        if bad_steps.device.type != "cuda":
            self._report(int(bad_steps))
            return
        event = torch.cuda.Event()
        snapshot = bad_steps.to("cpu", non_blocking=True)
        event.record()
        self._pending.append((snapshot, event))
        while self._pending and self._pending[0][1].query():
            self._report(int(self._pending.popleft()[0]))

    def _report(self, bad: int) -> None:
        if bad == 0:
            return
        if bad >= self.max_bad_steps:
            raise FloatingPointError(
                f"GECO: {bad} consecutive non-finite constraint estimates c_hat (or KLs, or "
                f"steps that would overflow λ to inf or underflow it to 0) "
                f"(max_bad_steps={self.max_bad_steps})"
            )
        warnings.warn(
            f"GECO: non-finite constraint estimate c_hat or KL, or a λ overflow/underflow "
            f"({bad} consecutive); lambdas "
            "and c_ma left unchanged — skip this optimizer step",
            RuntimeWarning,
            stacklevel=4,
        )

    # ----------------------------------------------------------------------------- read-outs
    @property
    def lambdas(self) -> Tensor:
        """λ after the latest update, ``[n_constraints]`` (a snapshot; do not modify in place)."""
        return self.state.lambdas

    @property
    def c_ma(self) -> Tensor:
        """C_ma, the moving average of Ĉ after the latest accepted step, ``[n_constraints]``."""
        return self.state.c_ma

    @property
    def step_count(self) -> int:
        """t, the number of accepted training steps (non-finite Ĉ are not counted)."""
        return int(self.state.step)

    @property
    def beta(self) -> float:
        """β = 1/λ for a single constraint (§3.2: λ = 1/β for the RE constraint)."""
        if self.n_constraints != 1:
            raise ValueError(
                f"beta is defined for n_constraints=1, this GECO has {self.n_constraints}; "
                "use .lambdas"
            )
        return 1.0 / float(self.state.lambdas[0])

    # ------------------------------------------------------------------ modes, devices, state
    def train(self, mode: bool = True) -> GECO:
        """Training mode (default): :meth:`loss` updates the state. Returns ``self``."""
        self.training = bool(mode)
        return self

    def eval(self) -> GECO:
        """Evaluation mode: :meth:`loss` leaves the state untouched. Returns ``self``."""
        return self.train(False)

    def to(self, device: torch.device | str) -> GECO:
        """Move the state to ``device`` (it also follows Ĉ's device automatically)."""
        s = self.state
        self.state = GECOState(*(v.to(device) for v in (s.lambdas, s.c_ma, s.step, s.bad_steps)))
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """λ, C_ma, t and the bad-step counter as tensors (safe for ``weights_only=True``);
        with ``nu="auto"``, once resolved, also ``"nu"`` (``[L]``, float64)."""
        s = self.state
        out = {
            "lambdas": s.lambdas.detach().clone(),
            "c_ma": s.c_ma.detach().clone(),
            "step_count": s.step.detach().clone(),
            "bad_steps": s.bad_steps.detach().clone(),
        }
        if self.nu_auto and self.nu is not None:  # the ν the rule gave, for a resume
            out["nu"] = torch.tensor(self.nu, dtype=torch.float64).reshape(-1)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Restore a :meth:`state_dict` exactly (values and dtype; device of the current state)."""
        keys = set(state_dict)
        expected = set(_STATE_KEYS) | ({"nu"} if "nu" in keys and self.nu_auto else set())
        if keys != expected:
            hint = (
                "; 'nu' is saved by a GECO with nu='auto' only"
                if "nu" in keys and not self.nu_auto else ""
            )
            raise ValueError(
                f"state_dict must have keys {list(_STATE_KEYS)}, got {sorted(keys)} "
                f"(missing {sorted(set(_STATE_KEYS) - keys)}, "
                f"unexpected {sorted(keys - expected)}){hint}"
            )
        n = self.n_constraints
        shapes = {"lambdas": (n,), "c_ma": (n,), "step_count": (), "bad_steps": ()}
        for key, shape in shapes.items():
            value = state_dict[key]
            if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                raise ValueError(f"state_dict[{key!r}] must be a tensor of shape {shape}")
        lambdas = state_dict["lambdas"]
        if not bool(torch.isfinite(lambdas).all()) or bool((lambdas <= 0).any()):
            raise ValueError("state_dict['lambdas'] must be finite and > 0")
        if not bool(torch.isfinite(state_dict["c_ma"]).all()):
            raise ValueError("state_dict['c_ma'] must be finite")
        for key in ("step_count", "bad_steps"):
            value = state_dict[key]
            if value.is_floating_point() or value.is_complex() or int(value) < 0:
                raise ValueError(f"state_dict[{key!r}] must be an integer tensor >= 0")
        nu = None
        if self.nu_auto:
            step = int(state_dict["step_count"])
            if "nu" not in state_dict and step > 0:
                raise ValueError(
                    f"state_dict has {step} accepted steps but no 'nu': a GECO with "
                    "nu='auto' needs the ν its first step resolved"
                )
            if "nu" in state_dict:
                value = state_dict["nu"]
                if not isinstance(value, Tensor) or tuple(value.shape) != (n,):
                    raise ValueError(f"state_dict['nu'] must be a tensor of shape ({n},)")
                nu = [check_float32(v, "state_dict['nu']") for v in value.tolist()]
                nu = nu[0] if n == 1 else nu
        device = self.state.lambdas.device
        self.state = GECOState(
            lambdas=lambdas.detach().to(device, copy=True),
            c_ma=state_dict["c_ma"].detach().to(device, lambdas.dtype, copy=True),
            step=state_dict["step_count"].detach().to(device, torch.int64, copy=True),
            bad_steps=state_dict["bad_steps"].detach().to(device, torch.int64, copy=True),
        )
        if self.nu_auto:
            self.nu = nu
        self._pending.clear()

    def __repr__(self) -> str:
        options = []
        if self.update_every != 1:
            options.append(f"update_every={self.update_every}")
        if self.factor_clamp is not None:
            options.append(f"factor_clamp={self.factor_clamp}")
        if self.lambda_bounds is not None:
            options.append(f"lambda_bounds={self.lambda_bounds}")
        if self.warmup_steps:
            options.append(f"warmup_steps={self.warmup_steps}")
        if self.satisfied_speedup != 1.0:
            options.append(f"satisfied_speedup={self.satisfied_speedup}")
        extra = "".join(", " + o for o in options)
        nu = f"{NU_AUTO!r} → {self.nu}" if self.nu_auto else f"{self.nu}"
        return f"GECO(n_constraints={self.n_constraints}, alpha={self.alpha}, nu={nu}{extra})"


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"{type(value).__name__}"
