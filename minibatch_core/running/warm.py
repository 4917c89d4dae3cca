"""The warm worker server: fresh worker processes without paying torch's import on every command.

A fresh Python process needs about 2.2 s on a 2-core CPU before it can train at all (torch 1.1 s, and
``torch.optim``'s first optimizer imports ``torch._dynamo``, another 1.1 s), plus scikit-learn's 1.1 s.
The per-command forkserver (``isolation``) pays that on every command. This server pays it once: it
imports everything a run needs, never runs a torch op, and then forks one fresh child per request,
exactly as the forkserver does, so each run still starts from the same clean, never-used state and its
memory is its own. It serves the user who started it, from a socket in a private (0700) folder, and
exits after ``idle_s`` without a request (default 10 minutes).

One server per code and environment: the socket's name is a hash of the interpreter, ``sys.path``, the
package's source files (path, size, mtime), torch's version and the environment variables that change
how torch computes (``OMP_*``, ``CUDA_*`` ...). Editing the code or changing such a variable starts a new
server; an older server for the same package and interpreter is stopped when a new one starts.

Where a server for this code and environment is already running, the CLI hands it whole commands too
(``train``, ``run``, ``report``, ``study``, ``compare``): a child of the server runs the command as this
process would have (folder, environment, argv, umask, CPU affinity, niceness, stdout and stderr), so it
starts with torch and scikit-learn already imported. Where none runs, the command runs here and
its workers start the server.

The CLI's commands use it by default; the Python API (``train()``) only with ``MINIBATCH_BENCH_SERVER=on``.
``MINIBATCH_BENCH_SERVER=off`` turns it off (commands then use the per-command forkserver);
``minibatch-bench server status|stop`` shows or stops the running servers. The server process itself is
``warm_server``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from minibatch_core.errors import MinibatchError

ENV_SWITCH = "MINIBATCH_BENCH_SERVER"  # off / 0 / no / false: no server
ENV_DIR = "MINIBATCH_BENCH_SERVER_DIR"  # where sockets live (default: $XDG_RUNTIME_DIR or /tmp, per user)
ENV_IDLE = "MINIBATCH_BENCH_SERVER_IDLE_S"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 120.0
# variables that change what torch, its thread pools or the interpreter do: a server started under other
# values would run other code or other arithmetic than the caller asked for
_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "BLIS_", "CUDA_", "NCCL_", "NVIDIA_", "TORCH",
                 "PYTORCH_", "PYTHON", "LD_", "MINIBATCH_", "GLOO_", "MASTER_", "TMPDIR")
# what importing scikit-learn sets (os.environ.setdefault) in the process that imports it: the same key
# before and after that import, and the same effect whether the user or scikit-learn set it
_SET_BY_IMPORTS = {("KMP_DUPLICATE_LIB_OK", "True"), ("KMP_INIT_AT_FORK", "FALSE")}
PACKAGE_DIR = Path(__file__).resolve().parent.parent


_for_commands = False


def use_for_commands() -> None:
    """Called by the CLI: its commands use the server unless ``MINIBATCH_BENCH_SERVER=off``. Code using the
    Python API (``train()`` in a script or notebook) uses it only with ``MINIBATCH_BENCH_SERVER=on``: a
    script leaves no process behind unless asked to."""
    global _for_commands
    _for_commands = True


def enabled() -> bool:
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in ("off", "0", "no", "false") or not (switch in ("on", "1", "yes", "true") or _for_commands):
        return False
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds") and hasattr(os, "fork")


def folder() -> Path:
    """The user's private socket folder, created 0700; refused if another user owns it or can write it."""
    base = os.environ.get(ENV_DIR)
    if base:
        where = Path(base)
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        where = (Path(runtime) / "minibatch-bench" if runtime and Path(runtime).is_dir()
                 else Path("/tmp") / f"minibatch-bench-{os.getuid()}")
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = where.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise MinibatchError(f"the warm worker server's folder {where} is not private to this user; remove it "
                             f"or set {ENV_SWITCH}=off")
    return where


