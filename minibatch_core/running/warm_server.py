"""The warm worker server process (``python -m minibatch_core.running.warm_server SOCKET SYS_PATH``).

What it is and why: see ``warm``. Its life: take the key's lock (one server per key), bind the socket (so
callers queue while it imports), record itself and stop the servers with older code, import what runs
need, then fork one child per request. It exits after ``idle_s`` without requests or children, when its
socket is removed or replaced, or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback
from importlib import import_module
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from minibatch_core.running import warm
from minibatch_core.running.isolation import process_gone

TICK_S = 1.0


def _peer(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end; None where the platform does not tell (not Linux)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None  # the 0700 folder is the guard there
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


class Owners:
    """Which caller each running child serves. A child whose caller is gone (killed: no one will read its
    result) is ended by the server, so the child itself needs no watching thread: a command handed over
    whole may then fork its own helpers (the report's plot workers) from a single-threaded process."""

    def __init__(self) -> None:
        import psutil  # preloaded with the runs' modules

        self._psutil = psutil
        self.children: dict[int, Any] = {}  # child pid -> its caller's psutil.Process (None: not known)

    def add(self, child: int, caller_pid: int | None) -> None:
        try:
            self.children[child] = self._psutil.Process(caller_pid) if caller_pid else None
        except self._psutil.NoSuchProcess:
            self.children[child] = None
            _end(child)

    def check(self) -> None:
        for child, caller in list(self.children.items()):
            if os.waitpid(child, os.WNOHANG) != (0, 0):
                del self.children[child]
            elif caller is not None and process_gone(caller):
                _end(child)


def _end(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)


def _take_over(ctx: dict[str, Any]) -> None:
    """Become the caller's process as far as a run can tell: folder, environment, argv, umask, CPUs, nice."""
    os.chdir(ctx["cwd"])
    os.environ.clear()
    os.environ.update(ctx["env"])
    sys.argv[:] = ctx["argv"]
    os.umask(ctx["umask"])
    if ctx.get("affinity") and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, ctx["affinity"])
    if ctx.get("nice") is not None and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(max(0, ctx["nice"] - os.nice(0)))  # only ever lower the priority, as the caller's is


def _serve_one(conn: socket.socket, watched: bool) -> None:
    """In the forked child: take over the caller's stdin, stdout, stderr and context, run, report back."""
    from minibatch_core.running.isolation import _child

    _, fds, _, _ = socket.recv_fds(conn, 16, 3)
    for target, fd in zip((0, 1, 2), fds, strict=False):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):  # the server's were a log file: block-buffered
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=stream.isatty())
    channel = Connection(conn.detach())
    ctx, fn, args, owner = channel.recv()
    _take_over(ctx)
    channel.send(("pid", os.getpid()))
    # the server ends this child if its caller dies (``Owners``); only where it cannot tell who the
    # caller is does the child watch the caller itself
    _child(channel, fn, args, None if watched else owner, None)
    sys.stdout.flush()
    sys.stderr.flush()


def _announce(path: Path) -> dict[str, Any]:
    """Record this server (for status and stop) and stop the servers it supersedes: same interpreter and
    package, other code. Servers for the same code under another environment keep running."""
    mine = {"pid": os.getpid(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": sys.executable, "package": str(warm.PACKAGE_DIR), "code": warm.code_key()}
    warm.stop([s for s in warm.servers() if (s.get("python"), s.get("package")) == (mine["python"], mine["package"])
               and s.get("code") != mine["code"]], wait_s=0)
    mine["requests"] = 0
    _write_record(path, mine)
    return mine


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Replaced whole (a reader never sees half of it); not fsynced: it only says what runs now."""
    tmp = warm.record_path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, warm.record_path(path))


def _preload() -> None:
    """Exactly what a command's forkserver preloads (``isolation``), so that a run forked from here starts
    from the same state as one forked there: its memory figures then agree. Importing more (pandas,
    matplotlib for the commands) was measured to change them: reference at batch 32 grew 48 KiB instead of
    120 KiB, the allocator finding free pages the imports had left. Imports only, never a torch op."""
    from minibatch_core.engines import engine_module, engine_names
    from minibatch_core.running.isolation import PRELOAD_LAST

    for module in [*(engine_module(n) for n in engine_names()), PRELOAD_LAST]:
        import_module(module)


def _accept_loop(listener: socket.socket, path: Path, inode: int, idle_s: float, lock, mine: dict) -> None:
    owners = Owners()
    listener.settimeout(TICK_S)
    last = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            conn = None
        owners.check()
        if conn is None:
            if owners.children:
                last = time.monotonic()  # a run in progress is not idleness
            replaced = not path.exists() or path.stat().st_ino != inode
            if replaced or time.monotonic() - last > idle_s:
                return
            continue
        last = time.monotonic()
        peer = _peer(conn)
        if peer is not None and peer[1] != os.getuid():
            conn.close()
            continue
        mine["requests"] += 1  # for `server status`; written before the fork, so never during a run
        with contextlib.suppress(OSError):
            _write_record(path, mine)
        pid = os.fork()
        if pid == 0:
            listener.close()
            lock.close()  # the server's lock must end with the server, not with a long run
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a caller passes its Ctrl-C on
            try:
                _serve_one(conn, watched=peer is not None)
            except BaseException:  # noqa: BLE001 - before a result channel exists: the caller sees EOF
                traceback.print_exc()  # into the caller's stderr once taken over, else the server's log
            finally:
                os._exit(0)
        conn.close()
        owners.add(pid, peer[0] if peer else None)


def serve(path: Path, idle_s: float) -> int:
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another server for this key is starting or running
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead server's socket
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound before the imports: callers queue instead of polling
    listener.listen(64)
    inode = path.stat().st_ino
    try:
        mine = _announce(path)
        _preload()
        _accept_loop(listener, path, inode, idle_s, lock, mine)
    finally:
        with contextlib.suppress(OSError):
            if path.stat().st_ino == inode:  # still ours: not yet replaced by a newer server's
                # the lock file stays: a server starting now may already hold it open
                for leftover in (path, warm.record_path(path), path.with_suffix(".log")):
                    leftover.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    path, search_path = Path(argv[0]), json.loads(argv[1])
    sys.path[:] = search_path  # the caller's: the same package and dependencies resolve here
    os.chdir("/")  # holds no caller's folder open; each child moves to its caller's
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # detached; a terminal's Ctrl-C is for the command
    return serve(path, float(os.environ.get(warm.ENV_IDLE, warm.DEFAULT_IDLE_S)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
