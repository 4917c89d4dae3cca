"""Atomic file output: a reader (or a crash) never sees a half-written file, and nothing earlier is
clobbered until the new content is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from minibatch_core.errors import MinibatchError


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


# ---- bounded reading: every reader of a user-given file goes through ``open_checked`` -------------------
# A results file, JSON or TOML larger than this is refused before it is read: runs.csv of a 10,000-run sweep
# of 100 epochs is about 300 MB; a symlink to /dev/zero or a 2 GB file would otherwise exhaust memory.
MAX_RESULTS_BYTES = 512 * 2**20
MAX_SMALL_BYTES = 16 * 2**20  # JSON and TOML settings files
MAX_DATA_BYTES = 2**30  # a user's CSV/Parquet data file; MINIBATCH_MAX_DATA_BYTES overrides it
DATA_LIMIT_ENV = "MINIBATCH_MAX_DATA_BYTES"


class FileRefused(MinibatchError):
    """A file that is not read: not a regular file, too large, or unreadable (one line, for the user)."""


def regular_file(path: str | os.PathLike, *, limit: int, what: str = "file", override: str | None = None) -> Path:
    """``path`` resolved (symlinks followed) and checked: it exists, is a regular file (no device, FIFO,
    socket or folder) and holds at most ``limit`` bytes. Nothing is opened, so a FIFO cannot block."""
    import stat

    given = Path(path)
    try:
        real = given.resolve(strict=True)
        info = os.stat(real)
    except FileNotFoundError:
        raise FileRefused(f"{what} {str(given)!r} does not exist") from None
    except RuntimeError:  # a symlink loop
        raise FileRefused(f"{what} {str(given)!r} is a symlink loop") from None
    except OSError as err:
        raise FileRefused(f"{what} {str(given)!r} cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        via = f" (it points to {real})" if real != given.absolute() else ""
        raise FileRefused(f"{what} {str(given)!r} is {kind}{via}, not a regular file: refused")
    if info.st_size > limit:
        hint = f"; set {override} to a larger number of bytes to allow it" if override else ""
        raise FileRefused(f"{what} {str(given)!r} holds {_size(info.st_size)}, above the limit of {_size(limit)} "
                          f"for such files: refused{hint}")
    return real


def read_bytes_checked(path: str | os.PathLike, *, limit: int = MAX_RESULTS_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (read no further than that, in case it grows)."""
    real = regular_file(path, limit=limit, what=what)
    try:
        with open(real, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as err:
        raise FileRefused(f"{what} {str(path)!r} cannot be read ({err.strerror})") from None
    if len(data) > limit:
        raise FileRefused(f"{what} {str(path)!r} grew above the limit of {_size(limit)} while read: refused")
    return data


def read_text_checked(path: str | os.PathLike, *, limit: int = MAX_SMALL_BYTES, what: str = "file") -> str:
    data = read_bytes_checked(path, limit=limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileRefused(f"{what} {str(path)!r} is not UTF-8 text (undecodable byte at offset {err.start})") \
            from None


def read_json_checked(path: str | os.PathLike, *, what: str = "JSON file",
                      expect: type | tuple[type, ...] | None = dict) -> Any:
    """A JSON file of at most MAX_SMALL_BYTES, whose top level is ``expect`` (a dict unless told)."""
    import json

    text = read_text_checked(path, limit=MAX_SMALL_BYTES, what=what)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise FileRefused(f"{what} {str(path)!r}: unreadable JSON, not valid ({err})") from None
    if expect is not None and not isinstance(value, expect):
        kinds = expect if isinstance(expect, tuple) else (expect,)
        wanted = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in kinds)
        raise FileRefused(f"{what} {str(path)!r} holds a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}, "
                          f"where a JSON {wanted} is expected: refused")
    return value


def read_json_if_present(path: str | os.PathLike, *, what: str = "record",
                         expect: type | tuple[type, ...] | None = None) -> Any:
    """``read_json_checked``, or None where nothing is at ``path`` (an optional record of a results folder);
    a file that is there but unreadable is refused like any other."""
    if not os.path.lexists(path):
        return None
    return read_json_checked(path, what=what, expect=expect)


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def data_limit() -> int:
    """MAX_DATA_BYTES, or the number of bytes MINIBATCH_MAX_DATA_BYTES gives."""
    text = os.environ.get(DATA_LIMIT_ENV, "").strip()
    if not text:
        return MAX_DATA_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise FileRefused(f"{DATA_LIMIT_ENV}={text!r} is not a number of bytes") from None
    if value < 1:
        raise FileRefused(f"{DATA_LIMIT_ENV}={text!r} is not a positive number of bytes")
    return value


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


size_text = _size


# ---- output folders: a command writes only where it may --------------------------------------------------
TOOL = "minibatch-bench"


def out_marker(command: str) -> dict[str, str]:
    """What a command records in its folder's JSON (env.json, study.json) to say it made the folder."""
    return {"tool": TOOL, "command": command}


def claim_out_folder(folder: str | os.PathLike, command: str, *, marker_files: tuple[str, ...],
                     overwrite: bool = False, legacy=None) -> Path:
    """Check that ``command`` may write into ``folder`` (given by ``--out``): a folder that does not exist,
    is empty, or was made by the same command (its ``marker_files`` JSON says so; ``legacy(dict)`` accepts
    older folders without the marker). Anything else, and the root, the home folder and the current folder
    themselves, is refused in one line. With ``overwrite`` a folder of other content is accepted too; the
    caller then removes only its own files (``remove_own_files``) once its plan is checked, and a user's
    other files stay. Returns the folder, not created; nothing is changed here."""
    path = Path(folder)
    shown = str(folder)
    real = path.resolve()
    forbidden = {Path("/").resolve(): "the root folder", Path.home().resolve(): "your home folder",
                 Path.cwd().resolve(): "the current folder itself"}
    if real in forbidden:
        raise MinibatchError(f"--out {shown!r} is {forbidden[real]}: a command never writes its files there; "
                             "give a folder of its own, e.g. --out results/NAME")
    if not os.path.lexists(path):
        return path
    if not path.is_dir():
        raise MinibatchError(f"--out {shown!r} exists and is not a folder")
    try:
        entries = [e.name for e in os.scandir(path)]
    except OSError as err:
        raise MinibatchError(f"--out {shown!r} cannot be read ({err.strerror})") from None
    if not entries:
        return path
    ours = _made_by(path, command, marker_files, legacy)
    if not ours and not overwrite:
        raise MinibatchError(f"--out {shown!r} already holds files that `{TOOL} {command}` did not make "
                             f"({', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}): refusing to "
                             "write there; choose a new or empty folder, or add --overwrite (which replaces only "
                             f"{command}'s own files)")
    return path


def remove_own_files(folder: str | os.PathLike, own_files: tuple[str, ...]) -> None:
    """--overwrite: a command's own files from an earlier result, so none is left to mix with the new one."""
    for name in own_files:
        target = Path(folder) / name
        if target.is_file() or target.is_symlink():
            target.unlink()


def _made_by(path: Path, command: str, marker_files: tuple[str, ...], legacy) -> bool:
    for name in marker_files:
        try:
            record = read_json_checked(path / name, what="record")
        except MinibatchError:
            continue
        if record.get("tool") == TOOL:
            return record.get("command") == command
        if legacy is not None and legacy(record):
            return True
    return False
