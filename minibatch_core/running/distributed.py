"""Launch a distributed (ddp) run: W local worker processes, or join a ``torchrun`` job.

Local (default): this process hosts the rendezvous store (a ``TCPStore`` on a free port, or on
``MASTER_PORT`` when the user set it) and starts W fresh processes from the same clean forkserver the
single-process runs use. Rank 0 runs the trainer's measurement (its clock, its memory probe); ranks
1..W-1 follow it (``engines.ddp.serve``). This process only supervises: a rank that dies (killed, crashed)
is seen at once through its process sentinel, the others are stopped, and the run fails with one line.
Collectives time out after ``timeout_s`` (a hung peer), and every rank kills itself when the
supervising process goes (a lifeline pipe), so no worker outlives the command, even one killed with -9.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` set) this process *is* one rank: it
joins the job's group; rank 0 returns the results, the other ranks serve and then exit with status 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any

import torch
import torch.distributed as dist

from minibatch_core.engines import ddp, ddp_group
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.devices import BACKENDS, resolve_device
from minibatch_core.running.envinfo import cpu_count
from minibatch_core.running.isolation import _context, _main_module_hidden
from minibatch_core.running.measure import MemoryProbe

CONTROL_TIMEOUT_S = 600.0  # a follower waits this long for rank 0's next command (evaluation, data loading)
GRACE_S = 5.0  # for the other ranks to report after a failure, and to exit after terminate()


@dataclass(frozen=True)
class DistributedOptions:
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU
    oversubscribe: bool = False  # allow more workers than CPU cores
    timeout_s: float = 30.0  # process-group init and every training collective

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise MinibatchError(f"backend {self.backend!r} is not known: use one of {', '.join(BACKENDS)}")
        if not self.timeout_s > 0:
            raise MinibatchError(f"timeout {self.timeout_s!r} is not valid: use a positive number of seconds")


class WorkerFailed(MinibatchError):
    """A rank died or failed: the run is stopped (one line, like every other unavailable resource)."""


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def machine_cannot(config: RunConfig, options: DistributedOptions) -> str | None:
    """Why this machine cannot run ``config`` at all (not a bad setting: a missing GPU or NCCL), or None.
    A sweep leaves such a combination out of its plan with this reason; ``choose_backend`` refuses it."""
    device = resolve_device(config.device)  # cuda on a CPU-only machine is refused here
    backend = options.backend if options.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        return ("backend nccl was asked for but this machine has no CUDA GPU (or torch was built without "
                "NCCL): use --backend gloo or auto")
    if device.type == "cuda" and not under_torchrun() and config.workers > torch.cuda.device_count():
        return (f"--workers {config.workers} needs {config.workers} GPUs (one process per GPU); this machine "
                f"has {torch.cuda.device_count()}")
    return None


def choose_backend(config: RunConfig, options: DistributedOptions) -> str:
    """The backend for this run, with the one-line refusals of what this machine cannot do."""
    device = resolve_device(config.device)  # cuda on a CPU-only machine is refused here
    backend = options.backend if options.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    problem = machine_cannot(config, options)
    if problem:
        raise MinibatchError(problem)
    if backend == "nccl":
        if device.type != "cuda":
            raise MinibatchError("backend nccl trains on GPUs: use --device cuda, or --backend gloo on CPU")
    if isinstance(config.batch_size, int) and config.batch_size < config.workers:
        raise MinibatchError(f"global batch {config.batch_size} is smaller than the {config.workers} workers: "
                             "every worker needs at least one row (lower --workers)")
    if device.type == "cuda" and config.workers > 1 and ":" in str(config.device):
        raise MinibatchError(f"--device {config.device} names one GPU, but with --workers {config.workers} rank r "
                             "uses cuda:r (one process per GPU): use --device cuda")
    if not under_torchrun():
        workers = config.workers
        if device.type == "cpu" and workers > cpu_count() and not options.oversubscribe:
            raise MinibatchError(f"--workers {workers} is more than the {cpu_count()} CPU cores available: "
                                 "the workers would time-share cores (pass --oversubscribe to run anyway)")
    return backend


def run_distributed(fn: Callable[..., Any], config: RunConfig, *args: Any,
                    options: DistributedOptions | None = None) -> Any:
    """``fn(config, *args)`` on rank 0 of a ``config.workers``-process group; its result comes back."""
    options = options or DistributedOptions()
    backend = choose_backend(config, options)
    if under_torchrun():
        return _join_torchrun(fn, (config, *args), config, backend, options)
    return _launch_local(fn, (config, *args), config, backend, options)


# --- every rank ---------------------------------------------------------------------------------------

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


def _join_group(backend: str, rank: int, world: int, local_rank: int, timeout_s: float,
                store: dist.Store | None = None, launcher: str = "local") -> None:
    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world,
                              "timeout": timedelta(seconds=timeout_s)}
    if store is not None:
        kwargs["store"] = store
    if backend == "nccl":
        local_rank = cuda_index(local_rank, torch.cuda.device_count())
        torch.cuda.set_device(local_rank)
        kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(**kwargs)
    control = dist.new_group(backend="gloo", timeout=timedelta(seconds=CONTROL_TIMEOUT_S))
    ddp_group.attach(ddp_group.Group(rank, world, local_rank, backend, control, launcher))


def cuda_index(local_rank: int, visible: int) -> int:
    """The CUDA device this rank trains on: ``cuda:LOCAL_RANK`` when the rank sees every GPU of its node;
    ``cuda:0`` when the launcher gave each rank one visible GPU (``CUDA_VISIBLE_DEVICES`` per rank, as
    cluster schedulers do), where ``cuda:LOCAL_RANK`` would not exist."""
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    raise MinibatchError(f"rank with LOCAL_RANK {local_rank} sees {visible} CUDA device(s): give each rank "
                         "its own GPU (one visible GPU per rank, or all of them)")


def _leave_group() -> None:
    ddp_group.detach()
    if dist.is_initialized():
        dist.destroy_process_group()


def _rank_threads(config: RunConfig) -> int:
    """Intra-op threads per rank: as asked, else the cores shared out, so W ranks do not oversubscribe."""
    return config.threads or max(1, cpu_count() // config.workers)


def _rank_main(rank: int, host: str, port: int, backend: str, timeout_s: float, conn, lifeline,
               fn: Callable[..., Any], args: tuple) -> None:
    _follow_supervisor(lifeline)
    config: RunConfig = args[0]
    torch.set_num_threads(_rank_threads(config))
    try:
        store = dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s))
        # one process per GPU: rank r on cuda:r (W=1 keeps the GPU the user named)
        local = (resolve_device(config.device).index or 0) if config.workers == 1 else rank
        _join_group(backend, rank, config.workers, local, timeout_s, store)
        if rank == 0:
            result = fn(*args)
            ddp_group.shutdown()  # after a failure no collective is tried: the supervisor stops the others
            conn.send(("ok", result))
        else:
            ddp.serve(MemoryProbe)
            conn.send(("ok", None))
    except MinibatchError as err:
        conn.send(("user-error", str(err)))
    except BaseException as err:  # noqa: BLE001 - reported to the supervisor with its traceback
        conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        conn.close()
        _leave_group()


# --- torchrun: this process is one rank -------------------------------------------------------------

def _join_torchrun(fn: Callable[..., Any], args: tuple, config: RunConfig, backend: str,
                   options: DistributedOptions) -> Any:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != config.workers:
        raise MinibatchError(f"--workers {config.workers} does not match torchrun's world size {world}: "
                             f"pass --workers {world}")
    if config.threads is None and config.device == "cpu":
        torch.set_num_threads(max(1, cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    _join_group(backend, rank, world, int(os.environ.get("LOCAL_RANK", 0)), options.timeout_s,
                launcher="torchrun")
    try:
        if rank == 0:
            result = fn(*args)
            ddp_group.shutdown()  # after a failure rank 0 just exits: torchrun's agent stops the others
            # rank 0 measured in the process torchrun started, not in a fresh worker: say so
            return [replace(r, memory_method=r.memory_method.replace(
                "one fresh worker process per run", "rank 0's process of a torchrun job")) for r in result]
        ddp.serve(MemoryProbe)
    finally:
        _leave_group()
    raise SystemExit(0)  # ranks other than 0 have nothing to report: rank 0 prints the run


# --- local launch: this process supervises W ranks ---------------------------------------------------

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


def _launch_local(fn: Callable[..., Any], args: tuple, config: RunConfig, backend: str,
                  options: DistributedOptions) -> Any:
    store, host = _host_store(options.timeout_s)
    ctx = _context()
    procs, pipes, lifelines = [], [], []
    try:
        with _main_module_hidden():
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
            proc.join(GRACE_S)  # the followers leave after rank 0's shutdown command
        return payload
    if status == "user-error":
        raise MinibatchError(payload)
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
