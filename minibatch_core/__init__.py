"""minibatch-bench: measure the mini-batch trade-off of the lesson's MLP, honestly and repeatably."""

from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import MinibatchError
from .results import EpochRecord, MemoryBreakdown, RunResult
from .trainer import train, train_seeds

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "EpochRecord",
    "MemoryBreakdown",
    "MinibatchError",
    "RunConfig",
    "RunResult",
    "load_dataset",
    "train",
    "train_seeds",
    "__version__",
]
