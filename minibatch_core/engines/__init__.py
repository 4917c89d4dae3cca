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


# engines that train only the lesson's MLP with cross-entropy (scikit-learn's MLPClassifier)
_MLP_ONLY = {"sklearn"}


def check_model_support(engine: str, model: str, loss: str = "cross_entropy") -> None:
    """Refuse (one line) an engine that cannot train this model or loss, naming the engines that can."""
    if engine in _MLP_ONLY and (model != "mlp" or loss != "cross_entropy"):
        can = ", ".join(name for name in _MODULES if name not in _MLP_ONLY)
        what = f"model {model!r}" if model != "mlp" else f"loss {loss!r}"
        raise MinibatchError(f"the {engine} engine cannot train {what}: it trains only the lesson's mlp with "
                             f"cross_entropy; use one of {can}")


def check_model_facts(engine: str, model: str, random: bool, buffers: bool) -> None:
    """Refuse what an engine cannot train exactly: stacked replicas of a model with dropout or buffers."""
    if engine != "stacked" or model == "mlp" and not (random or buffers):
        return
    if random or buffers:
        why = "it draws random numbers (dropout)" if random else "it has buffers (BatchNorm running statistics)"
        raise MinibatchError(f"the stacked engine cannot train model {model!r}: {why}, which its replicas "
                             "cannot reproduce as their own runs would; use --engine fast or reference")


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


__all__ = ["Engine", "EpochOutput", "Session", "check_engine_name", "check_model_facts", "check_model_support",
           "default_engine_names",
           "engine_module", "engine_names", "get_engine", "is_distributed"]
