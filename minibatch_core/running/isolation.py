"""Run a function in a fresh worker process, so one run's memory cannot pollute the next.

Workers are forked from this command's ``forkserver``, which has imported the package (and torch) once but
never run a torch op or touched CUDA: each run starts from the same clean state in milliseconds instead of
the seconds a ``spawn`` re-import costs. The forkserver is a child of the command and ends with it.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import multiprocessing.util
import os
import shutil
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import Any

from minibatch_core.engines import engine_module, engine_names
from minibatch_core.errors import MinibatchError

# Imported last by the forkserver: the common imports, then gc.freeze() over everything imported before.
PRELOAD_LAST = "minibatch_core.running.preload"


# What a worker needs to load its own data (bundled sets, synthetic data, scaling)
DATA_MODULES = ("sklearn.datasets", "sklearn.preprocessing")


def worker_context(engines: Iterable[str] | None = None, *, load_data: bool = True) -> BaseContext:
    """The start method's context. The forkserver (one per process, started on first use) preloads the
    modules of ``engines`` (default: every registered engine), scikit-learn's datasets unless the caller
    hands its workers their data (``load_data=False``), and the common imports."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        names = engine_names() if engines is None else list(engines)
        data = DATA_MODULES if load_data else ()
        ctx.set_forkserver_preload([*(engine_module(n) for n in names), *data, PRELOAD_LAST])
    return ctx


def start_workers(engines: Iterable[str] | None = None, *, load_data: bool = True) -> None:
    """Start the worker forkserver now, without waiting for it: its imports (torch, scikit-learn, the
    engines: seconds) then run on another core while this process parses and checks its input. Only the
    first call in a process has an effect, and only where the start method is forkserver; a later
    ``run_isolated`` uses the server started here. ``load_data=False``: this process loads the data and
    hands it to the workers (``train``), so they need not import scikit-learn's datasets."""
    ctx = worker_context(engines, load_data=load_data)
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver, resource_tracker

    import psutil

    # The server is told apart from the resource tracker by being the one new child, not by its command
    # line: that reads empty until the kernel has finished exec'ing it, which a quick exit can beat.
    resource_tracker.ensure_running()
    before = {child.pid for child in psutil.Process().children()}
    with main_module_hidden():  # the server imports the caller's __main__ too, see below
        forkserver.ensure_running()
    _SERVERS.extend(child for child in psutil.Process().children() if child.pid not in before)
    atexit.unregister(_end_forkservers)  # once, however often this runs
    atexit.register(_end_forkservers)


_SERVERS: list = []  # the forkservers start_workers started (psutil.Process: safe against a reused pid)


def _end_forkservers() -> None:
    """At this command's exit, its forkserver serves no one: end it now. One still importing (a command
    that refused its input right after starting it) would notice the exit only once its imports were done,
    seconds later, holding the command's stdout and stderr until then."""
    import psutil

    reap_workers()  # first: a worker's exit is reported through its server
    for server in _SERVERS:
        try:
            server.terminate()
        except psutil.Error:  # gone meanwhile
            pass


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """multiprocessing re-imports the caller's ``__main__`` in every non-fork child. For a user's
    script without an ``if __name__ == "__main__"`` guard that would train again inside the worker
    (or fail outright for code read from stdin or a notebook). The worker needs nothing from
    ``__main__`` (its target lives in this package), so a bare stand-in is shown while it starts."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


ORPHAN_POLL_S = 0.5


def _orphaned(temp_dir: str | None) -> None:
    """The sweep that started this worker is gone (killed: no one will read the result). Remove the
    multiprocessing temp folder its own exit handler would have removed, and leave without a word."""
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)
    os._exit(0)


def _watch_parent(owner_pid: int | None, temp_dir: str | None) -> None:
    """A daemon thread that ends this worker once the process that asked for it is gone. Not getppid():
    under forkserver the parent is the fork server, which outlives the sweep while this worker holds its
    "alive" pipe. psutil compares start times, so a recycled pid is not mistaken for the sweep; a killed
    sweep not yet reaped by its shell is a zombie, which counts as gone."""
    import psutil

    if owner_pid is None:
        return
    try:
        owner = psutil.Process(owner_pid)
    except psutil.NoSuchProcess:
        _orphaned(temp_dir)

    def watch() -> None:
        while not process_gone(owner):
            time.sleep(ORPHAN_POLL_S)
        _orphaned(temp_dir)

    threading.Thread(target=watch, name="minibatch-orphan-watch", daemon=True).start()


def process_gone(proc) -> bool:
    """Whether a ``psutil.Process`` has ended: exited, or a zombie not yet reaped (a killed command whose
    shell has not waited for it yet). psutil compares start times, so a recycled pid does not count."""
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _send(conn, message: tuple, temp_dir: str | None) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError):  # the reader is gone: nothing to report to
        _orphaned(temp_dir)


def _child(conn, fn: Callable[..., Any], args: tuple, owner_pid: int | None = None,
           temp_dir: str | None = None) -> None:
    _watch_parent(owner_pid, temp_dir)
    try:
        _send(conn, ("ok", fn(*args)), temp_dir)
    except MinibatchError as err:
        _send(conn, ("user-error", str(err)), temp_dir)
    except BaseException as err:  # noqa: BLE001 - everything else is reported with its traceback
        _send(conn, ("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"), temp_dir)
    finally:
        conn.close()


# Workers that have sent their result and are exiting. Tearing down a worker's copy of the forkserver's
# address space (about 450 MB with torch and scikit-learn) takes about 7 ms of kernel time, 30 times in the
# default sweep: the command records the run meanwhile and reaps the worker before it starts the next one,
# so no exit overlaps another run, and none outlives this process (reaped at its exit too).
_EXITING: list = []


def reap_workers() -> None:
    """Wait for the workers that have sent their result to be gone."""
    while _EXITING:
        _EXITING.pop().join()


atexit.register(reap_workers)


def run_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh process, a child of this command's forkserver; its result (picklable) or its
    exception comes back. The worker may still be exiting when this returns (``reap_workers``)."""
    reap_workers()
    ctx = worker_context()
    parent, child = ctx.Pipe(duplex=False)
    # the pymp-* folder multiprocessing keeps this process's sockets in (created here if not yet): the
    # worker removes it if this process is killed before its exit handler can
    temp_dir = mp.util.get_temp_dir()
    proc = ctx.Process(target=_child, args=(child, fn, args, os.getpid(), temp_dir), daemon=True)
    with main_module_hidden():
        proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"training worker died (exit code {proc.exitcode})") from None
    except KeyboardInterrupt:
        proc.terminate()
        proc.join()
        raise
    finally:
        parent.close()
    _EXITING.append(proc)
    return _outcome(status, payload)


def _outcome(status: str, payload: Any) -> Any:
    if status == "ok":
        return payload
    if status == "user-error":
        raise MinibatchError(payload)
    print(payload, file=sys.stderr)
    raise RuntimeError(payload.splitlines()[0])
