"""The one error type a user sees: a message that says what is wrong and how to fix it."""

from __future__ import annotations

import errno
import sys
import traceback
from pathlib import PurePath


class VoicecoachError(Exception):
    """A user-facing error: printed as one line by the CLI, which then exits non-zero.

    ``message`` says what is wrong; ``hint`` says how to fix it.
    """

    def __init__(self, message: str, hint: str = "", exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        """The message and the fix on one line, as the CLI prints it."""
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint.rstrip('.')}"
        return " ".join(text.split()) + "."


def write_fix(exc: OSError) -> str:
    """How to fix a file that could not be written, from why: a full disk is not a folder
    problem, and a missing folder is not a permission one."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space on that disk, or give a path on another one"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "give a path in a folder you can write to"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "check that the folder exists"
    return "check that the folder exists and is writable"


def describe(exc: BaseException) -> str:
    """``exc`` on one line: its type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def where_raised(exc: BaseException) -> str:
    """Where ``exc`` was raised: its innermost frame as ``path:line in function``, the path
    from the package's folder when it is ours."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    parts = PurePath(frame.filename).parts
    ours = [i for i, part in enumerate(parts) if part == "voicecoach"]
    path = "/".join(parts[ours[-1]:]) if ours else PurePath(frame.filename).name
    return f"{path}:{frame.lineno} in {frame.name}"


#: Exit code when the output went away: a closed pipe (as a process killed by SIGPIPE shows
#: in a shell: 128 + 13), or 1 for any other write error (a full disk).
BROKEN_PIPE_EXIT = 141


class OutputLost(SystemExit):
    """stdout cannot be written (``demo | head -1``, ``> /dev/full``). A SystemExit, so a
    session unwinds as one the user ended (recorded as stopped) and nothing catches it as
    an ordinary error; the CLI prints one line."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(BROKEN_PIPE_EXIT if isinstance(exc, BrokenPipeError) else 1)
        self.reason = exc.strerror or str(exc) or type(exc).__name__

    def one_line(self) -> str:
        return f"cannot write the output ({self.reason})."


def report(exc: VoicecoachError) -> int:
    """Every command line's error path: ``exc`` as one line on stderr; its exit code."""
    print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
    return exc.exit_code
