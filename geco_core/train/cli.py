"""``python -m geco_core.train``: one flag per :class:`~geco_core.train.config.TrainConfig` field.

The defaults are the paper's (§4.1: Adam at :data:`~geco_core.train.config.PAPER_LR`, GECO's
α = 0.99, ν = 1); a short CPU run wants e.g. ``--lr 1e-3 --alpha 0.9`` (the book's cpu policy,
:mod:`geco_book.policy`). ``torchrun --nproc_per_node=N -m geco_core.train ...`` trains with
DistributedDataParallel; only rank 0 prints the summary.

Errors are one line on stderr, ``error: <argument>: <why>`` (the argument as its flag), and
come before any data is loaded: the config is validated, the device, the data folders and
``--out-dir`` are checked, and a checkpoint to ``--resume`` is verified first. Exit status 2:
refused (bad arguments, unusable folders, ``--resume`` without a checkpoint or with one that
cannot be resumed); 1: training failed (disk full while checkpointing, non-finite gradients,
final metrics that are not finite); 0: done.

CLI example (the paper's Figure 3 setting, scaled down to minutes on a CPU)::

    python -m geco_core.train --model convdraw --dataset mnist-rotate --objective geco \\
        --constraint re --kappa 0.1 --steps 2000 --lr 1e-3 --alpha 0.9 --out runs/rotate-geco

Example:
    >>> args = _arg_parser().parse_args(["--kappa", "0.1", "0.2", "--constraint", "re,pncc",
    ...                                  "--model-kwargs", "latent_dim=2", "--download", "no"])
    >>> args.kappa, args.model_kwargs, args.download, args.lr, args.alpha
    ([0.1, 0.2], {'latent_dim': 2}, False, None, 0.99)
    >>> _as_flags("kappa must be a finite number > 0, got -1")
    '--kappa: must be a finite number > 0, got -1'
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import errno
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from geco_base.checks import OneLineParser, cli_fail
from geco_core.checkpoint import CheckpointError
from geco_core.constraints import CONSTRAINTS
from geco_core.models import MODEL_SIZES, MODELS
from geco_core.objectives import OBJECTIVES
from geco_core.train.config import (
    COMPILE_AUTO_MIN_STEPS,
    DEVICE_TYPES,
    PAPER_LR,
    PRECISIONS,
    FitResult,
    TrainConfig,
)
from geco_core.train.loop import CKPT_NAME, fit

__all__ = ["main"]

#: Exit status of a refusal (as argparse's) and of a training run that failed.
EXIT_REFUSED, EXIT_FAILED = 2, 1


def _parse_bool(s: str) -> bool | None:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    if v in ("auto", "none"):
        return None
    raise argparse.ArgumentTypeError(f"expected true/false/auto, got {s!r}")


def _parse_mapping(s: str) -> dict[str, Any]:
    """JSON (``'{"latent_dim": 8}'``) or ``key=value,key=value`` with Python literals.

    Example:
        >>> _parse_mapping("latent_dim=8,name=x"), _parse_mapping('{"channels": [4, 8]}')
        ({'latent_dim': 8, 'name': 'x'}, {'channels': [4, 8]})
        >>> _parse_mapping("channels=[4, 8],hidden=16")
        {'channels': [4, 8], 'hidden': 16}
    """
    s = s.strip()
    if s.startswith("{"):
        try:
            out = json.loads(s)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(
                f"invalid JSON ({e.msg} at column {e.colno})"
            ) from None
        except RecursionError:
            raise argparse.ArgumentTypeError("JSON nested too deeply") from None
        if not isinstance(out, dict):
            raise argparse.ArgumentTypeError("expected a JSON object")
        return out
    out: dict[str, Any] = {}
    # split at the commas that start a new "key=" (so "channels=[4, 8],hidden=16" works)
    for part in filter(None, (p.strip() for p in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", s))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise argparse.ArgumentTypeError(
                f"expected key=value,key=value or a JSON object, got {part!r}"
            )
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _paper_lrs() -> str:
    return ", ".join(f"{m} {lr:g}" for m, lr in PAPER_LR.items())


def _dataset_names() -> list[str]:
    from data_builders.registry import DATASETS

    return list(DATASETS)


def _kappa_ranges() -> str:
    return ", ".join(f"{c} (0, {cls.kappa_max:g}]" for c, cls in CONSTRAINTS.items())


def _helps() -> dict[str, str]:
    """The help of each TrainConfig field (a test checks that every field has one)."""
    from data_builders.registry import ONE_DIGIT_TARGETS

    return {
        "model": f"the latent-variable model: {', '.join(MODELS)} (default %(default)s)",
        "model_size": f"layer sizes: {', '.join(MODEL_SIZES)} (default %(default)s; "
        "--model-kwargs override them)",
        "dataset": f"training data: {', '.join(_dataset_names())} (default %(default)s)",
        "objective": f"what to minimise: {', '.join(OBJECTIVES)} (default %(default)s)",
        "constraint": f"GECO's constraint(s), comma-separated: {', '.join(CONSTRAINTS)} "
        f"(default %(default)s; cla needs one-digit targets: {', '.join(ONE_DIGIT_TARGETS)})",
        "kappa": "tolerance(s) κ, one number or one per constraint, within each constraint's "
        f"range: {_kappa_ranges()} (default %(default)s)",
        "steps": "optimizer steps in total; a resumed run continues up to it (default %(default)s)",
        "batch_size": "examples per step per process (default %(default)s)",
        "lr": f"Adam learning rate (default: the paper's, §4.1: {_paper_lrs()}; "
        "short CPU runs: e.g. 1e-3)",
        "alpha": "GECO's moving-average slowness α in [0, 1) (default: the paper's "
        "%(default)s; short CPU runs: e.g. 0.9)",
        "nu": "GECO's multiplier step ν > 0, or auto: ν = 0.05/|Ĉ⁰| from the first batch's "
        "constraint (the book's policy; default %(default)s)",
        "lambda_init": "GECO's initial multiplier λ > 0 (Algorithm 1: 1; default %(default)s)",
        "sigma": "the ELBO's pixel σ > 0, fixed or the initial value when learned (default "
        "%(default)s)",
        "learn_sigma": "learn the ELBO's σ (default: learn it)",
        "beta": "the β-VAE's KL weight > 0 (default %(default)s)",
        "anneal_sigma_start": "annealed objective: σ at step 0 (GQN: 2.0; default %(default)s)",
        "anneal_sigma_end": "annealed objective: final σ (GQN: 0.7; default %(default)s)",
        "anneal_steps": "annealed objective: steps from the start σ to the end σ (default "
        "%(default)s)",
        "seed": "seeds initialisation, batches and noise, 0 <= seed < 2**63 (default %(default)s)",
        "log_every": "write a metrics row every N steps (default %(default)s)",
        "ckpt_every": "write a checkpoint every N steps and at the end (default %(default)s)",
        "out_dir": "folder for metrics.jsonl, checkpoint.pt and config.json; must be "
        "writable (default: no files)",
        "device": f"auto (CUDA when available), {', '.join(DEVICE_TYPES)} or cuda:N (default "
        "%(default)s)",
        "split": "the dataset split to train on: train or test (celeba also valid; default "
        "%(default)s)",
        "data_root": "an existing folder to search first for the data files (default: "
        "$GECO_DATA, then the user cache)",
        "download": "true/false/auto: may missing data be downloaded (default auto: "
        "$GECO_DOWNLOAD, else when a network is reachable)",
        "dataset_kwargs": "dataset options as JSON or key=value,...: n (items) for every "
        "dataset; size, crop, cache for celeba",
        "model_kwargs": "model constructor arguments as JSON or key=value,..., e.g. latent_dim=8",
        "constraint_kwargs": "constraint arguments as JSON or key=value,..., or keyed by "
        'constraint name: \'{"pncc": {"patch_size": 7}}\'',
        "geco_kwargs": "GECO options as JSON or key=value,...: update_every, factor_clamp, "
        "lambda_bounds, warmup_steps, satisfied_speedup, max_bad_steps",
        "objective_kwargs": "arguments of the later methods' objectives as JSON or "
        "key=value,...: control_vae kl_target, kp, ki, beta_min, beta_max; "
        "softplus_lagrangian lambda_init, rate; cooper dual_lr, dual_optimizer (sgd, nupi), "
        "kp, ema_nu, lambda_init",
        "max_grad_norm": "clip the global gradient norm to this (default: no clipping)",
        "max_bad_steps": "stop after this many consecutive non-finite gradients (default "
        "%(default)s)",
        "compile": "run the model through torch.compile: true, false or auto (default: "
        f"compile when the run has >= {COMPILE_AUTO_MIN_STEPS:,} steps to go, where it pays "
        "back; not bitwise the eager run; see benchmarks/bench_speed.py); --compile: true",
        "precision": f"{' or '.join(PRECISIONS)}: bfloat16 runs the model's networks in "
        "bfloat16 (autocast; cpu, cuda untested), states, densities and losses float32: other "
        "numbers than float32, faster where the hardware has bfloat16 units (default "
        "%(default)s)",
        "progress": "show a progress bar (default: show it)",
    }


def _parse_nu(text: str) -> float | str:
    """``--nu``: a number or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or auto, got {text!r}") from None


