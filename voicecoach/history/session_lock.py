"""One session at a time per data folder: the kernel's lock that refuses a second session (in
another process) while one runs, shared within a process by a session and the record, still
being written, of the one before it."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

#: Held (flock) by the process whose session is running on a data folder.
SESSION_LOCK = "session.lock"
#: The session locks this process holds, by the lock file's (device, inode): the open file
#: holding it, and how many of this process's sessions hold it.
_HELD: dict[tuple[int, int], tuple[TextIO, int]] = {}
_HELD_GUARD = threading.Lock()


@contextmanager
def one_session_at_a_time(data_dir: Path) -> Iterator[None]:
    """Refuse (one line) a second session on the same data folder while one runs: two
    coaches would share one history, and one user cannot walk two sessions. The lock is the
    kernel's (flock), so a crashed or killed session never leaves it behind.

    Within one process the lock is shared: the device loop starts a session only when none is
    running, but the record of the one before may still be being written (another program
    held the history at its end, see ``DeviceLoop._end_session``), and it keeps the lock
    until it is; the next session of this process is not refused for it."""
    path = Path(data_dir) / SESSION_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle: TextIO = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the session
        st = os.fstat(handle.fileno())
    except OSError as exc:
        # A folder nothing can be written in: the history says why, in its own words (it
        # cannot take a session there either, so there is nothing to guard).
        _LOGGER.debug("history: no session lock in %s: %s", data_dir, exc)
        yield
        return
    key = (st.st_dev, st.st_ino)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            try:
                _take(handle, data_dir)
            except BaseException:
                with contextlib.suppress(OSError):
                    handle.close()
                raise
            held = (handle, 0)
        else:  # this process holds it already: a session's record still being written
            with contextlib.suppress(OSError):
                handle.close()
        _HELD[key] = (held[0], held[1] + 1)
    try:
        yield
    finally:
        with _HELD_GUARD:
            handle, count = _HELD.pop(key)
            if count > 1:
                _HELD[key] = (handle, count - 1)
            else:
                with contextlib.suppress(OSError):  # an unwritten pid on a full disk: no matter
                    handle.close()  # and the lock with it


def _take(handle: TextIO, data_dir: Path) -> None:
    """Take the session lock on ``handle`` and write this process's id in it, or refuse."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip()
        raise VoicecoachError(
            f"another voicecoach session is running on {data_dir}"
            + (f" (process {pid})" if pid.isdigit() else ""),
            "let it end (say stop) before starting another, or use another --data-dir"
        ) from None
    try:  # who holds it, for the refusal's line; a full disk only loses that
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
    except OSError as exc:
        _LOGGER.debug("history: session lock: %s", exc)
