"""What makes a stored run's record trustworthy, checked each time it is read or written.

- :func:`canonical` / :func:`sha256_bytes`: the canonical JSON and the digest that keys,
  logs and evaluations are checksummed with;
- :func:`final_mismatch`: a record's ``final`` metrics and ``step`` must be its checksummed
  log's last row (an edited number, or a log cut short and re-hashed, is damage);
- :func:`check_complete_log`: only a log that is one whole run is recorded;
- :func:`evaluation_sha` / :func:`read_evaluation`: a cached evaluation holds the sha256 of
  its content and is refused, naming its file, when edited or unreadable.

Example:
    >>> expected_log_steps(10, 4)
    [0, 3, 7, 9]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["canonical", "check_complete_log", "evaluation_sha", "expected_log_steps",
           "final_mismatch", "read_evaluation", "sha256_bytes"]


def evaluation_sha(entry: Mapping[str, Any]) -> str:
    """The sha256 of an evaluation entry's content (everything but its own ``sha256``)."""
    return sha256_bytes(canonical({k: v for k, v in entry.items() if k != "sha256"}).encode())


def read_evaluation(path: Path) -> dict[str, Any]:
    """A cached evaluation entry, refused (one line naming the file) when it is unreadable or
    its content does not match its ``sha256`` (an edited or truncated file)."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: unreadable evaluation ({type(e).__name__}); delete it to "
                         "recompute it") from None
    if isinstance(entry, dict) and "sha256" not in entry:
        raise ValueError(f"{path}: holds no sha256 (written before the store checksummed "
                         "evaluations, or edited); delete it to recompute it")
    if not isinstance(entry, dict) or entry.get("sha256") != evaluation_sha(entry):
        raise ValueError(f"{path}: its content does not match the sha256 it holds (an edited "
                         "evaluation); delete it to recompute it")
    return entry


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def final_mismatch(record: Mapping[str, Any], log: bytes) -> str | None:
    """Why a record's ``final`` and ``step`` are not its log's last row (the log is
    checksummed, the record's numbers are checked against it), or None."""
    lines = log.splitlines()
    try:
        last = json.loads(lines[-1]) if lines else None
    except ValueError:
        last = None
    if not isinstance(last, dict) or not isinstance(last.get("step"), (int, float)):
        return "metrics.jsonl has no readable last row"
    final = record.get("final")
    if not isinstance(final, dict) or final != last:
        return "its final metrics are not the last row of metrics.jsonl (an edited record)"
    if record.get("step") != int(last["step"]) + 1:
        return (f"its step {record.get('step')!r} is not the log's last step + 1 "
                f"({int(last['step']) + 1}; an edited or truncated record)")
    return None


def expected_log_steps(steps: int, log_every: int) -> list[int]:
    """The steps the engine logs in a run of ``steps``: 0, every ``log_every``-th step
    (t + 1 divisible by it) and the last.

    """
    return sorted({0, steps - 1} | {t for t in range(log_every - 1, steps, log_every)})


def check_complete_log(log: bytes, cfg: Any, step: int, path: Path) -> None:
    """Refuse to record a log that is not one whole run: every logged step once, in order,
    up to the last (a log written by two processes at once, or cut short, is not)."""
    try:
        steps = [int(json.loads(line)["step"]) for line in log.decode().splitlines() if line]
    except (ValueError, KeyError) as e:
        raise RuntimeError(f"{path}: not a readable training log ({e}); nothing recorded") from e
    want = expected_log_steps(step, int(cfg.log_every))
    if step != int(cfg.steps) or steps != want:
        raise RuntimeError(
            f"{path}: the log holds {len(steps)} rows (steps {steps[:2]}…{steps[-2:]}), a whole "
            f"run of {cfg.steps} steps logs {len(want)}; nothing was recorded: delete "
            f"{path.parent} and train again"
        )
