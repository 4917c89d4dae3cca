"""The ddp engine's process group as the engine sees it, and rank 0's command channel to the others.

The launcher (``running/distributed.py``) makes the process group and :func:`attach`-es it here. Rank 0
steers the other ranks with commands broadcast over a gloo *control* group (whatever the training
backend): start a session (with the config and the data), run an epoch, profile, report, shut down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from minibatch_core.errors import MinibatchError

START, EPOCH, PROFILE, REPORT, SHUTDOWN = range(1, 6)


@dataclass
class Group:
    """This process's place in the job, set by the launcher once the process group exists."""

    rank: int
    world: int
    local_rank: int
    backend: str
    control: Any  # a gloo group: commands and pickled objects travel here, whatever the backend
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


def command(group: Group, code: int, arg: int = 0) -> tuple[int, int]:
    message = torch.tensor([code, arg], dtype=torch.int64)
    dist.broadcast(message, src=0, group=group.control)
    return int(message[0]), int(message[1])


def share(group: Group, obj: Any = None) -> Any:
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group.control)
    return box[0]


def shutdown() -> None:
    """Rank 0: release the other ranks (they return from :func:`serve`)."""
    command(current_group(), SHUTDOWN)
