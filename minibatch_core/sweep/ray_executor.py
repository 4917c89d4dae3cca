"""The ``ray`` executor: every task one Ray Core task, in a worker process that serves no other run.

Placement is the driver's: it keeps at most ``runs_per_node`` tasks in flight per node (one by default, so
timed runs never contend) and pins each to its node (``NodeAffinitySchedulingStrategy``). That works on
any cluster, including one started by ``ray start`` without this suite's knowledge, and it lets a task lost
with its worker or node be retried once on *another* node before it is recorded as failed. Ray's own task
retries are off (``max_retries=0``) so that a retry is never silent.

Imported only when ``--executor ray`` is given (``executors.open_executor``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from minibatch_core.errors import MinibatchError
from minibatch_core.sweep.executors import ExecutorOptions, Outcome, Task, host_hardware, host_name

CONNECT_TIMEOUT_S = 5.0


def _call(fn: Callable[..., Any], args: tuple[Any, ...], cwd: str) -> tuple[Any, str, str, dict[str, Any]]:
    """Runs in the Ray worker: the driver's folder first (relative dataset paths), then the task."""
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    value = fn(*args)
    return value, host_name(), ray.get_runtime_context().get_node_id(), host_hardware()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _check_reachable(address: str) -> None:
    """HOST:PORT answers at all, within seconds (Ray's own connect retries for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except ValueError:
        raise MinibatchError(f"--ray-address {address!r} is not valid: use auto or HOST:PORT") from None
    except OSError as err:
        raise MinibatchError(f"the Ray cluster at {address!r} cannot be reached ({err.strerror or err}); start it "
                             "with `ray start --head`, or drop --ray-address to start a local Ray instance") from None


class RayExecutor:
    name = "ray"

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options
        self.retried: list[dict[str, str]] = []  # tasks lost once and sent to another node (env.json)
        address = options.address
        if address is not None:
            _check_reachable(address)
        settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                    "logging_level": logging.WARNING}
        try:
            if address is None:  # a local instance for this command, stopped by close()
                from minibatch_core.running.envinfo import cpu_count

                ray.init(num_cpus=cpu_count(), **settings)
            else:
                ray.init(address=address, **settings)
        except Exception as err:  # noqa: BLE001 (Ray raises plain Exception when a node is slow to start)
            where = "a local Ray instance could not be started" if address is None else \
                f"the Ray cluster at {address!r} cannot be reached"
            raise MinibatchError(f"{where}: {_first_line(err)}") from None
        self._remote = ray.remote(max_calls=1, max_retries=0)(_call)

    def describe(self) -> dict[str, Any]:
        """env.json's ``executor``: the options and the nodes the cluster had when the command started."""
        return {**self.options.to_dict(), "ray_version": ray.__version__,
                "nodes": [{"node": n, "host": info["host"], "resources": info["resources"]}
                          for n, info in self._nodes().items()]}

    def _nodes(self) -> dict[str, dict[str, Any]]:
        return {n["NodeID"]: {"host": n.get("NodeManagerHostname", ""), "resources": n.get("Resources", {})}
                for n in ray.nodes() if n.get("Alive")}

    def run(self, tasks: Sequence[Task], failures: tuple[type[BaseException], ...] = ()) -> Iterator[Outcome]:
        pending: deque[tuple[int, int, str | None]] = deque((i, 1, None) for i in range(len(tasks)))
        inflight: dict[Any, tuple[int, int, str]] = {}
        cwd = os.getcwd()
        try:
            while pending or inflight:
                nodes = self._nodes()
                busy = Counter(node for _, _, node in inflight.values())
                for _ in range(len(pending)):
                    index, attempt, avoid = pending.popleft()
                    task = tasks[index]
                    fits = [n for n, info in nodes.items() if info["resources"].get("CPU", 0) >= task.num_cpus
                            and info["resources"].get("GPU", 0) >= task.num_gpus]
                    if not fits:
                        yield Outcome(index, error=f"no live node of the cluster has {task.num_cpus:g} CPU(s) and "
                                      f"{task.num_gpus:g} GPU(s) for it", attempts=attempt)
                        continue
                    free = [n for n in fits if busy[n] < self.options.runs_per_node]
                    others = [n for n in free if n != avoid]
                    choice = others[0] if others else (avoid if fits == [avoid] and avoid in free else None)
                    if choice is None:
                        pending.append((index, attempt, avoid))
                        continue
                    ref = self._remote.options(
                        num_cpus=task.num_cpus, num_gpus=task.num_gpus,
                        scheduling_strategy=NodeAffinitySchedulingStrategy(choice, soft=False),
                    ).remote(task.fn, task.args, cwd)
                    inflight[ref] = (index, attempt, choice)
                    busy[choice] += 1
                if not inflight:
                    time.sleep(0.5)  # every node busy or just changed: look again
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=2.0)
                for ref in ready:
                    index, attempt, node = inflight.pop(ref)
                    yield from self._collect(ref, index, attempt, node, failures, pending)
        finally:  # Ctrl-C, an error, or the caller stopping: nothing of ours keeps running
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 (already finished or its node gone: nothing to stop)
                    pass

    def _collect(self, ref: Any, index: int, attempt: int, node: str, failures: tuple[type[BaseException], ...],
                 pending: deque) -> Iterator[Outcome]:
        try:
            value, host, node_id, hardware = ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # the task itself raised: as the local executor would
            cause = getattr(err, "cause", None)
            if failures and isinstance(cause, failures):
                yield Outcome(index, error=str(cause), node=node, attempts=attempt)
                return
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except ray.exceptions.RayError as err:  # its worker or node died: once more, elsewhere
            reason = f"{type(err).__name__}: {_first_line(err)}"
            if attempt == 1:
                self.retried.append({"task": str(index), "node": node, "reason": reason})
                pending.appendleft((index, 2, node))
                return
            yield Outcome(index, error=f"lost twice with its worker or node (last: {reason})", node=node,
                          attempts=attempt)
            return
        yield Outcome(index, value, host=host, node=node_id, hardware=hardware, attempts=attempt)

    def close(self) -> None:
        ray.shutdown()