def _arg_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m geco_core.train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a VAE with ELBO, GECO, the GQN-annealed β, a fixed-β β-VAE or a later\n"
            "method (σ-VAE, ControlVAE, softplus or cooper Lagrangians:\n"
            "geco_core.objectives.alternatives). The defaults\n"
            "are the paper's (§4.1): Adam at the paper's learning rate, GECO's α = 0.99, ν = 1,\n"
            "tuned for 10⁵–10⁶ steps; short CPU runs want e.g. --lr 1e-3 --alpha 0.9 --nu auto\n"
            "(the book's cpu policy, geco_book.policy).\n\n"
            f"models:      {', '.join(MODELS)}\n"
            f"data sets:   {', '.join(_dataset_names())}\n"
            f"objectives:  {', '.join(OBJECTIVES)}\n"
            f"constraints: {', '.join(CONSTRAINTS)} (κ ranges: {_kappa_ranges()})"
        ),
        epilog=(
            "Errors are one line, 'error: <argument>: <why>', reported before any data is\n"
            "loaded. Exit status: 0 done, 2 refused (bad arguments, folders or checkpoint),\n"
            "1 training failed (disk full while checkpointing, non-finite gradients or final\n"
            "metrics)."
        ),
    )
    helps = _helps()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": helps[f.name]}
        if f.name == "kappa":
            p.add_argument(flag, type=float, nargs="+", metavar="KAPPA", **kw)
        elif f.name == "download":
            p.add_argument(flag, type=_parse_bool, metavar="{true,false,auto}", **kw)
        elif f.name == "compile":
            p.add_argument(
                flag, type=_parse_bool, nargs="?", const=True, metavar="{true,false,auto}", **kw
            )
            p.add_argument("--no-compile", dest="compile", action="store_const", const=False,
                           help="the same as --compile false")
        elif f.name == "nu":
            p.add_argument(flag, type=_parse_nu, metavar="{NU,auto}", **kw)
        elif f.name == "precision":  # checked by TrainConfig.validate, like every choice
            p.add_argument(flag, type=str, metavar="{" + ",".join(PRECISIONS) + "}", **kw)
        elif f.name.endswith("_kwargs"):
            p.add_argument(flag, type=_parse_mapping, metavar="MAPPING", **kw)
        elif f.name == "out_dir":
            p.add_argument(flag, "--out", type=str, metavar="DIR", **kw)
        elif str(f.type).startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif str(f.type).startswith("float"):  # "float" and "float | None"
            p.add_argument(flag, type=float, **kw)
        elif str(f.type).startswith("int"):
            p.add_argument(flag, type=int, **kw)
        else:
            p.add_argument(flag, type=str, **kw)
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue out_dir/checkpoint.pt (verified; its config except steps, folders and "
        "device, and its data, must be this run's)",
    )
    again.add_argument(
        "--overwrite", action="store_true", help="start afresh over an old run in out_dir"
    )
    return p


