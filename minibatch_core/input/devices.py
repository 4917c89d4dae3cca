"""Device names as users write them -> torch.device, with one-line errors for what is not there."""

from __future__ import annotations

import re

import torch

from minibatch_core.errors import MinibatchError

ACCEPTED = "cpu, cuda, cuda:N, auto"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(spec: str) -> torch.device:
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if cuda_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise MinibatchError(f"unknown device {spec!r}: use one of {ACCEPTED}")
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
        torch.cuda.synchronize(device)
