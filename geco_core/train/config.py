"""What a training run depends on (:class:`TrainConfig`), what it returns (:class:`FitResult`),
and the engine's defaults: the paper's learning rates (:data:`PAPER_LR`) and α = 0.99.

The defaults are the paper's (§4.1): Adam at 1e-5 for ConvDRAW and 1e-6 for the VAE + NVP,
GECO's moving-average slowness α = 0.99 and λ⁰ = 1 (Algorithm 1), with ν = 1, a unit step of
log λ (Algorithm 1 gives only Δ log λ ∝ C, no ν). They are tuned for
10⁵–10⁶ steps; a run of minutes on a CPU barely leaves the initialisation at those rates and
wants e.g. ``lr=1e-3, alpha=0.9, nu="auto"`` (the book's cpu policy, :mod:`geco_book.policy`,
which says why). Nothing here depends on the device or on a book profile: the same config gives the
same numbers everywhere (up to the hardware's floating point).

References:
    Rezende & Viola, "Taming VAEs", 2018: §4.1 (Adam, lr 1e-5 ConvDraw, 1e-6 VAE+NVP,
    α = 0.99), Algorithm 1 (λ⁰ = 1).

Example:
    >>> cfg = TrainConfig(model="convdraw", steps=2, progress=False)
    >>> cfg.objective, cfg.learning_rate, cfg.alpha, cfg.model_size
    ('geco', 1e-05, 0.99, 'small')
    >>> TrainConfig(model="vae")
    Traceback (most recent call last):
    ...
    ValueError: model: unknown value 'vae'; valid choices: conv_vae, convdraw, vae_nvp
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from geco_base.checks import (
    FLOAT32_TINY,
    check_choice,
    check_float32,
    check_fraction,
    check_int,
    check_seed,
)
from geco_core.constraints import CONSTRAINTS
from geco_core.geco import GECO, NU_AUTO
from geco_core.models import MODEL_SIZES, MODELS
from geco_core.objectives import OBJECTIVES, Objective

__all__ = [
    "COMPILE_AUTO_MIN_STEPS",
    "ENGINE_VERSION",
    "MAX_STEPS",
    "PAPER_LR",
    "PRECISIONS",
    "RESUME_MAY_DIFFER",
    "FitResult",
    "TrainConfig",
    "compile_wanted",
]

#: Version of the numbers the engine produces. Bump it whenever a change alters the function a
#: given TrainConfig computes (batches, initialisation, an objective's or a model's equations,
#: a default): the run store (:mod:`geco_book.store`) keys runs by config hash + ENGINE_VERSION,
#: so a bump makes every stored run stale. Refactors that keep the numbers bitwise keep it; so
#: do changes that only reorder the float operations of the same function — a fused kernel, a
#: memory layout, ``torch.compile`` — which change a run no more than another CPU or thread
#: count does: ConvDRAW's fused unroll (tests/geco_core/models/test_convdraw.py checks it
#: against the reference over ten training steps), the fused Adam (``make_optimizer``) and the
#: channels_last ConvDecoder (tests/geco_core/train/test_optimizer.py,
#: tests/geco_core/models/test_layers.py). Over a whole run such differences grow unevenly; how
#: far regenerated cpu-profile runs land from their stored records is measured in
#: benchmarks/README.md. A record reproduces bitwise with the engine of its provenance commit.
ENGINE_VERSION: int = 1

#: Adam learning rates of the paper, §4.1: "a learning rate of 1e-5 for ConvDraw and 1e-6 for
#: the VAE+NVP". The plain conv VAE is not trained in §4.1; it gets ConvDRAW's rate.
#: ``TrainConfig.lr=None`` means ``PAPER_LR[model]``.
PAPER_LR: dict[str, float] = {"convdraw": 1e-5, "vae_nvp": 1e-6, "conv_vae": 1e-5}

#: ``TrainConfig(compile=None)`` compiles a run with at least this many steps to go. On the
#: 2-core CPU (``benchmarks/bench_speed.py``, one thread, the small models; the measured compile
#: times, speed-ups and break-even steps are in benchmarks/README.md) compiling paid back after
#: 1,300–6,600 steps, and after 3,100–90,000 with today's engine (the channels_last decoder
#: made the eager conv VAE and VAE+NVP nearly as fast: compile gains 1.03–1.05× there). 50,000
#: is above 7 of those 9 measured break-evens (the other two come from a run where compile
#: gained ≤ 2 %), and above every run of the book's cpu profiles
#: (1,500–20,000 steps), which stay eager (an eager run is the same numbers on every rerun on
#: one machine; a compiled one to float rounding), while the gpu profiles' 200,000–300,000-step
#: runs compile.
COMPILE_AUTO_MIN_STEPS: int = 50_000

#: ``TrainConfig.precision`` choices: ``"float32"`` (default) runs everything in float32;
#: ``"bfloat16"`` runs the model's forward under ``torch.autocast(device, torch.bfloat16)``, so
#: its networks compute in bfloat16 (the convolutions and matmuls, and the activations between
#: them) while the models cast the networks' outputs back to float32
#: (:func:`geco_core.models.layers.to_float32`): the recurrent state, the flows'
#: log-determinants, the densities, the losses, GECO and Adam stay float32.
#: Other numbers than a float32 run, not float rounding: benchmarks/README.md measures how far.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")

#: The most steps a config may ask for: a larger count is years of training on any machine.
MAX_STEPS: int = 10**9

#: Config keys that may change when a run is resumed (they do not change the trajectory;
#: ``compile`` changes it only to float rounding).
RESUME_MAY_DIFFER = (
    "steps",
    "out_dir",
    "progress",
    "log_every",
    "ckpt_every",
    "device",
    "data_root",
    "download",
    "compile",
)

_KWARGS_FIELDS = (
    "dataset_kwargs", "model_kwargs", "constraint_kwargs", "geco_kwargs", "objective_kwargs"
)


#: Device types ``TrainConfig.device`` may name (besides ``"auto"``).
DEVICE_TYPES = ("cpu", "cuda", "mps")

def _dataset_names() -> tuple[str, ...]:
    """Names :func:`data_builders.load_dataset` accepts."""
    from data_builders.registry import DATASETS

    return tuple(DATASETS)


def _keyword_names(fn, keyword_only: bool = False) -> list[str] | None:
    """Parameter names of ``fn`` a caller may pass by keyword (None: it takes ``**kwargs``)."""
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (
        (inspect.Parameter.KEYWORD_ONLY,)
        if keyword_only
        else (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    )
    return [p.name for p in params if p.kind in kinds and p.name != "self"]


def _field_defaults() -> dict[str, Any]:
    return TrainConfig.defaults()


def _check_int_kwargs(fn, given: Mapping[str, Any], field: str) -> None:
    """Arguments annotated ``int`` (or ``Sequence[int]``) must be ints >= 1: a 2.5 would be
    recorded as 2.5 and built as 2, a 0 would build an empty layer."""
    params = inspect.signature(fn).parameters
    for key, value in given.items():
        p = params.get(key)
        ann = "" if p is None else str(p.annotation)
        if ann == "int":
            check_int(value, f"{field}: {key}")
        elif ann.startswith("Sequence[int]"):
            if not isinstance(value, (list, tuple)) or not value:
                raise TypeError(f"{field}: {key} must be a non-empty list of ints, got {value!r}")
            for v in value:
                check_int(v, f"{field}: {key}")


def _check_keys(given: Mapping[str, Any], valid: list[str] | None, name: str, what: str) -> None:
    if valid is None:
        return
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown} for {what}; valid keys: {valid}")


def constraint_kwargs_for(
    constraint_kwargs: Mapping[str, Any], constraints: list[str], name: str
) -> dict[str, Any]:
    """The keyword arguments of constraint ``name``: ``constraint_kwargs[name]`` when
    ``constraint_kwargs`` is keyed by constraint name, else ``constraint_kwargs`` itself."""
    kw = constraint_kwargs
    if kw and all(k in constraints and isinstance(v, dict) for k, v in kw.items()):
        return dict(kw.get(name, {}))
    return dict(kw)


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints as a plain dict).

    Attributes:
        model: a :data:`geco_core.models.MODELS` name: ``"conv_vae"``, ``"vae_nvp"`` or
            ``"convdraw"`` (:func:`geco_core.models.build_model`).
        model_size: a :data:`geco_core.models.MODEL_SIZES` name: ``"small"`` (default) or
            ``"paper"``; ``model_kwargs`` override its constructor arguments.
        dataset: a :func:`data_builders.load_dataset` name (``"mnist"``, ``"mnist-rotate"``, …).
        objective: ``"geco"``, ``"elbo"``, ``"annealed"`` (GQN σ schedule) or ``"beta_vae"``.
        constraint: GECO's constraint name(s), comma-separated for several (``"re"``,
            ``"re,pncc"``), built by :func:`geco_core.constraints.build_constraint`.
        kappa: tolerance κ > 0, one number or one per constraint.
        steps: optimizer steps in total (a resumed run continues up to ``steps``).
        batch_size: examples per step *per rank*.
        lr: Adam learning rate; ``None`` → :data:`PAPER_LR` ``[model]`` (§4.1).
        alpha, nu: GECO's moving-average slowness α (the paper's 0.99, §4.1) and multiplier
            step ν (1.0; the paper gives none), or ``nu="auto"``: ν from the first batch's
            constraint value (:class:`geco_core.GECO`; the resolved ν is logged as ``nu``,
            checkpointed and restored on resume; ``"auto"`` is what a run's key records).
        lambda_init: λ⁻¹ (Algorithm 1: 1). ``geco_kwargs`` holds GECO's options.
        sigma, learn_sigma: the ELBO's pixel σ (fixed, or initial value when learned).
        beta: the β-VAE's KL weight (on the per-pixel-MSE scale, see :mod:`geco_core.objectives`).
        anneal_sigma_start, anneal_sigma_end, anneal_steps: the GQN schedule (2.0 → 0.7 over
            200 000 steps in GQN; shorten ``anneal_steps`` for short runs).
        seed: seeds model initialisation, batches and sampling noise.
        log_every, ckpt_every: metrics-log and checkpoint periods in steps.
        out_dir: where ``metrics.jsonl``, ``checkpoint.pt`` and ``config.json`` go (None: no
            files). ``config.json`` holds these fields plus ``"data"``, the fingerprint of the
            data trained on (:meth:`data_builders.ImageDataset.fingerprint`; drop that key
            before :meth:`from_dict`).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
        split, data_root, download, dataset_kwargs: passed to ``load_dataset``.
        objective_kwargs: the arguments of the later methods' objectives
            (:mod:`geco_core.objectives.alternatives`: ``control_vae``'s ``kl_target``, ``kp``, …;
            ``softplus_lagrangian``'s ``rate``; ``cooper``'s ``dual_lr``, ``dual_optimizer``,
            …). The Lagrangians take ``constraint`` and ``kappa`` like GECO.
        model_kwargs, constraint_kwargs, geco_kwargs: passed to the builders
            (``constraint_kwargs`` may be keyed by constraint name).
        max_grad_norm: clip the global gradient norm (None: no clipping; the paper clips none).
        max_bad_steps: raise after this many consecutive steps with a non-finite gradient
            (each such step is skipped with a warning).
        compile: run the model's forward (and its backward) through ``torch.compile``: the
            same computation in fused kernels after a one-off compilation (seconds to tens of
            seconds; benchmarks/README.md), with the eager noise generator, so the losses
            equal the eager run's within float rounding, not bitwise (ConvDRAW's too: it
            draws its noise with ``torch.randn`` in NCHW order, which the compiler keeps).
            ``None``
            (default, "auto"): compile when the run has at least
            :data:`COMPILE_AUTO_MIN_STEPS` steps to go (:func:`compile_wanted`), where the
            compilation pays back; ``True`` / ``False`` force it. Not part of a run's store key.
        precision: a :data:`PRECISIONS` name: ``"float32"`` (default) or ``"bfloat16"``
            (mixed precision: the networks' convolutions and matmuls, and the activations
            between them, in bfloat16 through ``torch.autocast``, forward and backward; the
            states, densities, losses, GECO and Adam float32; CPU and CUDA, the CUDA path
            untested so far; mps refused).
            It changes the numbers, so it is part of a run's store key and a resume refuses
            another precision. Faster where the hardware has bfloat16 units (AMX on recent
            Xeons, tensor cores); measured in benchmarks/README.md.
        progress: show a tqdm progress bar (rank 0).
    """

    model: str = "conv_vae"
    dataset: str = "mnist"
    objective: str = "geco"
    constraint: str = "re"
    kappa: float | list[float] = 0.1
    steps: int = 1000
    batch_size: int = 64
    lr: float | None = None
    alpha: float = 0.99
    nu: float | str = 1.0
    lambda_init: float = 1.0
    sigma: float = 0.1
    learn_sigma: bool = True
    beta: float = 1e-3
    anneal_sigma_start: float = 2.0
    anneal_sigma_end: float = 0.7
    anneal_steps: int = 200_000
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 500
    out_dir: str | None = None
    device: str = "auto"
    model_size: str = "small"
    split: str = "train"
    data_root: str | None = None
    download: bool | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    constraint_kwargs: dict[str, Any] = field(default_factory=dict)
    geco_kwargs: dict[str, Any] = field(default_factory=dict)
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    max_grad_norm: float | None = None
    max_bad_steps: int = 10
    compile: bool | None = None
    precision: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.kappa, (tuple, list)):
            self.kappa = [float(k) for k in self.kappa]
        if isinstance(self.out_dir, os.PathLike):
            self.out_dir = os.fspath(self.out_dir)
        if isinstance(self.data_root, os.PathLike):
            self.data_root = os.fspath(self.data_root)
        for name in _KWARGS_FIELDS:
            value = getattr(self, name)
            if isinstance(value, dict):
                # JSON-normalise (tuples → lists) so that a config equals its stored copy.
                try:
                    setattr(self, name, json.loads(json.dumps(value)))
                except TypeError as e:
                    raise ValueError(
                        f"{name} must hold JSON values only (numbers, strings, lists, dicts) "
                        f"so that checkpoints can store it: {e}"
                    ) from None
        self.validate()

    @property
    def constraints(self) -> list[str]:
        """The constraint names of ``constraint``, in order."""
        return [c.strip() for c in self.constraint.split(",") if c.strip()]

    @property
    def kappas(self) -> list[float]:
        """One κ per constraint."""
        ks = self.kappa if isinstance(self.kappa, list) else [self.kappa]
        if len(ks) == 1:
            ks = ks * len(self.constraints)
        return [float(k) for k in ks]

    @property
    def learning_rate(self) -> float:
        """The Adam learning rate the run uses: ``lr``, or the paper's :data:`PAPER_LR`."""
        return PAPER_LR[self.model] if self.lr is None else self.lr

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the bad argument (unknown names list the valid
        choices); every message starts with the field's name.

        Checks what can be checked from the config alone, before any data or model exists:
        names, numbers and their ranges (κ per constraint: ``kappa_max`` of its class, 1e3 for
        RE-type tolerances, 1 for CLA and pNCC), the device string, the split of the dataset,
        and that a constraint reading the pretrained one-digit MNIST classifier (CLA,
        ``FRE(features="classifier")``) gets a dataset whose targets are one MNIST digit
        (:data:`data_builders.registry.ONE_DIGIT_TARGETS`). :func:`geco_core.train.fit` then
        runs :meth:`validate_kwargs` and checks what depends on the machine (the device, the
        data folders, that ``out_dir`` is writable), still before loading data.
        """
        from data_builders.registry import ONE_DIGIT_TARGETS, SPLITS

        check_choice(self.model, "model", tuple(MODELS))
        check_choice(self.model_size, "model_size", tuple(MODEL_SIZES))
        check_choice(self.objective, "objective", tuple(OBJECTIVES))
        check_choice(self.precision, "precision", PRECISIONS)
        check_choice(self.dataset, "dataset", _dataset_names())
        check_choice(self.split, "split", SPLITS[self.dataset])
        if not isinstance(self.constraint, str) or not self.constraints:
            raise ValueError(
                f"constraint must name at least one constraint, got {self.constraint!r}"
            )
        for c in self.constraints:
            check_choice(c, "constraint", tuple(CONSTRAINTS))
        ks = self.kappa if isinstance(self.kappa, list) else [self.kappa]
        if len(ks) not in (1, len(self.constraints)):
            raise ValueError(
                f"kappa must be one number or one per constraint ({len(self.constraints)}), "
                f"got {self.kappa!r}"
            )
        for k in ks:
            check_float32(k, "kappa")
        for c, k in zip(self.constraints, self.kappas):
            hi = CONSTRAINTS[c].kappa_max
            if k > hi:
                why = (
                    "a probability or correlation"
                    if hi <= 1.0
                    else "an RMS error tolerance; data are in [0, 1], so any κ >= 1 already never "
                    "binds, and a huge κ overflows κ² in float32"
                )
                raise ValueError(
                    f"kappa: {k:g} is out of range for constraint {c!r}: κ must lie in "
                    f"(0, {hi:g}] ({why})"
                )
            if hi > 1.0 and k * k < FLOAT32_TINY:  # an RMS tolerance: the constraint uses κ²
                raise ValueError(
                    f"kappa: {k:g} is too small for constraint {c!r}: κ² = {k * k:.3g} is 0 in "
                    f"float32 (κ must be at least {FLOAT32_TINY ** 0.5:.3g})"
                )
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "max_bad_steps"):
            check_int(getattr(self, name), name)
        if self.steps > MAX_STEPS:
            raise ValueError(
                f"steps: {self.steps:,} is more than {MAX_STEPS:,} (years of training on any "
                "machine; a typo?)"
            )
        check_int(self.anneal_steps, "anneal_steps")
        check_seed(self.seed)
        self._validate_device()
        if self.precision != "float32" and self.device == "mps":
            raise ValueError(
                f"precision: {self.precision!r} needs a cpu or cuda device (autocast), got "
                f"device {self.device!r}"
            )
        for name in ("out_dir", "data_root"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty path string or None, got {value!r}")
        if self.download is not None and not isinstance(self.download, bool):
            raise TypeError(f"download must be True, False or None, got {self.download!r}")
        for name in ("learn_sigma", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TypeError(f"compile must be True, False or None, got {self.compile!r}")
        positive = ["lambda_init", "sigma", "beta", "anneal_sigma_start", "anneal_sigma_end"]
        if self.nu != NU_AUTO:
            positive.append("nu")
        for name in ("lr", "max_grad_norm"):
            if getattr(self, name) is not None:
                positive.append(name)
        for name in positive:
            check_float32(getattr(self, name), name)
        check_fraction(self.alpha, "alpha")
        if self.lr is None and self.model not in PAPER_LR:
            raise ValueError(
                f"lr: the paper gives no learning rate for model {self.model!r} (PAPER_LR); pass lr"
            )
        for name in _KWARGS_FIELDS:
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {getattr(self, name)!r}")
        dupes = sorted({c for c in self.constraints if self.constraints.count(c) > 1})
        if dupes:
            raise ValueError(
                f"constraint: {', '.join(map(repr, dupes))} named more than once in "
                f"{self.constraint!r}; name each constraint once (one κ each)"
            )
        self._validate_unread_fields()
        for c in self.constraints:
            kw = constraint_kwargs_for(self.constraint_kwargs, self.constraints, c)
            reads_classifier = c == "cla" or (c == "fre" and kw.get("features") == "classifier")
            if reads_classifier and self.dataset not in ONE_DIGIT_TARGETS:
                raise ValueError(
                    f"constraint: {c!r} reads the pretrained one-digit MNIST classifier, whose "
                    f"labels the targets of dataset {self.dataset!r} do not have (they are not "
                    f"one 1x28x28 MNIST digit); use it with {', '.join(ONE_DIGIT_TARGETS)}"
                )

    def _validate_unread_fields(self) -> None:
        """Refuse a setting the objective would silently ignore: a constraint (``constraint``,
        ``kappa``, ``constraint_kwargs``) for an objective without one, GECO's ``nu``,
        ``lambda_init`` or ``geco_kwargs`` for another objective (the Lagrangians take theirs
        in ``objective_kwargs``). ``alpha`` is exempt: the book's committed ELBO runs carry
        the cpu profile's α in their keys."""
        defaults = _field_defaults()
        cls = OBJECTIVES[self.objective]
        unread = [] if cls.takes_constraints else ["constraint", "kappa", "constraint_kwargs"]
        if self.objective != "geco":
            unread += ["nu", "lambda_init", "geco_kwargs"]
        for name in unread:
            value = getattr(self, name)
            if json.loads(json.dumps(value)) != defaults[name]:
                raise ValueError(
                    f"{name}: objective {self.objective!r} does not read it ({value!r} would be "
                    f"ignored); leave it at its default {defaults[name]!r}"
                )

    def _validate_device(self) -> None:
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string, got {self.device!r}")
        if self.device == "auto":
            return
        try:
            d = torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            d = None
        if d is None or d.type not in DEVICE_TYPES:
            raise ValueError(
                f"device: unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps"
            )

    def validate_kwargs(self) -> None:
        """Raise ValueError naming the field when a key of ``dataset_kwargs``,
        ``model_kwargs``, ``geco_kwargs`` or ``constraint_kwargs`` is not an argument of what
        it is passed to (the dataset builder, the model's constructor, :class:`GECO`, the
        constraint's class), or ``dataset_kwargs["n"]`` is not an int >= 1.
        :func:`geco_core.train.fit` runs it before loading data.

        Example:
            >>> TrainConfig(model_kwargs={"latent_dimm": 2}).validate_kwargs()
            ... # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: model_kwargs: unknown key(s) ['latent_dimm'] for model 'conv_vae'; ...
        """
        from data_builders.registry import options

        _check_keys(
            self.dataset_kwargs,
            options(self.dataset),
            "dataset_kwargs",
            f"dataset {self.dataset!r}",
        )
        if "n" in self.dataset_kwargs and self.dataset_kwargs["n"] is not None:
            check_int(self.dataset_kwargs["n"], "dataset_kwargs: n")
        for engine_key in ("image_shape", "context_shape"):
            if engine_key in self.model_kwargs:
                raise ValueError(f"model_kwargs: {engine_key} is set from the data")
        model_keys = _keyword_names(MODELS[self.model].__init__)
        if model_keys is not None:
            model_keys = [k for k in model_keys if k not in ("image_shape", "context_shape")]
        _check_keys(self.model_kwargs, model_keys, "model_kwargs", f"model {self.model!r}")
        _check_int_kwargs(MODELS[self.model].__init__, self.model_kwargs, "model_kwargs")
        _check_keys(
            self.geco_kwargs,
            _keyword_names(GECO.__init__, keyword_only=True),
            "geco_kwargs",
            "GECO (alpha, nu and lambda_init are fields of their own)",
        )
        if self.objective_kwargs:
            cls = OBJECTIVES[self.objective]
            valid = _keyword_names(cls.__init__)
            if valid is not None:
                valid = [k for k in valid if k != "constraints"]
            if not cls.takes_objective_kwargs:
                valid = []  # the paper's objectives take their arguments from fields
            _check_keys(self.objective_kwargs, valid, "objective_kwargs",
                        f"objective {self.objective!r}")
        for c in self.constraints:
            kw = constraint_kwargs_for(self.constraint_kwargs, self.constraints, c)
            valid = _keyword_names(CONSTRAINTS[c].__init__)
            if valid is not None:
                valid = [k for k in valid if k != "kappa"]
                valid += ["depth"] if c == "fre" else []  # FRE(features="classifier", depth=k)
            _check_keys(kw, valid, "constraint_kwargs", f"constraint {c!r}")
        self._validate_kwarg_values()

    def _validate_kwarg_values(self) -> None:
        """Build GECO's multiplier (``geco_kwargs``) or a later method's objective
        (``objective_kwargs``, with a stand-in RE constraint for the Lagrangians) from the
        config alone, so that a bad value is refused naming its field before any data load."""
        cls = OBJECTIVES[self.objective]
        name = "geco_kwargs" if self.objective == "geco" else "objective_kwargs"
        try:
            if self.objective == "geco":
                GECO(len(self.constraints), alpha=self.alpha, nu=self.nu,
                     lambda_init=self.lambda_init, **self.geco_kwargs)
            elif cls.takes_objective_kwargs:
                stand_in = ([CONSTRAINTS["re"](kappa=0.1)],) if cls.takes_constraints else ()
                cls(*stand_in, **self.objective_kwargs)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{name}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (what checkpoints store)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default, JSON-normalised like :meth:`to_dict` (fields without one,
        none today, are left out).

        Example:
            >>> TrainConfig.defaults()["alpha"], TrainConfig.defaults()["compile"]
            (0.99, None)
        """
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = json.loads(json.dumps(f.default))
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = json.loads(json.dumps(f.default_factory()))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`'s output (unknown keys are refused, naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(d))


@dataclass
class FitResult:
    """What :func:`geco_core.train.fit` returns.

    Attributes:
        model: the trained model (unwrapped from DDP), on ``device``.
        objective: the objective with its final state (GECO's λ: ``objective.geco.lambdas``,
            its α and ν: ``objective.geco.alpha``, ``objective.geco.nu``).
        config: the run's :class:`TrainConfig`.
        metrics: the last step's metrics (floats; averaged over ranks).
        step: optimizer steps completed.
        wall_time: seconds of training (summed over resumed segments).
        lr: the learning rate used; device: where it ran.
        log_path, checkpoint_path: files written (None without ``out_dir``).
        rank, world_size: this process's place in a distributed run.
    """

    model: nn.Module
    objective: Objective
    config: TrainConfig
    metrics: dict[str, float]
    step: int
    wall_time: float
    lr: float
    device: str
    log_path: str | None = None
    checkpoint_path: str | None = None
    rank: int = 0
    world_size: int = 1


def compile_wanted(cfg: TrainConfig, start: int = 0) -> bool:
    """Whether :func:`~geco_core.train.fit` compiles the model: ``cfg.compile`` when set, else
    (auto) whether the run has at least :data:`COMPILE_AUTO_MIN_STEPS` steps to go from
    ``start``.

    Example:
        >>> compile_wanted(TrainConfig(steps=1_500)), compile_wanted(TrainConfig(steps=200_000))
        (False, True)
        >>> compile_wanted(TrainConfig(steps=200_000), start=190_000)
        False
    """
    if cfg.compile is not None:
        return cfg.compile
    return cfg.steps - start >= COMPILE_AUTO_MIN_STEPS
