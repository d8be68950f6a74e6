"""Command line: one ``main()`` that parses arguments, wires the parts and prints errors as one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from voicecoach import __version__
from voicecoach.commands import DefaultsFormatter
from voicecoach.errors import OutputLost, VoicecoachError, report

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
    real_stdout = sys.stdout
    sys.stdout = _Stdout(real_stdout)  # type: ignore[assignment]
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a write error shows here, not at exit as a stray traceback
        return code
    except OutputLost as exc:
        return _output_lost(exc, real_stdout)
    except VoicecoachError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("voicecoach: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = real_stdout


class _Stdout:
    """sys.stdout, with a refused write (a closed pipe, a full disk) raised as OutputLost:
    told apart from every other OSError by where it happened, not by its errno."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as exc:
            raise OutputLost(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputLost(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _output_lost(exc: OutputLost, stdout: Any) -> int:
    """One line on stderr; stdout is pointed at /dev/null so the interpreter's last flush
    at exit cannot print a second complaint."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
    return int(exc.code or 1)
