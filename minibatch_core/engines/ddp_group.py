"""The ddp engine's process group as the engine sees it.

The launcher (``running/distributed.py``) makes the process group and :func:`attach`-es it here, with a gloo
*control* group beside it (whatever the training backend) for what travels as Python objects (the ranks'
peak memory) and for waits that may be long (a rank still loading its data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minibatch_core.errors import MinibatchError


@dataclass
class Group:
    """This process's place in the job, set by the launcher once the process group exists."""

    rank: int
    world: int
    local_rank: int
    backend: str
    control: Any  # a gloo group: pickled objects and long waits, whatever the backend
    launcher: str = "local"  # "local": the command started the ranks; "torchrun": it joined a job


_GROUP: Group | None = None


def attach(group: Group) -> None:
    global _GROUP
    _GROUP = group


def detach() -> None:
    global _GROUP
    _GROUP = None


def current_group() -> Group:
    if _GROUP is None:
        raise MinibatchError("the ddp engine runs inside its launcher: use train/run with --engine ddp")
    return _GROUP
