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


# what a sweep runs when no engines are named: the single-process engines. ddp at one worker only adds
# process start-up to the lesson's question; it belongs in sweeps that vary --workers, named explicitly
_NOT_DEFAULT = {"ddp"}


def engine_names() -> list[str]:
    return list(_MODULES)


def default_engine_names() -> list[str]:
    return [name for name in _MODULES if name not in _NOT_DEFAULT]


def get_engine(name: str) -> Engine:
    if name not in _MODULES:
        raise MinibatchError(f"unknown engine {name!r}: use one of {', '.join(_MODULES)}")
    return import_module(_MODULES[name]).ENGINE


__all__ = ["Engine", "EpochOutput", "Session", "default_engine_names", "engine_names", "get_engine"]
