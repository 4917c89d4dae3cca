"""``minibatch-bench``: one entry point, one subcommand module each (see ``commands/``).

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

from minibatch_core.commands import SUMMARIES
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
    "ab": "minibatch_core.commands.ab",
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _interrupt_on_termination()
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
    except OSError as err:  # disk full, stdout to /dev/full, a folder made unreadable meanwhile: no bug
        if err.errno not in _ENVIRONMENT_ERRNOS:
            return _internal_error(args.command, err)
        where = f" ({err.filename})" if err.filename else ""
        print(f"minibatch-bench {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"minibatch-bench {args.command}: error: out of memory (the input or plan is too large for this "
              "machine)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - a bug must not exit 1, which means "regressed" to compare
        return _internal_error(args.command, err)


def entry() -> None:
    """The ``minibatch-bench`` script and ``python -m minibatch_core``: ``main``, then exit without the
    interpreter's teardown. Tearing down the modules a command loaded (torch, scikit-learn, pandas,
    matplotlib) took 1.1-1.2 s on the 2-core machine, after the command's work was done and its files
    closed; every exit handler still runs (multiprocessing's, temporary folders', a progress bar's)."""
    exit_now(main())


def exit_now(code: int) -> None:
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)  # a thread still working: the interpreter's exit waits for it, as it should
    atexit._run_exitfuncs()  # what a normal exit runs, then only the module teardown is skipped
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a reader that left: nothing more can be said there
            pass
    os._exit(code)


def _internal_error(command: str, err: BaseException) -> int:
    if os.environ.get("MINIBATCH_DEBUG"):
        traceback.print_exc()
    print(f"minibatch-bench {command}: internal error: {type(err).__name__}: {err} (a bug: please "
          "report it; MINIBATCH_DEBUG=1 shows the traceback)", file=sys.stderr)
    return EXIT_BAD_INPUT


# errors the machine or the user's files cause, not the code: disk full, read-only, no permission, ...
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                       errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EFBIG, errno.ENAMETOOLONG, errno.ELOOP}


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP (a `kill`, a closed terminal) end a command the way Ctrl-C does: through
    KeyboardInterrupt, so that every cleanup a Ctrl-C runs (env.json's "interrupted", worker processes,
    valgrind, temporary folders) runs for them too."""
    import signal

    def interrupt(signum, frame):  # noqa: ARG001 - the signal handler's signature
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the cleanup itself
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, interrupt)
    except (ValueError, AttributeError):  # not the main thread, or a platform without SIGHUP
        pass


if __name__ == "__main__":
    entry()
