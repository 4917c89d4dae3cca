"""Engine registry. Modules (and torch) are imported on first use, so that argparse help and input
checks can list and check engine names without starting torch."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from minibatch_core.errors import MinibatchError

if TYPE_CHECKING:
    from minibatch_core.engines.base import Engine, EpochOutput, Session

# name -> module that defines ENGINE; order is the order sweeps and reports show them in
_MODULES = {
    "reference": "minibatch_core.engines.reference",
    "fast": "minibatch_core.engines.fast",
    "stacked": "minibatch_core.engines.stacked",
    "sklearn": "minibatch_core.engines.sklearn_peer",
    "ddp": "minibatch_core.engines.ddp",
}
_BASE_EXPORTS = ("Engine", "EpochOutput", "Session")


# engines that launch worker processes of their own (torch.distributed). They are not in the default
# sweep: ddp at one worker only adds process start-up to the lesson's question; it belongs in sweeps that
# vary --workers, named explicitly
_DISTRIBUTED = {"ddp"}


def engine_names() -> list[str]:
    return list(_MODULES)


def default_engine_names() -> list[str]:
    return [name for name in _MODULES if name not in _DISTRIBUTED]


def is_distributed(name: str) -> bool:
    """True for engines that start their own processes (known without importing the engine or torch)."""
    return check_engine_name(name) in _DISTRIBUTED


def check_engine_name(name: str) -> str:
    if name not in _MODULES:
        raise MinibatchError(f"unknown engine {name!r}: use one of {', '.join(_MODULES)}")
    return name


def engine_module(name: str) -> str:
    """The module defining engine ``name``, not imported (worker processes preload it by name)."""
    return _MODULES[check_engine_name(name)]


def get_engine(name: str) -> Engine:
    return import_module(engine_module(name)).ENGINE


def __getattr__(name: str) -> Any:
    if name in _BASE_EXPORTS:
        return getattr(import_module("minibatch_core.engines.base"), name)
    raise AttributeError(f"module 'minibatch_core.engines' has no attribute {name!r}")


__all__ = ["Engine", "EpochOutput", "Session", "check_engine_name", "default_engine_names", "engine_module",
           "engine_names", "get_engine", "is_distributed"]
