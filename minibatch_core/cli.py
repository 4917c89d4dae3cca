"""``minibatch-bench``: one entry point, one subcommand module each (see ``commands/``).

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
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
}

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; users asked for one clear line."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="minibatch-bench",
        description="Benchmark mini-batch training of the lesson's MLP: batch size x device x seeds "
        "x datasets x engines. Run a subcommand with --help for its options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in COMMANDS.values():
        import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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


if __name__ == "__main__":
    sys.exit(main())
