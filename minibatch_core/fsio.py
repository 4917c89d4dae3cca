"""Atomic file output: a reader (or a crash) never sees a half-written file, and nothing earlier is
clobbered until the new content is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), binary=True)


def atomic_write_csv(path: str | os.PathLike, frame) -> Path:
    """A pandas DataFrame as CSV, without the index."""
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False))


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (created first where absent), or None when they can.
    Asks the file system itself (a probe file in the nearest existing ancestor) rather than permission
    bits, which say nothing under root, on read-only mounts or in /proc. Leaves nothing behind."""
    path = Path(folder)
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder" if existing == path else f"{existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".minibatch-probe.", dir=existing)
    except OSError as err:
        return f"cannot create files in {existing} ({err.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be written as a file (its folder created where absent), or None."""
    target = Path(path)
    if target.is_dir():
        return f"{target} is a folder"
    return folder_problem(target.parent)
