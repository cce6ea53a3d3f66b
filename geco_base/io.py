"""The project's one atomic file writer.

:func:`atomic_write` opens a temporary file next to the target; when the ``with`` block ends
normally the file is flushed, fsync'ed and renamed over the target with :func:`os.replace`
(atomic on POSIX), so a reader sees the old file or the new one, never half of one. On any
error — SIGKILL aside, which leaves only the temporary file behind — the temporary file is
removed and the target is untouched; a full disk is reported as
``OSError: no space left on device while writing <path>``.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> with atomic_write(p, "w") as f:
    ...     _ = f.write('{"ok": true}')
    >>> p.read_text()
    '{"ok": true}'
    >>> write_text(p, "x"); p.read_text()
    'x'
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "write_bytes", "write_text"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` atomically when the block succeeds.

    Args:
        path: the target; its folder is created if missing.
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_disk_full(e):
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path}") from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_disk_full(e: BaseException) -> bool:
    # torch.save reports ENOSPC as a RuntimeError from its C++ writer; walk the cause chain.
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e) or "enforce fail at inline_container" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_write(path, "w") as f:
        f.write(text)
