"""Run a function in a fresh worker process, so one run's memory cannot pollute the next.

Workers are forked from a ``forkserver`` that has imported the package (and torch) once but never run
a torch op or touched CUDA: each run starts from the same clean state in milliseconds instead of the
seconds a ``spawn`` re-import costs.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from minibatch_core.engines import engine_module, engine_names
from minibatch_core.errors import MinibatchError

# Imported last by the forkserver: the common imports, then gc.freeze() over everything imported before.
_PRELOAD_LAST = "minibatch_core.running.preload"


def _context(engines: Iterable[str] | None = None):
    """The start method's context. The forkserver (one per process, started on first use) preloads the
    modules of ``engines`` (default: every registered engine) plus the common imports."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        names = engine_names() if engines is None else list(engines)
        ctx.set_forkserver_preload([*(engine_module(n) for n in names), _PRELOAD_LAST])
    return ctx


def start_workers(engines: Iterable[str] | None = None) -> None:
    """Start the worker forkserver now, without waiting for it: its imports (torch, scikit-learn, the
    engines: seconds) then run on another core while this process parses and checks its input. Only the
    first call in a process has an effect, and only where the start method is forkserver; a later
    ``run_isolated`` uses the server started here."""
    ctx = _context(engines)
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    with _main_module_hidden():  # the server imports the caller's __main__ too, see below
        forkserver.ensure_running()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
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


def _child(conn, fn: Callable[..., Any], args: tuple) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except MinibatchError as err:
        conn.send(("user-error", str(err)))
    except BaseException as err:  # noqa: BLE001 - everything else is reported with its traceback
        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh process; its result (picklable) or its exception comes back."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    with _main_module_hidden():
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
    proc.join()
    if status == "ok":
        return payload
    if status == "user-error":
        raise MinibatchError(payload)
    print(payload, file=sys.stderr)
    raise RuntimeError(payload.splitlines()[0])
