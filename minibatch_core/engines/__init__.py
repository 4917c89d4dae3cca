"""Engine registry. Modules are imported on first use so that ``--help`` stays fast."""

from __future__ import annotations

from importlib import import_module

from minibatch_core.engines.base import Engine, EpochOutput, Session
from minibatch_core.errors import MinibatchError

# name -> module that defines ENGINE; order is the order sweeps and reports show them in
_MODULES = {
    "reference": "minibatch_core.engines.reference",
    "fast": "minibatch_core.engines.fast",
    "stacked": "minibatch_core.engines.stacked",
    "sklearn": "minibatch_core.engines.sklearn_peer",
    "ddp": "minibatch_core.engines.ddp",
}


def engine_names() -> list[str]:
    return list(_MODULES)


def get_engine(name: str) -> Engine:
    if name not in _MODULES:
        raise MinibatchError(f"unknown engine {name!r}: use one of {', '.join(_MODULES)}")
    return import_module(_MODULES[name]).ENGINE


__all__ = ["Engine", "EpochOutput", "Session", "engine_names", "get_engine"]
