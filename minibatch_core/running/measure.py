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
    CUDA: ``torch.cuda.max_memory_allocated`` after a reset of the peak statistics.
    Call ``sample()`` right after each training region and ``rearm()`` after work that must not count
    (per-epoch evaluation), so that evaluating the whole dataset never inflates a batch size's peak.
    """

    device: torch.device
    baseline: int = 0
    peak: int = 0
    method: str = ""
    isolated: bool = True  # False (--no-isolate): the calling process, whose earlier work shares the heap

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = 0
            self.method = "torch.cuda.max_memory_allocated (training regions, peak stats reset per run)"
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
            value = int(torch.cuda.max_memory_allocated(self.device))
        else:
            value = max(0, peak_rss_bytes() - self.baseline)
        self.peak = max(self.peak, value)
        return self.peak

    def rearm(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()
