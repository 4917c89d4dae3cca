"""``minibatch-bench``: one entry point, one subcommand module each (see ``commands/``).

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

from minibatch_core.errors import MinibatchError

# subcommand name -> module with add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "train": "minibatch_core.commands.train",
    "run": "minibatch_core.commands.run",
    "report": "minibatch_core.commands.report",
    "count": "minibatch_core.commands.count",
    "compare": "minibatch_core.commands.compare",
    "baseline": "minibatch_core.commands.baseline",
    "study": "minibatch_core.commands.study",
    "gate": "minibatch_core.commands.gate",
    "server": "minibatch_core.commands.server",
}
# The one-line help of each subcommand, as its module's add_parser gives it (a test keeps them equal):
# the top-level --help lists them without importing the modules, some of which need pandas.
SUMMARIES = {
    "train": "train once and print the lesson's per-epoch lines and a run summary",
    "run": "sweep batch size x device x seeds x datasets x engines; write runs.csv, tables, plots, report",
    "report": "rebuild summary, plots and report of a sweep folder from its runs.csv (no training)",
    "compare": "compare a current result set with a baseline; exit 1 on a regression",
    "baseline": "manage the committed baseline that `compare` checks against (see `baseline update`)",
    "study": "tune the learning rate per batch size, count steps/time to a validation target, fit the "
    "critical batch",
    "count": "count the CPU instructions of training per configuration under valgrind (instructions.csv)",
    "gate": "the CI regression gate: instruction counts vs a committed baseline, plus wall time",
    "server": "show or stop the warm worker server (it keeps torch imported between commands)",
}

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; users asked for one clear line."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``argv`` only the subcommand it names in full (the others as their
    one-line help), so that a command pays only for its own module's imports."""
    parser = OneLineParser(
        prog="minibatch-bench",
        description="Benchmark mini-batch training of the lesson's MLP: batch size x device x seeds "
        "x datasets x engines. Run a subcommand with --help for its options.",
    )
    from minibatch_core import __version__

    parser.add_argument("--version", action="version", version=f"minibatch-bench {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, module in COMMANDS.items():
        if chosen is None or name == chosen or name not in SUMMARIES:  # a command without a summary: slower, right
            import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    return parser


# commands handed whole to a running warm worker server (see running/warm.py): those that import torch,
# pandas or matplotlib, whose imports cost seconds in a new process
SERVED = ("train", "run", "report", "study", "compare")


def main(argv: Sequence[str] | None = None, *, serve: bool = True) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if serve:
        served = _in_warm_server(argv)
        if served is not None:
            return served
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MinibatchError as err:
        print(f"minibatch-bench {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"minibatch-bench {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - a bug must not exit 1, which means "regressed" to compare
        if os.environ.get("MINIBATCH_DEBUG"):
            traceback.print_exc()
        print(f"minibatch-bench {args.command}: internal error: {type(err).__name__}: {err} (a bug: please "
              "report it; MINIBATCH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT


def _in_warm_server(argv: list[str]) -> int | None:
    """The command's exit code, run by a child of the warm worker server where one runs for this code and
    environment; None where none does (the command then runs here). The child takes over this process's
    folder, environment, argv, stdout and stderr; Ctrl-C here is passed on to it."""
    name = next((a for a in argv if not a.startswith("-")), "")
    if name not in SERVED:
        return None
    from minibatch_core.running import warm

    warm.use_for_commands()
    sock = warm.answering()
    if sock is None:
        return None
    try:
        # by its module's name: run as `python -m minibatch_core.cli`, this module is __main__, which the
        # server's child cannot import
        served = import_module("minibatch_core.cli")._served
        status, payload = warm.call(served, (argv,), sock=sock, forward_interrupt=True)
    except warm.ServerGone:  # it was exiting (idle) as this connected: run here, which starts a new one
        return None
    except KeyboardInterrupt:
        print(f"minibatch-bench {name}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        print(f"minibatch-bench {name}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if status == "ok":
        return int(payload)
    print(f"minibatch-bench {name}: internal error: {payload.splitlines()[0]} (a bug: please report it)",
          file=sys.stderr)
    return EXIT_BAD_INPUT


def _served(argv: list[str]) -> int:
    """``main`` in the warm server's child; argparse's exits (--help, a usage error) become exit codes."""
    from minibatch_core.running import warm

    warm.use_for_commands()  # its workers come from the server too
    try:
        return main(argv, serve=False)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
