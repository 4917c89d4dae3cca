"""Device names as users write them -> torch.device, with one-line errors for what is not there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from minibatch_core.errors import MinibatchError

# torch.distributed backends the ddp engine accepts: auto = NCCL on CUDA, gloo on CPU
BACKENDS = ("auto", "gloo", "nccl")

if TYPE_CHECKING:  # imported where a device is made, so that checking a name never starts torch
    import torch

ACCEPTED = "cpu, cuda, cuda:N, auto"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_device_name(spec: str) -> str:
    """The spelling only (no torch): whether CUDA is there is resolve_device's question."""
    text = str(spec).strip().lower()
    if text not in ("auto", "cpu") and not _CUDA.fullmatch(text):
        raise MinibatchError(f"unknown device {spec!r}: use one of {ACCEPTED}")
    return text


def resolve_device(spec: str) -> torch.device:
    import torch

    text = check_device_name(spec)
    if text == "auto":
        return torch.device("cuda:0" if cuda_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(text)
    assert match is not None  # check_device_name accepted it
    if not cuda_available():
        raise MinibatchError(f"device {spec!r} was asked for but CUDA is not available on this machine "
                             "(use cpu or auto)")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise MinibatchError(
            f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)


def expand_devices(specs: list[str]) -> list[str]:
    """For sweeps: ``auto`` means every device present (CPU, plus CUDA when there is one)."""
    out: list[str] = []
    for spec in specs:
        names = (["cpu", "cuda"] if cuda_available() else ["cpu"]) if spec.strip().lower() == "auto" else [spec]
        for name in names:
            resolve_device(name)
            if name not in out:
                out.append(name)
    return out


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so a clock read means what it says (a no-op on CPU)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block; None, or the count already set, leaves
    torch's setting alone (no call per epoch). The caller's setting comes back after: in-process runs must
    not leak it. Every timed workload (runs, study passes, the calibration, the noise measurement) sets
    ``RunConfig.threads`` here, and the MLP engines their one-thread scope for tiny steps."""
    import torch

    previous = None if threads is None else torch.get_num_threads()
    if previous in (None, threads):
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
