"""What env.json records: the software, the machine and the code a sweep was measured with."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# torch is imported by collect() and gpu_info() only: the report and compare read env.json without it


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_info(where: Path | None = None) -> dict[str, Any] | None:
    """The commit of the checkout this package runs from, and whether it had uncommitted changes; None
    when it is not a git checkout (an installed wheel) or git is missing."""
    root = where or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """The cores this process may use (its affinity): what torch and the worker processes can use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gpu_info() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": props.name, "memory_bytes": int(props.total_memory),
                     "capability": f"{props.major}.{props.minor}"})
    return gpus


def collect(sweep: dict[str, Any] | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Everything that decides how fast and how exactly this machine trains, as plain JSON values."""
    import psutil
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch < 2.1
        capability = None
    return {
        "minibatch_bench": _version("minibatch-bench"),
        "argv": list(sys.argv if argv is None else argv),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "scikit-learn": _version("scikit-learn"),
            "pandas": _version("pandas"),
            "numpy": _version("numpy"),
            "matplotlib": _version("matplotlib"),
            "seaborn": _version("seaborn"),
        },
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_count(),  # the cores this process may use (affinity), what torch can use
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        # what the runs used: the sweep's `threads` where set, else torch's default here
        "torch_threads": (sweep or {}).get("threads") or torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_cpu_capability": capability,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpus": gpu_info(),
        "git": git_info(),
        "load_average_start": load_average(),
        "sweep": sweep,
    }


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine slows every timing (on a 2-core
    machine a second busy process can make torch's 2-thread ops several times slower)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def busy_warning(env: dict[str, Any]) -> str | None:
    """A line for the report when the machine was busier than the sweep alone would make it."""
    cores = env.get("cpu_cores") or 0
    loads = [x[0] for x in (env.get("load_average_start"), env.get("load_average_end")) if x]
    if not cores or not loads or max(loads) <= cores:
        return None
    return (f"The machine was busy while this sweep ran (1-minute load average up to {max(loads):.1f} on {cores} "
            "cores, the sweep itself accounting for about 1): timings include contention with other work.")


def executor_notes(env: dict[str, Any]) -> list[str]:
    """Lines for a report on where the runs executed: the machines (one line each where several) and, when
    several timed runs shared a node (``--runs-per-node`` above 1), that their timings contended."""
    executor = env.get("executor") or {}
    if executor.get("kind", "local") == "local":
        return []
    hosts = env.get("hosts") or {}
    lines = [f"Executor: {executor['kind']} ({len(hosts)} host(s): " + "; ".join(
        f"{name}: {h.get('cpu_model', '?')}, {h.get('cpu_cores', '?')} cores"
        + (", GPU " + ", ".join(g.get("name", "?") for g in h["gpus"]) if h.get("gpus") else "")
        for name, h in hosts.items()) + ")"]
    per_node = int(executor.get("runs_per_node") or 1)
    if per_node > 1:
        lines.append(f"Up to {per_node} timed runs executed at once on each node (--runs-per-node {per_node}): "
                     "their timings shared the node's cores and memory bandwidth and contended with each other.")
    return lines


def describe_machine(env: dict[str, Any]) -> str:
    """One line naming the machine figures were measured on, from an env.json dict."""
    if not env:
        return "machine not recorded (no env.json)"
    parts = [f"{env.get('cpu_model', 'unknown CPU')}",
             f"{env.get('cpu_cores', '?')} cores",
             f"torch threads: {env.get('torch_threads', '?')}"]
    if env.get("torch_cpu_capability"):
        parts.append(f"CPU capability {env['torch_cpu_capability']}")
    gpus = env.get("gpus") or []
    if gpus:
        parts.append("GPU " + ", ".join(g["name"] for g in gpus) + f" (CUDA {env.get('cuda_version')})")
    else:
        parts.append("no GPU")
    versions = env.get("versions") or {}
    if versions.get("torch"):
        parts.append(f"torch {versions['torch']}")
    return ", ".join(parts)
