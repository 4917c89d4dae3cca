"""Launch a distributed (ddp) run: W local worker processes, or join a ``torchrun`` job.

Local (default, ``running/ddp_local.py``): this process starts W fresh ranks and supervises them. Every
rank runs the same function (the trainer's measurement: SPMD, as under torchrun); rank 0's result is the
run's.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` set) this process *is* one rank: it
joins the job's group and runs the same function; rank 0 returns the results, the other ranks exit with
status 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from minibatch_core.engines import ddp_group
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.devices import BACKENDS, resolve_device
from minibatch_core.running.envinfo import cpu_count

CONTROL_TIMEOUT_S = 600.0  # the control group's waits: a rank still loading its data


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
    from minibatch_core.running.ddp_local import launch_local  # it imports this module's group set-up

    return launch_local(fn, (config, *args), config, backend, options)


# --- every rank ---------------------------------------------------------------------------------------

def join_group(backend: str, rank: int, world: int, local_rank: int, timeout_s: float,
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


def leave_group() -> None:
    ddp_group.detach()
    if dist.is_initialized():
        dist.destroy_process_group()


def share_cores(config: RunConfig, ranks_here: int) -> None:
    """A rank's intra-op threads when ``--threads`` is not given: this machine's cores shared out among the
    ranks on it, so W ranks do not oversubscribe it (torch's default gives every rank every core). A given
    ``--threads`` is set around the run by the trainer, as for every run."""
    if config.threads is None:
        torch.set_num_threads(max(1, cpu_count() // ranks_here))


# --- torchrun: this process is one rank -------------------------------------------------------------

def _join_torchrun(fn: Callable[..., Any], args: tuple, config: RunConfig, backend: str,
                   options: DistributedOptions) -> Any:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != config.workers:
        raise MinibatchError(f"--workers {config.workers} does not match torchrun's world size {world}: "
                             f"pass --workers {world}")
    share_cores(config, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    join_group(backend, rank, world, int(os.environ.get("LOCAL_RANK", 0)), options.timeout_s,
                launcher="torchrun")
    try:
        result = fn(*args)  # every rank: the same loop (after a failure torchrun's agent stops the others)
        if rank == 0:
            # rank 0 measured in the process torchrun started, not in a fresh worker: say so
            return [replace(r, memory_method=r.memory_method.replace(
                "one fresh worker process per run", "rank 0's process of a torchrun job")) for r in result]
    finally:
        leave_group()
    raise SystemExit(0)  # ranks other than 0 have nothing to report: rank 0 prints the run
