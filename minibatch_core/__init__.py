"""minibatch-bench: measure the mini-batch trade-off of the lesson's MLP, honestly and repeatably.

The public names below are imported on first use, so that ``import minibatch_core`` (and the CLI's
``--help``) does not pay for importing torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("minibatch-bench")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "RunConfig": "minibatch_core.input.config",
    "Dataset": "minibatch_core.input.data",
    "load_dataset": "minibatch_core.input.data",
    "MinibatchError": "minibatch_core.errors",
    "MemoryBreakdown": "minibatch_core.engines.base",
    "EpochRecord": "minibatch_core.running.results",
    "RunResult": "minibatch_core.running.results",
    "train": "minibatch_core.running.trainer",
    "train_seeds": "minibatch_core.running.trainer",
    "StudyConfig": "minibatch_core.sweep.study",
    "run_study": "minibatch_core.commands.study",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'minibatch_core' has no attribute {name!r}")
