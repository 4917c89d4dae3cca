"""``minibatch-bench server status|stop``: the warm worker server that spares commands torch's import."""

from __future__ import annotations

import argparse
import os

SUMMARY = "show or stop the warm worker server (it keeps torch imported between commands)"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "server", help=SUMMARY,
        description="train, run, study and the bench fork each run from a warm worker server: a process that "
        "imported torch, scikit-learn and the engines once (about 3 s on a 2-core CPU) and forks a fresh, "
        "never-used worker per run, so run memory stays each run's own. The first command starts it; it exits "
        "after 10 minutes without a request (MINIBATCH_BENCH_SERVER_IDLE_S), when the package's code changes "
        "(a new one replaces it), or on `stop`. MINIBATCH_BENCH_SERVER=off runs every command without it.",
    )
    p.add_argument("action", choices=("status", "stop"), metavar="status|stop",
                   help="status: list the running servers; stop: end them")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from minibatch_core.running import warm

    warm.use_for_commands()  # what train, run, report, study and compare see
    running = warm.servers()
    if args.action == "stop":
        n = warm.stop(running)
        print(f"stopped {n} warm worker server{'s' if n != 1 else ''}" if n else "no warm worker server was running")
        return 0
    if not warm.enabled():
        print(f"the warm worker server is off: {warm.ENV_SWITCH}={os.environ.get(warm.ENV_SWITCH)} (commands start "
              "a worker process server of their own each time)")
    if not running:
        print("no warm worker server is running (the next train, run or study starts one)")
    for info in running:
        print(f"pid {info['pid']} | started {info.get('started_utc', '?')} | {info.get('requests', '?')} requests "
              f"served | python {info.get('python', '?')} | package {info.get('package', '?')} | "
              f"socket {info['socket']}")
    return 0
