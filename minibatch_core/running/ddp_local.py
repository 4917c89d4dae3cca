"""The local launch of a distributed (ddp) run: this process hosts the rendezvous store (a ``TCPStore`` on
a free port, or on ``MASTER_PORT`` when the user set it), starts W fresh ranks from the same clean forkserver
the single-process runs use, and only supervises. Every rank runs the same function (SPMD); rank 0's result
comes back. A rank that dies (killed, crashed) is seen at once through its process sentinel, the others are
stopped, and the run fails with one line. Collectives time out after ``timeout_s`` (a hung peer), and every
rank kills itself when the supervising process goes (a lifeline pipe), so no worker outlives the command,
even one killed with -9.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any

import torch.distributed as dist

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.devices import resolve_device
from minibatch_core.running.distributed import (
    DistributedOptions,
    WorkerFailed,
    join_group,
    leave_group,
    share_cores,
)
from minibatch_core.running.isolation import main_module_hidden, worker_context

GRACE_S = 5.0  # for the other ranks to report after a failure, and to exit after terminate()


def _follow_supervisor(lifeline) -> None:
    """End this rank when the supervising command ends, however it ends (even SIGKILL): the only write
    end of ``lifeline`` is in the supervisor, so its death is EOF here. (The forkserver's own liveness
    cannot serve: by design it lives as long as any process it forked.)"""
    def watch() -> None:
        try:
            lifeline.recv_bytes()
        except (EOFError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="ddp-lifeline", daemon=True).start()


def _rank_main(rank: int, host: str, port: int, backend: str, timeout_s: float, conn, lifeline,
               fn: Callable[..., Any], args: tuple) -> None:
    _follow_supervisor(lifeline)
    config: RunConfig = args[0]
    share_cores(config, config.workers)
    try:
        store = dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s))
        # one process per GPU: rank r on cuda:r (W=1 keeps the GPU the user named)
        local = (resolve_device(config.device).index or 0) if config.workers == 1 else rank
        join_group(backend, rank, config.workers, local, timeout_s, store)
        result = fn(*args)  # every rank: the same loop
        conn.send(("ok", result if rank == 0 else None))
    except MinibatchError as err:
        conn.send(("user-error", str(err)))
    except BaseException as err:  # noqa: BLE001 - reported to the supervisor with its traceback
        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        conn.close()
        leave_group()


def _host_store(timeout_s: float) -> tuple[dist.TCPStore, str]:
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port_text = os.environ.get("MASTER_PORT", "0")
    try:
        port = int(port_text)
    except ValueError:
        raise MinibatchError(f"MASTER_PORT {port_text!r} is not a port number") from None
    try:
        store = dist.TCPStore(host, port, is_master=True, wait_for_workers=False,
                              timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, OSError) as err:
        if port and "in use" in str(err).lower():
            raise MinibatchError(f"port {port} on {host} (MASTER_PORT) is already in use: free it, or unset "
                                 "MASTER_PORT to let the run pick a free port") from None
        what = f"port {port} on {host} (MASTER_PORT)" if port else f"a free port on {host}"
        raise MinibatchError(f"cannot listen on {what}: {str(err).splitlines()[0]}") from None
    return store, host


def launch_local(fn: Callable[..., Any], args: tuple, config: RunConfig, backend: str,
                  options: DistributedOptions) -> Any:
    store, host = _host_store(options.timeout_s)
    ctx = worker_context()
    procs, pipes, lifelines = [], [], []
    try:
        with main_module_hidden():
            for rank in range(config.workers):
                reader, writer = ctx.Pipe(duplex=False)
                life_r, life_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_rank_main, name=f"ddp-rank-{rank}", daemon=True,
                                   args=(rank, host, store.port, backend, options.timeout_s, writer, life_r,
                                         fn, args))
                proc.start()
                writer.close()
                life_r.close()
                procs.append(proc)
                pipes.append(reader)
                lifelines.append(life_w)
        return _supervise(procs, pipes, options.timeout_s)
    finally:
        _stop(procs)
        for pipe in pipes + lifelines:
            pipe.close()
        del store


def _supervise(procs: list, pipes: list, timeout_s: float) -> Any:
    """Wait for rank 0's result; any rank that dies or fails first stops the run."""
    reports: dict[int, tuple[str, Any]] = {}

    def collect(timeout: float | None) -> None:
        waiting = {**{pipes[r]: r for r in range(len(procs)) if r not in reports},
                   **{procs[r].sentinel: r for r in range(len(procs)) if r not in reports}}
        for ready in wait(list(waiting), timeout):
            rank = waiting[ready]
            if rank in reports:
                continue
            if pipes[rank].poll():
                try:
                    reports[rank] = pipes[rank].recv()
                    continue
                except EOFError:
                    pass
            procs[rank].join(1.0)
            reports[rank] = ("died", procs[rank].exitcode)

    while 0 not in reports and all(status == "ok" for status, _ in reports.values()):
        collect(None)
    status, payload = reports[0] if 0 in reports else ("pending", None)
    if status == "ok":
        for proc in procs[1:]:
            proc.join(GRACE_S)  # the other ranks end their same loop at about the same time
        return payload
    # every rank runs the same checks (SPMD): whichever rank refused the input first says why
    refusals = [text for _, (kind, text) in sorted(reports.items()) if kind == "user-error"]
    if refusals:
        raise MinibatchError(refusals[0])
    # an error is often the echo of a peer's death (gloo: "connection closed by peer"): give the other
    # ranks a moment to report, so the message names the root cause
    if not any(status == "died" for status, _ in reports.values()):
        started = time.monotonic()
        while len(reports) < len(procs) and time.monotonic() - started < GRACE_S:
            collect(GRACE_S - (time.monotonic() - started))
    raise WorkerFailed(_failure_line(procs, reports, timeout_s))


def _failure_line(procs: list, reports: dict[int, tuple[str, Any]], timeout_s: float) -> str:
    """The root cause in one line: a rank that died, else one that stopped answering (the others' errors
    are then its echo: a timed-out or closed connection), else the first rank's own error."""
    others = len(procs) - 1
    for rank, (status, code) in sorted(reports.items()):
        if status == "died":
            how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exit status {code}")
            return (f"ddp worker rank {rank} (pid {procs[rank].pid}) died ({how}) during the run; the run "
                    f"was stopped and its other {others} worker(s) ended")
    silent = [rank for rank in range(len(procs)) if rank not in reports]
    if silent:
        rank = silent[0]
        return (f"ddp worker rank {rank} (pid {procs[rank].pid}) stopped responding: the others' collectives "
                f"timed out after {timeout_s:g} s; the run was stopped and its workers ended")
    for rank, (status, text) in sorted(reports.items()):
        if status == "error":
            print(text, file=sys.stderr)
            return f"ddp worker rank {rank} failed: {text.splitlines()[0]}"
    return "ddp run failed without a report from its workers"


def _stop(procs: list) -> None:
    """No rank outlives the run: terminate what is left, then kill what ignores it."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(GRACE_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
