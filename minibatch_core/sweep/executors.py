"""Executors: where the runs of a sweep or study execute.

``local`` (the default) is the suite as it always was: every task in this command's process, one after
another, in plan order. ``ray`` (``ray_executor.py``) sends each task to a Ray cluster as one Ray Core task in
a worker that serves no other run. Either way the caller gets ``Outcome``s as tasks complete and alone writes
the records; an executor never writes a file. Ray is imported only by ``open_executor`` for ``ray``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from minibatch_core.errors import MinibatchError

EXECUTORS = ("local", "ray")
INSTALL_RAY = "pip install 'minibatch-bench[ray]' (from a checkout: pip install '.[ray]')"


@dataclass(frozen=True)
class ExecutorOptions:
    """``--executor``, ``--ray-address``, ``--runs-per-node`` (or a TOML file's ``[executor]`` table)."""

    kind: str = "local"
    address: str | None = None  # None: a local Ray instance for the command; "auto": the cluster joined
    runs_per_node: int = 1  # timed runs executing at once on one node (1: timings never contend)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise MinibatchError(f"executor {self.kind!r} is not valid: use {' or '.join(EXECUTORS)}")
        if isinstance(self.runs_per_node, bool) or not isinstance(self.runs_per_node, int) or self.runs_per_node < 1:
            raise MinibatchError(f"runs per node {self.runs_per_node!r} is not valid: use an integer >= 1")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise MinibatchError(f"ray address {self.address!r} is not valid: use auto or HOST:PORT")
        if self.kind == "local" and (self.address is not None or self.runs_per_node != 1):
            given = "--ray-address" if self.address is not None else "--runs-per-node"
            raise MinibatchError(f"{given} applies to --executor ray only")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: ExecutorOptions | None = None) -> ExecutorOptions:
        """Keys as in a TOML ``[executor]`` table (``kind``, ``address``, ``runs-per-node``) over ``base``."""
        known = {"kind", "executor", "address", "ray_address", "runs_per_node"}
        changes = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise MinibatchError(f"unknown executor setting {unknown[0]!r}: use kind, address, runs-per-node")
        merged = asdict(base or cls())
        merged["kind"] = changes.get("kind", changes.get("executor", merged["kind"]))
        merged["address"] = changes.get("address", changes.get("ray_address", merged["address"]))
        merged["runs_per_node"] = changes.get("runs_per_node", merged["runs_per_node"])
        return cls(**merged)


@dataclass(frozen=True)
class Task:
    """One timed run (or one study pass): ``fn(*args)`` and the resources it uses while it runs."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str = ""
    num_cpus: float = 1.0  # its torch threads (x workers for ddp)
    num_gpus: float = 0.0  # 1 on a CUDA device (W for ddp over W GPUs)


@dataclass
class Outcome:
    """What one task gave: its value, or ``error`` (why it failed, after its retry) with no value."""

    index: int  # the task's place in the plan
    value: Any = None
    error: str | None = None
    host: str = ""
    node: str = ""  # the Ray node id ("" for local)
    hardware: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


ProgressCallback = Callable[[int, int, str], None]  # a sweep's or study's (runs done, runs total, what runs now)


def stopped_status(err: BaseException) -> str:
    """The ``status`` a sweep's env.json or a study's study.json records when ``err`` stopped it."""
    return "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}"


class Executor(Protocol):
    name: str

    def run(self, tasks: Sequence[Task], failures: tuple[type[BaseException], ...] = ()) -> Iterator[Outcome]:
        """Every task's outcome, as each completes. An exception of a ``failures`` type raised by a task
        becomes that task's ``error``; any other propagates, as in-process code would raise it."""
        ...

    def close(self) -> None: ...


def host_hardware() -> dict[str, Any]:
    """What a run's figures depend on, for env.json's ``hosts``: one entry per machine that ran tasks."""
    import psutil

    from minibatch_core.running.envinfo import cpu_count, cpu_model, gpu_info

    return {"cpu_model": cpu_model(), "cpu_cores": cpu_count(),
            "memory_total_bytes": int(psutil.virtual_memory().total), "gpus": gpu_info()}


def host_name() -> str:
    return socket.gethostname()


class LocalExecutor:
    """Today's behaviour: each task in this process, in plan order, one at a time."""

    name = "local"

    def __init__(self) -> None:
        self._hardware: dict[str, Any] | None = None

    def run(self, tasks: Sequence[Task], failures: tuple[type[BaseException], ...] = ()) -> Iterator[Outcome]:
        host = host_name()
        if self._hardware is None:
            self._hardware = host_hardware()
        for index, task in enumerate(tasks):
            try:
                value = task.fn(*task.args)
            except failures as failure:  # noqa: B030 (a tuple of exception types, given by the caller)
                yield Outcome(index, error=str(failure), host=host, hardware=self._hardware)
                continue
            yield Outcome(index, value, host=host, hardware=self._hardware)

    def close(self) -> None:
        pass


def open_executor(options: ExecutorOptions | None) -> Executor:
    """The executor ``options`` name, ready to run. For ray: connects (or starts a local instance) now, so
    an unreachable cluster or a missing Ray is one MinibatchError before anything is written."""
    if options is None or options.kind == "local":
        return LocalExecutor()
    try:
        import ray  # noqa: F401
    except ImportError:
        raise MinibatchError(f"--executor ray needs Ray, which is not installed: {INSTALL_RAY}") from None
    from minibatch_core.sweep.ray_executor import RayExecutor

    return RayExecutor(options)


def fresh_per_task(executor_name: str) -> bool:
    """Whether the executor already runs every task in a worker process that serves it alone (ray's
    ``max_calls=1``): there a task trains where it lands; on the local executor it asks the trainer for a
    fresh worker (``isolate``), as every run does. Sweeps and studies decide with this one rule."""
    return executor_name != "local"


def task_resources(device: str, threads: int | None, workers: int = 1) -> dict[str, float]:
    """What a run asks the cluster for: its torch threads on CPU (per worker), one GPU per process on CUDA."""
    cpus = float(max(1, threads or 1) * max(1, workers))
    gpus = float(max(1, workers)) if device.startswith("cuda") else 0.0
    return {"num_cpus": cpus, "num_gpus": gpus}
