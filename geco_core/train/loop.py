"""The training loop: :func:`fit`, :func:`load_run`, the batch schedule and the distributed glue.

- Adam (the paper's optimiser, §4.1) at ``config.learning_rate`` on the model's and the
  objective's parameters (the ELBO's learned σ), PyTorch's fused kernel
  (:func:`make_optimizer`; a resumed checkpoint continues with it).
- Batches are a pure function of ``(seed, step, rank)`` (:func:`batch_indices`): a fresh
  permutation of the training set per epoch, each optimizer step takes the next
  ``batch_size · world_size`` indices and rank r its r-th slice. Resuming at step t therefore
  sees exactly the batches an uninterrupted run sees, and the ranks of a distributed run train
  on disjoint shards of every global batch.
- A metrics log (:mod:`geco_core.train.log`) and an atomic checkpoint (``checkpoint.pt``)
  every ``ckpt_every`` steps and at the end, with the model, optimizer, objective (GECO's λ,
  C_ma, t) and every RNG state; ``resume=True`` continues bit-for-bit
  (:mod:`geco_core.checkpoint`; a checkpoint of the earlier for-loop-Adam engine, format 2,
  continues with the fused Adam: to float rounding). A checkpoint of another model, of a
  different configuration, of another :data:`~geco_core.train.config.ENGINE_VERSION` or of
  other training data is refused: checkpoints and ``config.json`` record the data's fingerprint
  (:meth:`data_builders.ImageDataset.fingerprint`: dataset, split, size, ``source`` such as
  ``"mnist-60k"`` or ``"mnist-test-10k"``, sha256 of the tensors), so another ``data_root``
  or ``$GECO_DATA`` that leads to other data cannot be resumed on.
- Before any data is loaded: the config is validated (:meth:`TrainConfig.validate`), the
  device resolved, the data folders given checked, ``out_dir`` probed for writing and a
  checkpoint to resume verified; a full disk while checkpointing is one ``OSError`` line
  saying which checkpoint is still intact.
- Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on
  CUDA); GECO all-reduces Ĉ so λ is identical on every rank; only rank 0 writes files.

References:
    Rezende & Viola, "Taming VAEs", 2018: §3.4, Algorithm 1, §4.1 (Adam), Figure 3.

Example:
    >>> from geco_core.train import TrainConfig
    >>> cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, alpha=0.9, device="cpu",
    ...                   progress=False, download=False, dataset_kwargs={"n": 16},
    ...                   model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16})
    >>> res = fit(cfg)
    >>> res.step, res.lr, sorted(res.metrics)[:4]
    (2, 0.001, ['beta', 'c_hat', 'c_ma', 'epoch'])
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import random
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from geco_base.checks import check_bool, check_choice
from geco_base.io import write_text
from geco_core import checkpoint as ckpt
from geco_core.train.builders import build_model_for, build_objective, load_data, target_labels
from geco_core.train.config import (
    ENGINE_VERSION,
    PRECISIONS,
    FitResult,
    TrainConfig,
    compile_wanted,
)
from geco_core.train.log import (
    LOG_NAME,
    append_row,
    metrics_to_floats,
    order_row,
    truncate_log,
)
from geco_core.train.resume import check_data, load_resumable

__all__ = [
    "CKPT_NAME",
    "CONFIG_NAME",
    "batch_indices",
    "fit",
    "load_run",
    "make_optimizer",
    "precision_context",
    "resolve_device",
]

CKPT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"


# --------------------------------------------------------------------------------------------
# Devices, seeds, batches
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device: unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if d.index is None:
            d = torch.device(f"cuda:{local_rank}")
        if d.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available")
    return d


def precision_context(precision: str, device_type: str):
    """The context (a zero-argument factory) the engine runs a model's forward in for
    ``TrainConfig.precision``: ``torch.autocast(device_type, dtype=torch.bfloat16)`` for
    ``"bfloat16"``, a no-op context for ``"float32"`` (the float32 step is exactly the one
    without the option).

    Example:
        >>> with precision_context("bfloat16", "cpu")():
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
        >>> with precision_context("float32", "cpu")():
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.float32
    """
    if check_choice(precision, "precision", PRECISIONS) == "float32":
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type, dtype=torch.bfloat16)


def make_optimizer(params: Sequence[nn.Parameter], lr: float) -> torch.optim.Adam:
    """The engine's optimiser: Adam (the paper's, §4.1) at ``lr``, PyTorch's fused kernel.

    The for-loop Adam (``torch.optim.Adam``'s default on CPU) makes a dozen elementwise passes
    over each tensor; the fused kernel makes a whole conv VAE / VAE+NVP training step
    1.07–1.12× faster on one CPU thread (``benchmarks/bench_speed.py``, fused ÷ for-loop). It
    is the same update, equal to the for-loop Adam's to float rounding (tested on every model).
    Loading a state dict (resuming) keeps its hyperparameters but always continues with the
    fused kernel: a checkpoint of the earlier engine (checkpoint format 2; torch's default
    Adam, for-loop on CPU and foreach on CUDA) resumes fused, to float rounding of what the old
    engine would have computed. The fused kernel reads a parameter, its
    gradient and its moments as raw memory, so the moments must share the parameter's layout
    (autograd gives every gradient its parameter's); loading restrides moments saved in
    another layout (e.g. before ConvDecoder's weights became channels_last) — on CPU the
    kernel would otherwise read them in the wrong order, silently.

    References:
        Kingma & Ba, "Adam: a method for stochastic optimization" (ICLR 2015).
        Rezende & Viola, "Taming VAEs", 2018, §4.1.

    Example:
        >>> opt = make_optimizer([nn.Parameter(torch.zeros(3))], lr=1e-3)
        >>> opt.param_groups[0]["fused"], opt.param_groups[0]["lr"]
        (True, 0.001)
    """
    optimizer = torch.optim.Adam(params, lr=lr, fused=True)
    optimizer.register_load_state_dict_post_hook(_fused_after_load)
    return optimizer


def _fused_after_load(optimizer: torch.optim.Adam) -> None:
    """load_state_dict post-hook of :func:`make_optimizer`: the fused kernel from here on, its
    ``step`` counters as float32 on the parameter's device, every moment in its parameter's
    memory layout."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            for k, v in state.items():
                if k == "step":
                    state[k] = v.to(dtype=torch.float32, device=p.device)
                elif torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p).copy_(v)  # p's layout, v's values


def _derived_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    # The permutation of data_builders.iterate_minibatches: on one rank, batch_indices(t) is
    # exactly its t-th batch.
    from data_builders.batching import epoch_permutation

    return epoch_permutation(n, seed, epoch)


def batch_indices(
    n: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """Indices of rank ``rank``'s batch at optimizer step ``step``: a function of its arguments.

    Epoch e is a permutation of ``range(n)`` seeded by (seed, e) (that of
    :func:`data_builders.iterate_minibatches`, whose t-th batch this is on one rank); it is cut
    into ``n // (batch_size · world_size)`` global batches (the remainder is dropped), and rank
    r takes the r-th ``batch_size`` slice of global batch ``step mod that``. Ranks therefore see
    disjoint shards, and a run resumed at any step sees the batches of an uninterrupted one.

    Example:
        >>> a = batch_indices(10, 2, step=0, seed=0, rank=0, world_size=2)
        >>> b = batch_indices(10, 2, step=0, seed=0, rank=1, world_size=2)
        >>> len(set(a.tolist()) | set(b.tolist()))
        4
    """
    per_step = batch_size * world_size
    if per_step > n:
        raise ValueError(f"batch_size × world_size = {per_step} exceeds the dataset size n = {n}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    epoch, pos = divmod(int(step), n // per_step)
    start = pos * per_step + rank * batch_size
    return _epoch_permutation(n, seed, epoch)[start : start + batch_size].clone()


# --------------------------------------------------------------------------------------------
# Distributed
# --------------------------------------------------------------------------------------------


def _init_distributed(device_arg: str) -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, created): join the torchrun process group if any."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1, 0, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not str(device_arg).startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank, True


def _all_reduce_grads(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Average gradients of parameters outside DDP (the ELBO's learned σ) over ranks."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world_size)


def _gather_rng(world_size: int) -> list[dict[str, Any]]:
    state = ckpt.capture_rng_state()
    if world_size == 1:
        return [state]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, state)
    return out


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(
    config: TrainConfig | Mapping[str, Any], *, resume: bool = False, overwrite: bool = False
) -> FitResult:
    """Train a model as ``config`` says; return a :class:`~geco_core.train.config.FitResult`.

    Args:
        config: a :class:`~geco_core.train.config.TrainConfig` (or a dict of its fields).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (exactly: same weights,
            λ and batches as an uninterrupted run on the same machine). A checkpoint of another
            model, of another engine version, with a different configuration except
            :data:`~geco_core.train.config.RESUME_MAY_DIFFER`, or whose recorded data
            fingerprint differs from the data loaded now, is refused with a ValueError.
            Without a checkpoint the run starts from scratch.
        overwrite: allow a fresh run in an ``out_dir`` that already holds a checkpoint.

    Raises:
        ValueError, TypeError: a bad config, device, data folder, ``out_dir`` or checkpoint,
            before any data is loaded (messages name the argument); another model, config or
            data on resume.
        CheckpointError: (a ValueError) the checkpoint to resume is corrupt.
        OSError: the disk filled up while writing a checkpoint (errno ENOSPC; the message
            says which checkpoint is intact).
        FloatingPointError: ``max_bad_steps`` consecutive non-finite gradients.

    Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) or with a process group already
    initialised, the model is wrapped in DistributedDataParallel, rank r trains on shard r of
    every global batch (``batch_size`` per rank), GECO's Ĉ is all-reduced (identical λ) and
    only rank 0 writes files.
    """
    check_bool(resume, "resume")
    check_bool(overwrite, "overwrite")
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    rank, world, local_rank, created_group = _init_distributed(cfg.device)
    try:
        return _fit(cfg, resume, overwrite, rank, world, local_rank)
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


def _check_out_dir(out_dir: Path) -> None:
    """``out_dir`` must be a folder this process can write, or creatable in one: checked
    before any data is loaded (a temporary file is created and removed to probe it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {str(out_dir)!r} is a file, not a folder")
    probe = out_dir
    while not probe.exists():  # the nearest existing ancestor is where the folder would go
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(
            f"out_dir: cannot create {str(out_dir)!r}: {str(probe)!r} is a file, not a folder"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(
            f"out_dir: {str(probe)!r} is not writable ({e.strerror or e}); choose another out_dir"
        ) from None


def _preflight(cfg: TrainConfig, out_dir: Path | None) -> None:
    """Checked before loading data or building a model: the ``*_kwargs`` keys
    (:meth:`TrainConfig.validate_kwargs`) and what depends on this machine: the data folders
    named by ``data_root`` / ``$GECO_DATA`` exist, ``out_dir`` is writable."""
    from data_builders.core import check_data_dirs

    cfg.validate_kwargs()
    check_data_dirs(cfg.data_root, root_name="data_root")
    if out_dir is not None:
        _check_out_dir(out_dir)


def _per_constraint(row: Mapping[str, float]) -> tuple[list[float], list[float]]:
    """(C_ma, λ) per constraint from a log row: ``c_ma``/``lambda`` for one constraint,
    ``c_ma_i``/``lambda_i`` columns for several."""
    if "c_ma" in row:
        return [row["c_ma"]], [row["lambda"]]
    n = sum(1 for k in row if k.startswith("c_ma_"))
    return [row[f"c_ma_{i}"] for i in range(n)], [row[f"lambda_{i}"] for i in range(n)]


def _fit(cfg: TrainConfig, resume: bool, overwrite: bool, rank: int, world: int, local_rank: int):
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device, local_rank)
    lr = cfg.learning_rate
    is_main = rank == 0

    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else None
    ckpt_path = out_dir / CKPT_NAME if out_dir is not None else None
    log_path = out_dir / LOG_NAME if out_dir is not None else None
    _preflight(cfg, out_dir if is_main else None)
    saved = None
    if ckpt_path is not None and ckpt_path.exists():
        if resume:
            saved = load_resumable(ckpt_path, cfg, world)
        elif not overwrite:
            raise ValueError(
                f"out_dir {str(out_dir)!r} already holds a checkpoint; pass resume=True "
                "(--resume) to continue it, overwrite=True (--overwrite) to start afresh, "
                "or use another out_dir"
            )

    try:
        data = load_data(cfg)
    except ValueError as e:  # a dataset_kwargs value the loader refused: name the field
        msg = str(e)
        if any(re.match(rf"{re.escape(k)}\b", msg) for k in cfg.dataset_kwargs):
            raise ValueError(f"dataset_kwargs: {msg}") from None
        raise
    data_record = data.fingerprint()  # recorded in checkpoints and config.json
    if saved is not None:
        check_data(saved, data_record, ckpt_path)
    n = len(data)
    if cfg.batch_size * world > n:
        raise ValueError(
            f"batch_size: {cfg.batch_size} × world_size={world} exceeds the {n} examples "
            f"of {cfg.dataset!r}"
        )
    # Same seed on every rank for the initial weights (DDP broadcasts rank 0's anyway).
    _seed_everything(cfg.seed)
    image_shape = tuple(data.x.shape[1:])
    ctx_shape = None if data.context is None else tuple(data.context.shape[1:])
    model = build_model_for(cfg, image_shape, ctx_shape).to(device)
    objective = build_objective(cfg, image_shape, data.source).to(device)
    params = list(model.parameters()) + list(objective.parameters())
    extra_params = list(objective.parameters())
    optimizer = make_optimizer(params, lr)
    # Sampling noise: a different stream per rank.
    _seed_everything(_derived_seed(cfg.seed, rank, 0x5EED))

    start, wall_before = 0, 0.0
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as e:
            raise ValueError(
                f"refusing to resume: the model weights in {ckpt_path} do not fit this "
                f"{cfg.model!r} model ({e})"
            ) from None
        optimizer.load_state_dict(saved["optimizer"])
        objective.load_state_dict(saved["objective"])
        ckpt.restore_rng_state(saved["rng"][rank])
        start, wall_before = int(saved["step"]), float(saved["wall_time"])
        del saved

    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if start > 0:
            truncate_log(log_path, start)
        elif log_path.exists():
            log_path.unlink()
        run_info = {**cfg.to_dict(), "data": data_record}
        write_text(out_dir / CONFIG_NAME, json.dumps(run_info, indent=2) + "\n")

    x_all = data.x
    ctx_all = data.context
    labels_all = target_labels(data)
    if device.type == "cuda":  # keep the (small) datasets on the GPU: no per-step copies
        x_all = x_all.to(device)
        ctx_all = None if ctx_all is None else ctx_all.to(device)
        labels_all = labels_all.to(device)

    if world > 1:
        ddp_model: nn.Module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp_model = model
    # torch.compile traces the forward once (per input shape) and fuses its small kernels; the
    # backward goes through the compiled graph too. The eager module stays the one saved.
    step_model = ddp_model
    if compile_wanted(cfg, start):
        import torch._inductor.config as inductor_config

        # Draw the reparameterisation noise with the eager generator (inductor's own RNG would
        # give other samples than an eager run with the same seed).
        inductor_config.fallback_random = True
        step_model = torch.compile(ddp_model, dynamic=False)
    model.train()
    # mixed precision: only the forward runs under autocast; its backward follows the
    # forward's dtypes, the objective and the optimiser stay float32
    autocast = precision_context(cfg.precision, device.type)

    saved_step = start if start > 0 else None

    def save(step_done: int, wall: float) -> None:
        nonlocal saved_step
        rng = _gather_rng(world)
        if not is_main or ckpt_path is None:
            return
        try:
            _save(step_done, wall, rng)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            kept = (
                f"the checkpoint of step {saved_step} is intact"
                if saved_step is not None
                else f"{ckpt_path} was left as it was"
            )
            raise OSError(
                errno.ENOSPC,
                f"{e.strerror} (checkpoint of step {step_done}); {kept}; free some space and "
                "rerun with --resume (resume=True)",
            ) from e
        saved_step = step_done

    def _save(step_done: int, wall: float, rng: list[dict[str, Any]]) -> None:
        ckpt.save_checkpoint(
            ckpt_path,
            {
                "model_name": cfg.model,
                "engine_version": ENGINE_VERSION,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict(),
                "rng": rng,
                "step": step_done,
                "wall_time": wall,
                "world_size": world,
                "config": cfg.to_dict(),
                "data": data_record,
            },
        )

    last: dict[str, float] = {}
    bad = 0
    monitor = None
    if cfg.objective == "geco" and is_main:  # warns when κ looks infeasible (reads the log)
        from geco_core.feasibility import FeasibilityMonitor

        bounds = cfg.geco_kwargs.get("lambda_bounds")
        monitor = FeasibilityMonitor(upper=None if bounds is None else float(bounds[1]))
    t0 = time.perf_counter()
    bar = tqdm(
        total=cfg.steps,
        initial=min(start, cfg.steps),
        disable=not (cfg.progress and is_main),
        desc=f"{cfg.model}/{cfg.objective}",
        dynamic_ncols=True,
    )
    log_file = open(log_path, "a") if (log_path is not None and is_main) else None
    try:
        for t in range(start, cfg.steps):
            idx = batch_indices(n, cfg.batch_size, t, cfg.seed, rank, world)
            idx = idx.to(x_all.device)
            x = x_all[idx]
            context = None if ctx_all is None else ctx_all[idx]
            labels = labels_all[idx]
            if t == start:
                model.prepare(x, context)  # data-dependent initialisation, outside compile
            with autocast():
                out = step_model(x, context)  # float32 outputs (to_float32 in the models)
            loss, metrics = objective(out, x, context=context, labels=labels, step=t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1 and extra_params:
                _all_reduce_grads(extra_params, world)
            grads = [p.grad for p in params if p.grad is not None]
            if cfg.max_grad_norm is not None:
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                gnorm = torch.nn.utils.get_total_norm(grads)
            if bool(torch.isfinite(gnorm)):
                optimizer.step()
                bad = 0
            else:
                bad += 1
                warnings.warn(
                    f"step {t}: non-finite gradient (loss={float(loss)}); optimizer step "
                    f"skipped ({bad} in a row)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                if bad >= cfg.max_bad_steps:
                    raise FloatingPointError(
                        f"{bad} consecutive non-finite gradients (max_bad_steps="
                        f"{cfg.max_bad_steps}); last loss {float(loss)}"
                    )
            done = t + 1
            if t == 0 or done % cfg.log_every == 0 or done == cfg.steps:
                metrics = dict(metrics, grad_norm=gnorm.detach())
                row = metrics_to_floats(metrics, world, device)
                wall = wall_before + time.perf_counter() - t0
                row.update(step=t, epoch=(t * cfg.batch_size * world) / n, lr=lr, wall_time=wall)
                last = order_row(row)
                if monitor is not None:
                    monitor.update(t, *_per_constraint(row))
                if log_file is not None:
                    append_row(log_file, last, log_path)
                if is_main:
                    post = {"kl": f"{row['kl']:.3g}", "mse": f"{row['mse']:.3g}"}
                    if "lambda" in row:
                        post["λ"] = f"{row['lambda']:.3g}"
                    bar.set_postfix(post, refresh=False)
            if ckpt_path is not None and (done % cfg.ckpt_every == 0 or done == cfg.steps):
                save(done, wall_before + time.perf_counter() - t0)
            bar.update(1)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()

    wall = wall_before + time.perf_counter() - t0
    if not last and log_path is not None and log_path.exists() and is_main:
        # resumed a finished run: report its last logged step
        rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        last = rows[-1] if rows else {}
    model.eval()
    return FitResult(
        model=model,
        objective=objective,
        config=cfg,
        metrics=last,
        step=max(start, cfg.steps),
        wall_time=wall,
        lr=lr,
        device=str(device),
        log_path=None if log_path is None else str(log_path),
        checkpoint_path=None if ckpt_path is None else str(ckpt_path),
        rank=rank,
        world_size=world,
    )


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild a trained model and objective from a run's ``out_dir`` (or checkpoint file).

    Returns ``(model, objective, config, step)``; the model is in eval mode.
    """
    p = Path(path)
    if p.is_dir():
        p = p / CKPT_NAME
    state = ckpt.load_checkpoint(p)
    cfg = TrainConfig.from_dict(state["config"])
    device = resolve_device(device)
    data = load_data(cfg)
    image_shape = tuple(data.x.shape[1:])
    ctx_shape = None if data.context is None else tuple(data.context.shape[1:])
    model = build_model_for(cfg, image_shape, ctx_shape)
    model.load_state_dict(state["model"])
    objective = build_objective(cfg, image_shape, data.source)
    objective.load_state_dict(state["objective"])
    return model.to(device).eval(), objective.to(device), cfg, int(state["step"])