@functools.cache
def _installed() -> tuple[tuple, str | None]:
    """The package's source files (path, size, mtime) and torch's version, once per process: the code this
    process runs is the code it found when it first asked (a sweep asks once per run)."""
    from importlib import metadata

    files = tuple(sorted((str(p.relative_to(PACKAGE_DIR)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in PACKAGE_DIR.rglob("*.py")))
    try:
        return files, metadata.version("torch")
    except metadata.PackageNotFoundError:
        return files, None


def _fingerprint() -> dict[str, Any]:
    files, torch_version = _installed()
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)
                 and k not in (ENV_SWITCH, ENV_DIR, ENV_IDLE) and (k, v) not in _SET_BY_IMPORTS)
    return {"python": sys.executable, "version": sys.version, "path": search_path(), "files": files,
            "torch": torch_version, "env": env}


def search_path() -> list[str]:
    """``sys.path`` with the current folder ('' from ``python -c``) spelled out: the server runs elsewhere."""
    return [entry or os.getcwd() for entry in sys.path]


def code_key() -> str:
    """The package's code, interpreter and torch: what tells a server with older code from one that only
    runs under other settings or another ``sys.path`` (a script's folder, ``python -c`` in another cwd)."""
    code = {k: v for k, v in _fingerprint().items() if k in ("python", "version", "files", "torch")}
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()[:16]


def socket_path() -> Path:
    key = hashlib.sha256(json.dumps(_fingerprint()).encode()).hexdigest()[:16]
    return folder() / f"server-{key}.sock"


# --- the client -----------------------------------------------------------------------------------------

def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None


def _start(path: Path) -> subprocess.Popen:
    """A server process for ``path``, detached from this command's session (it outlives the command)."""
    # appended to, never truncated: a server that lost the start to another must not empty that one's log
    log = open(path.with_suffix(".log"), "a")  # noqa: SIM115 - handed to the server, closed here after
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "minibatch_core.running.warm_server", str(path), json.dumps(search_path())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    finally:
        log.close()


