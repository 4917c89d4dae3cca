"""Measurement primitives: clocks that synchronize CUDA, memory probes, tensor byte counts.

Nothing here formats or presents; it returns numbers.
"""

from __future__ import annotations

import platform
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from minibatch_core.input.devices import synchronize
from minibatch_core.running.envinfo import cpu_model


class Stopwatch:
    """Wall-clock timer for one region; on CUDA the device is synchronized before each clock read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed_s = 0.0

    @contextmanager
    def region(self):
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield self
        finally:
            synchronize(self.device)
            self.elapsed_s = time.perf_counter() - start


# --- process memory (CPU) -------------------------------------------------------------------------

def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0) so VmHWM covers what follows.

    Returns False where that is not possible; peak_rss_bytes then falls back to the process lifetime
    peak, which is still sound in a fresh worker process.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last reset (or process start)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)


@dataclass
class MemoryProbe:
    """Peak memory of the training regions only.

    CPU: growth of the resident set's high-water mark over the resident set at start().
    CUDA: growth of ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` at start(), the same
    kind of figure as the CPU's. cuBLAS keeps a workspace per stream that ran a matmul (several MiB each,
    more on recent GPUs: most of this model's CUDA figure), and an engine that uses more streams (fast's
    CUDA graphs) would look heavier for a reason unrelated to training: the workspaces are freed before
    the baseline, counted at ``finish()`` and reported apart (``workspace``), not in ``peak``.
    Call ``sample()`` right after each training region and ``rearm()`` after work that must not count
    (per-epoch evaluation, an engine's set-up such as graph capture's warm-up), so that neither inflates
    a batch size's peak.
    """

    device: torch.device
    baseline: int = 0
    peak: int = 0
    method: str = ""
    isolated: bool = True  # False (--no-isolate): the calling process, whose earlier work shares the heap
    workspace: int | None = None  # CUDA: cuBLAS workspace bytes at finish(), not counted in ``peak``

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            clear_cublas_workspaces()  # the run's own workspaces are then counted at finish(), apart
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = int(torch.cuda.memory_allocated(self.device))
            where = ("a fresh worker process per run" if self.isolated else
                     "the calling process (--no-isolate)")
            self.method = ("growth of torch.cuda.max_memory_allocated over the run's start, training regions "
                           f"only, {where}; cuBLAS workspaces reported apart (cuda_workspace_bytes)")
        else:
            exact = reset_peak_rss()
            self.baseline = current_rss_bytes()
            where = ("one fresh worker process per run" if self.isolated else
                     "in the calling process (--no-isolate): memory it already held is not counted again")
            self.method = (
                "peak RSS growth over the run's start, training regions only (VmHWM reset via "
                f"/proc/self/clear_refs), {where}"
                if exact
                else f"peak RSS growth (ru_maxrss), {where}"
            )

    def sample(self) -> int:
        if self.device.type == "cuda":
            synchronize(self.device)
            value = max(0, int(torch.cuda.max_memory_allocated(self.device)) - self.baseline)
        else:
            value = max(0, peak_rss_bytes() - self.baseline)
        self.peak = max(self.peak, value)
        return self.peak

    def finish(self) -> None:
        """After the last training region (nothing may replay a captured graph after this): on CUDA,
        count the cuBLAS workspaces the run made by freeing them, and take them out of ``peak``. They
        persist from their first matmul on, so they were part of every later peak."""
        if self.device.type != "cuda":
            return
        synchronize(self.device)
        before = int(torch.cuda.memory_allocated(self.device))
        if not clear_cublas_workspaces():
            return
        synchronize(self.device)
        self.workspace = max(0, before - int(torch.cuda.memory_allocated(self.device)))
        self.peak = max(0, self.peak - self.workspace)

    def rearm(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()


def clear_cublas_workspaces() -> bool:
    """Free cuBLAS's per-stream workspaces (torch re-creates one on the next matmul). False where this
    torch has no such call."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is None:
        return False
    clear()
    return True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()
