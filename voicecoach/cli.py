"""Command line: one ``main()`` that parses arguments, wires the parts and prints errors as one line."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from voicecoach import __version__
from voicecoach.commands import DefaultsFormatter
from voicecoach.errors import OutputLost, VoicecoachError

_LOGGER = logging.getLogger(__name__)

#: Sub-command modules under voicecoach.commands; each has ``add_parser(subparsers)`` which
#: registers its parser and sets ``func=run(args) -> int`` as a default.
COMMAND_MODULES = (
    "run", "demo", "diagram", "listen", "model", "history", "serve", "start", "doctor", "config",
    "enroll",
    "treadmill",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, with where to look for help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"voicecoach: error: {message}; see '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command that is installed."""
    parser = OneLineParser(
        prog="voicecoach",
        description="Hands-free voice coach for walking backwards on a treadmill.",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voicecoach {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    parser.add_argument("--data-dir", default=None,
                        help="where history is kept (default: $VOICECOACH_HOME or the "
                             "per-user data folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"voicecoach.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"voicecoach.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a write error shows here, not at exit as a stray traceback
        return code
    except OutputLost as exc:
        return _output_lost(exc)
    except VoicecoachError as exc:
        print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("voicecoach: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if not _output_error(exc):
            raise
        return _output_lost(OutputLost(exc))


#: errno values of a write that the output refused (a full disk, an I/O error).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EPIPE}


def _output_error(exc: OSError) -> bool:
    """Whether ``exc`` is stdout refusing a write: a closed pipe, or a write error that
    names no file (errors opening or writing named files carry their name, and the
    commands turn those into their own one-line errors)."""
    if isinstance(exc, BrokenPipeError):
        return True
    return exc.filename is None and exc.errno in _WRITE_ERRNOS


def _output_lost(exc: OutputLost) -> int:
    """One line on stderr; stdout is pointed at /dev/null so the interpreter's last flush
    at exit cannot print a second complaint."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
    return int(exc.code or 1)