def _running(path: Path) -> bool:
    """Whether a server for ``path`` runs or is starting: it holds the key's lock for its whole life. Asked
    of the lock, not the socket: a probing connection would cost the server a fork."""
    try:
        fd = os.open(path.with_suffix(".lock"), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock if it was taken here
    return False


def ensure_started() -> None:
    """Start the server now if none runs, without waiting for it: its imports then run on another core
    while the command checks its input."""
    path = socket_path()
    if not _running(path):
        _start(path)


def _connect_or_start(path: Path) -> socket.socket:
    sock = _connect(path)
    if sock is not None:
        return sock
    proc = _start(path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        code = proc.poll()
        if code not in (None, 0):
            break
        if code == 0 and not _running(path):  # it found the key locked by a server that has exited since
            proc = _start(path)
        time.sleep(0.01)
    log = path.with_suffix(".log")
    last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise RuntimeError(f"the warm worker server did not start ({': '.join(['see ' + str(log), *last])}); "
                       f"{ENV_SWITCH}=off runs without it")


def _send_std_fds(sock: socket.socket) -> None:
    """This process's stdin, stdout and stderr (flushed), as file descriptors a child takes over; a closed
    one is replaced by /dev/null."""
    fds, opened = [], []
    for stream, fallback in ((sys.stdin, 0), (sys.stdout, 1), (sys.stderr, 2)):
        try:
            if stream is not sys.stdin:
                stream.flush()
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # replaced by a capture object: the process's own fd
            fd = fallback
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
            opened.append(fd)
        fds.append(fd)
    try:
        socket.send_fds(sock, [b"r"], fds)
    finally:
        for fd in opened:
            os.close(fd)


def context() -> dict[str, Any]:
    """What a child of the server takes over from the caller, so that it runs as the caller would have:
    folder, environment, argv, umask, the CPUs it may use (``taskset``) and its niceness."""
    umask = os.umask(0)
    os.umask(umask)
    return {"cwd": os.getcwd(), "env": dict(os.environ), "argv": list(sys.argv), "umask": umask,
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "nice": os.nice(0) if hasattr(os, "nice") else None}


class ServerGone(RuntimeError):
    """The server closed the connection before forking a child for it (it was exiting, idle): nothing ran."""


def call(fn: Callable[..., Any], args: tuple, *, sock: socket.socket | None = None,
         forward_interrupt: bool = False) -> tuple[str, Any]:
    """``fn(*args)`` in a fresh child of the server: its printed output goes to this process's stdout and
    stderr, and ``(status, payload)`` comes back as ``isolation._child`` sends it. Ctrl-C here ends the
    child (SIGTERM), or with ``forward_interrupt`` is passed on to it as SIGINT (a second one ends it).
    Without ``sock``, a server that was exiting as this connected is replaced and asked again, once."""
    if sock is not None:
        return _call(sock, fn, args, forward_interrupt)
    try:
        return _call(_connect_or_start(socket_path()), fn, args, forward_interrupt)
    except ServerGone:
        return _call(_connect_or_start(socket_path()), fn, args, forward_interrupt)


def _call(sock: socket.socket, fn: Callable[..., Any], args: tuple, forward_interrupt: bool) -> tuple[str, Any]:
    child_pid = None
    interrupted = False
    try:
        _send_std_fds(sock)
        conn = Connection(sock.detach())
    except OSError:
        sock.close()
        raise ServerGone from None
    try:
        conn.send((context(), fn, args, os.getpid()))
        _, child_pid = conn.recv()
        while True:
            try:
                return conn.recv()
            except KeyboardInterrupt:
                if not (forward_interrupt and not interrupted):
                    raise
                interrupted = True
                os.kill(child_pid, signal.SIGINT)
    except (EOFError, OSError):
        if child_pid is None:
            raise ServerGone from None
        raise RuntimeError("worker process died (the warm worker server's child ended without a result)") \
            from None
    except KeyboardInterrupt:
        if child_pid:
            with contextlib.suppress(OSError):
                os.kill(child_pid, signal.SIGTERM)
        raise
    finally:
        conn.close()


def answering() -> socket.socket | None:
    """A connection to a running server for this code and environment; None where none runs (or it is off)."""
    if not enabled():
        return None
    try:
        return _connect(socket_path())
    except (OSError, MinibatchError):
        return None


# --- the running servers, for status and stop ---------------------------------------------------------------

def record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def servers() -> list[dict[str, Any]]:
    """The servers recorded in this user's folder that are still running."""
    out = []
    for record in sorted(folder().glob("server-*.json")):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if _is_server(info.get("pid")):
            out.append({**info, "socket": str(record.with_suffix(".sock"))})
    return out


def _is_server(pid: Any) -> bool:
    """Whether ``pid`` is a warm server now (not a process that got a dead server's pid)."""
    import psutil

    try:
        return "minibatch_core.running.warm_server" in psutil.Process(int(pid)).cmdline()
    except (psutil.Error, ValueError, TypeError):
        return False


def stop(which: list[dict[str, Any]] | None = None, *, wait_s: float = 5.0) -> int:
    """SIGTERM to the given (default: every) running server, then up to ``wait_s`` for them to be gone (their
    socket and lock released: a command started next starts a new server); returns how many were stopped.
    Children running a run finish it."""
    import psutil

    procs = []
    for info in servers() if which is None else which:
        with contextlib.suppress(OSError, psutil.Error):
            proc = psutil.Process(int(info["pid"]))
            proc.terminate()
            procs.append(proc)
    if wait_s:
        psutil.wait_procs(procs, timeout=wait_s)
    return len(procs)