def _fail(message: str, status: int = EXIT_REFUSED) -> NoReturn:
    cli_fail(message, status)


def _as_flags(message: str) -> str:
    """A message that starts with a TrainConfig field name, with the field as its flag."""
    names = sorted((f.name for f in dataclasses.fields(TrainConfig)), key=len, reverse=True)
    for name in names:
        if message.startswith(name) and message[len(name) : len(name) + 1] in (" ", ":"):
            rest = message[len(name) :].lstrip(": ")
            return f"--{name.replace('_', '-')}: {rest}"
    return message


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename is None and len(e.args) == 2:
        return e.strerror  # OSError(errno, message): drop the "[Errno N]" prefix
    return str(e)


def main(argv: Sequence[str] | None = None) -> FitResult:
    """CLI entry point: parse ``argv`` into a :class:`~geco_core.train.config.TrainConfig`,
    :func:`~geco_core.train.loop.fit`, print a summary on stderr (rank 0).

    Every refusal is one stderr line ``error: ...`` and ``SystemExit(2)``; a training run
    that fails (disk full, non-finite gradients) exits with 1 (see the module docstring).
    """
    args = vars(_arg_parser().parse_args(argv))
    resume, overwrite = args.pop("resume"), args.pop("overwrite")
    if isinstance(args["kappa"], list) and len(args["kappa"]) == 1:
        args["kappa"] = args["kappa"][0]
    try:
        cfg = TrainConfig(**args)
    except (ValueError, TypeError) as e:
        _fail(_as_flags(str(e)))
    if resume:
        if cfg.out_dir is None:
            _fail("--resume: needs --out-dir, the folder whose checkpoint.pt to continue")
        ckpt_path = Path(cfg.out_dir) / CKPT_NAME
        if not ckpt_path.is_file():
            _fail(f"--resume: no checkpoint at {ckpt_path} to continue (drop --resume to "
                  "start a new run there)")
    try:
        result = fit(cfg, resume=resume, overwrite=overwrite)
    except FloatingPointError as e:
        _fail(str(e), EXIT_FAILED)
    except OSError as e:
        status = EXIT_FAILED if e.errno == errno.ENOSPC else EXIT_REFUSED
        _fail(_as_flags(_message(e)), status)
    except (ValueError, TypeError) as e:
        msg = _as_flags(str(e))
        if resume and (isinstance(e, CheckpointError) or msg.startswith("refusing to resume")):
            msg = f"--resume: {msg}"
        _fail(msg)
    bad = sorted(k for k, v in result.metrics.items()
                 if isinstance(v, float) and not math.isfinite(v))
    if bad:
        _fail(f"training diverged: the final metrics {bad} are not finite (the run's log and "
              f"checkpoint are in {cfg.out_dir}); try a smaller --lr", EXIT_FAILED)
    if result.rank == 0:
        m = result.metrics
        lam = " ".join(f"{k}={m[k]:.4g}" for k in m if k.startswith("lambda"))
        print(
            f"done: step={result.step} kl={m.get('kl', float('nan')):.4g} "
            f"mse={m.get('mse', float('nan')):.4g} {lam} wall={result.wall_time:.1f}s",
            file=sys.stderr,
        )
    return result
