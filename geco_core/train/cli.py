"""``python -m geco_core.train``: one flag per :class:`~geco_core.train.config.TrainConfig` field.

The defaults are the paper's (§4.1: Adam at :data:`~geco_core.train.config.PAPER_LR`, GECO's
α = 0.99, ν = 1); a short CPU run wants e.g. ``--lr 1e-3 --alpha 0.9`` (the book's cpu policy,
:mod:`geco_book.policy`). ``torchrun --nproc_per_node=N -m geco_core.train ...`` trains with
DistributedDataParallel; only rank 0 prints the summary.

CLI example (the paper's Figure 3 setting, scaled down to minutes on a CPU)::

    python -m geco_core.train --model convdraw --dataset mnist-rotate --objective geco \\
        --constraint re --kappa 0.1 --steps 2000 --lr 1e-3 --alpha 0.9 --out runs/rotate-geco

Example:
    >>> args = _arg_parser().parse_args(["--kappa", "0.1", "0.2", "--constraint", "re,pncc",
    ...                                  "--model-kwargs", "latent_dim=2", "--download", "no"])
    >>> args.kappa, args.model_kwargs, args.download, args.lr, args.alpha
    ([0.1, 0.2], {'latent_dim': 2}, False, None, 0.99)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from geco_core.models import MODEL_SIZES, MODELS
from geco_core.objectives import OBJECTIVES
from geco_core.train.config import PAPER_LR, FitResult, TrainConfig
from geco_core.train.loop import fit

__all__ = ["main"]


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
    """
    s = s.strip()
    if s.startswith("{"):
        return json.loads(s)
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def _paper_lrs() -> str:
    return ", ".join(f"{m} {lr:g}" for m, lr in PAPER_LR.items())


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m geco_core.train",
        description=(
            "Train a VAE with ELBO, GECO, the GQN-annealed β or a fixed-β β-VAE. The defaults "
            "are the paper's (§4.1): Adam at the paper's learning rate, GECO's α = 0.99, ν = 1, "
            "tuned for 10⁵–10⁶ steps; short CPU runs want e.g. --lr 1e-3 --alpha 0.9 (the "
            "book's cpu policy, geco_book.policy)."
        ),
    )
    helps = {
        "model": f"one of {', '.join(MODELS)}",
        "model_size": f"one of {', '.join(MODEL_SIZES)} (default small)",
        "objective": f"one of {', '.join(OBJECTIVES)}",
        "constraint": "GECO constraint name(s), comma-separated",
        "kappa": "tolerance(s) κ > 0, one per constraint",
        "lr": f"Adam learning rate (default: the paper's, §4.1: {_paper_lrs()}; "
        "short CPU runs: e.g. 1e-3)",
        "alpha": "GECO's moving-average slowness α (default: the paper's 0.99; short CPU runs: "
        "e.g. 0.9)",
        "nu": "GECO's multiplier step ν (default 1.0)",
    }
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": helps.get(f.name)}
        if f.name == "kappa":
            p.add_argument(flag, type=float, nargs="+", **kw)
        elif f.name == "download":
            p.add_argument(flag, type=_parse_bool, **kw)
        elif f.name.endswith("_kwargs"):
            p.add_argument(flag, type=_parse_mapping, **kw)
        elif f.name == "out_dir":
            p.add_argument(flag, "--out", type=str, **kw)
        elif str(f.type).startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif str(f.type).startswith("float"):  # "float" and "float | None"
            p.add_argument(flag, type=float, **kw)
        elif str(f.type).startswith("int"):
            p.add_argument(flag, type=int, **kw)
        else:
            p.add_argument(flag, type=str, **kw)
    p.add_argument("--resume", action="store_true", help="continue out_dir/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an old run")
    return p


def main(argv: Sequence[str] | None = None) -> FitResult:
    """CLI entry point: parse ``argv`` into a :class:`~geco_core.train.config.TrainConfig`,
    :func:`~geco_core.train.loop.fit`, print a summary on stderr (rank 0)."""
    args = vars(_arg_parser().parse_args(argv))
    resume, overwrite = args.pop("resume"), args.pop("overwrite")
    if isinstance(args["kappa"], list) and len(args["kappa"]) == 1:
        args["kappa"] = args["kappa"][0]
    cfg = TrainConfig(**args)
    result = fit(cfg, resume=resume, overwrite=overwrite)
    if result.rank == 0:
        m = result.metrics
        lam = " ".join(f"{k}={m[k]:.4g}" for k in m if k.startswith("lambda"))
        print(
            f"done: step={result.step} kl={m.get('kl', float('nan')):.4g} "
            f"mse={m.get('mse', float('nan')):.4g} {lam} wall={result.wall_time:.1f}s",
            file=sys.stderr,
        )
    return result
