"""``--executor``, ``--ray-address`` and ``--runs-per-node``, shared by ``run`` and ``study``.

Defaults are None on the parser so a TOML file's ``[executor]`` table (``run --config``) or a resumed
sweep's recorded executor applies unless the flag is given. Nothing here imports Ray.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from minibatch_core.errors import MinibatchError


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("executor (where the runs execute)")
    g.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="local (default): one run at a time in this command's processes; ray: each run one Ray "
                   "task on a cluster (needs `pip install minibatch-bench[ray]`; docs/ray.md)")
    g.add_argument("--ray-address", metavar="ADDRESS", default=None,
                   help="with --executor ray: auto = the cluster this machine belongs to (`ray start`), or "
                   "HOST:PORT; not given: a local Ray instance started for this command and stopped after it")
    g.add_argument("--runs-per-node", type=int, default=None, metavar="N",
                   help="with --executor ray: timed runs executing at once on one node (default 1, so timings "
                   "never contend; more is recorded and the report says the timings shared the node)")


def executor_from_args(args: argparse.Namespace, base: Mapping[str, Any] | None = None):
    """The executor options: ``base`` (a recorded or TOML ``[executor]`` table), then the flags given."""
    from minibatch_core.sweep.executors import ExecutorOptions

    options = ExecutorOptions.from_mapping(_table(base)) if base else ExecutorOptions()
    given: dict[str, Any] = {}
    if args.executor is not None:
        given["kind"] = args.executor
    if args.ray_address is not None:
        given["address"] = args.ray_address
    if args.runs_per_node is not None:
        given["runs_per_node"] = args.runs_per_node
    if given.get("kind") == "local" and options.kind == "ray":  # --executor local overrides a file's ray
        options = ExecutorOptions()
    if given and "kind" not in given and options.kind == "local":
        flag = "--ray-address" if "address" in given else "--runs-per-node"
        raise MinibatchError(f"{flag} applies to --executor ray only: add --executor ray")
    return ExecutorOptions.from_mapping(given, base=options)


def executor_from_toml(path: str) -> dict[str, Any] | None:
    """A TOML file's ``[executor]`` table (or ``executor = "ray"``), checked; None when it has none."""
    from minibatch_core.sweep.sweep import read_toml

    raw = read_toml(path).get("executor")
    if raw is None:
        return None
    try:
        from minibatch_core.sweep.executors import ExecutorOptions

        ExecutorOptions.from_mapping(_table(raw))
    except MinibatchError as err:
        raise MinibatchError(f"config file {path!r}: [executor]: {err}") from None
    return _table(raw)


def _table(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"kind": raw}
    if not isinstance(raw, Mapping):
        raise MinibatchError(f"executor {raw!r} is not valid: use a table, e.g. [executor] kind = \"ray\"")
    return {k: v for k, v in raw.items() if k not in ("ray_version", "nodes")}
