"""Drawing figures in worker processes forked from this one, one per usable core: ``Pending``.

Drawing and saving a figure is pure CPU work in matplotlib, so a report's plots are drawn side by side
in processes forked after matplotlib and the records are loaded: a worker starts at once with everything
imported and the data in memory (a spawned one would import matplotlib again, about a second). A worker
only draws: it never touches torch, even when this process imported it. While the workers draw, this
process goes on with its own work, then draws what they have not started yet.

Results come back in the order of the items. Where fork is unavailable, or only one core is usable, the
jobs run here one after the other: the same calls, the same files. A job that fails in a worker is run
again here, so its error is the one the serial path raises (same type, message and traceback, and the
first failing item in the items' order), never a pool's; a worker that died (killed, out of memory)
costs only a rerun here of what it had not finished.

Nothing is forked while another thread runs in this process (forking a threaded process can deadlock
the child): the jobs then run here, one after the other.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

import matplotlib

from minibatch_core.running.envinfo import cpu_count as usable_cores  # the cores this process may use

T = TypeVar("T")
R = TypeVar("R")

# in a worker: the job and its items, inherited from the parent through fork (never pickled)
_WORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def can_fork() -> bool:
    """Fork is available, and safe here: no other thread runs in this process (a lock another thread
    holds at the fork, e.g. stdout's while it writes, would stay held in the child forever)."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


class Pending(Generic[T, R]):
    """``[job(x) for x in items]`` in two halves: the workers start here and work while the caller goes
    on with other things; ``results()`` joins in, waits for them and returns every result. Call
    ``results()`` (once) or ``close()`` in any case (``finally``), or the workers outlive the call."""

    def __init__(self, job: Callable[[T], R], items: Sequence[T]) -> None:
        self._job, self._items = job, list(items)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []
        workers = min(len(self._items), usable_cores())
        self.workers = 0  # worker processes started; 0: every job runs here, in results()
        if workers < 2 or not can_fork():
            return
        try:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                             initializer=_start_worker, initargs=(job, self._items))
            self._futures = [self._pool.submit(_run, i) for i in range(len(self._items))]
            self.workers = workers
        except Exception:  # no process could be started: every job runs in results()
            self.close()

    def results(self) -> list[R]:
        done: dict[int, R] = {}
        try:
            # this process is a worker too, meanwhile: it takes the jobs no worker has started from the end
            # of the list (the workers take them from the front), so no core idles while jobs are left
            for i in reversed(range(len(self._futures))):
                if not self._futures[i].cancel():
                    break  # started, and so are those before it
                try:
                    done[i] = self._job(self._items[i])
                except Exception:  # raised again below, in the items' order
                    pass
            for i, future in enumerate(self._futures):
                if i in done or future.cancelled():
                    continue
                try:
                    ok, value = future.result()
                except Exception:  # the worker died or its result did not come back: rerun below
                    continue
                if ok:
                    done[i] = value
        finally:
            self.close()
        # in the items' order, so a failing job raises here exactly where the serial path would
        return [done[i] if i in done else self._job(x) for i, x in enumerate(self._items)]

    def close(self) -> None:
        """Stop the workers (what they are drawing is finished) without collecting anything."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._futures = None, []


def _start_worker(job: Callable[[Any], Any], items: Sequence[Any]) -> None:
    global _WORK
    _WORK = (job, items)
    gc.freeze()  # a short-lived process: its collections need not walk (and copy) what the parent left it
    matplotlib.use("Agg")  # files only, as in the parent (plotkit sets it on import)


def _run(i: int) -> tuple[bool, Any]:
    assert _WORK is not None
    job, items = _WORK
    try:
        return True, job(items[i])
    except Exception:  # the parent reruns it to raise the error itself
        return False, None
