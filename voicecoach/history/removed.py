"""A history file removed while a session writes it (its data folder deleted under a running
session): what the open connection still holds is written back at the path, and writing goes
on there (``HistoryDB.transaction`` calls :func:`put_back_if_removed` before each write)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from voicecoach.errors import VoicecoachError
from voicecoach.history.faults import HistoryUnavailable
from voicecoach.history.replaced import copy_out, file_identity

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)


def put_back_if_removed(db: HistoryDB) -> None:
    """The file was deleted under us (the data folder removed while a session runs):
    SQLite goes on writing into the deleted file without a word, and all of it, this
    session and every earlier one, is gone when the connection closes. What the open
    connection still holds is written back at the file's path (one log line), and
    writing goes on there; when that cannot be done, the write fails as unavailable (the
    recorder keeps the session in memory and tries again).

    The old connection is let go (its log emptied into the deleted file, closed, its
    empty ``-wal`` and ``-shm`` removed: history/replaced.py's ``let_go``) before the
    copy is put at the path and opened: a ``-shm`` left at the path is shared by both,
    and closing the old connection after the new one had opened it dropped this
    process's locks on it (POSIX fcntl), among them the one that tells other processes
    the log index is in use."""
    if db.read_only:
        return
    if db._written_back is not None:
        open_written_back(db, db._written_back)
        return
    try:
        os.stat(db.path)
        return
    except FileNotFoundError:
        pass
    except OSError:
        return  # a folder that cannot be looked into: SQLite says what is wrong
    _LOGGER.warning("history: %s was removed while in use; writing it again from the "
                    "copy still open", db.path)
    part = db.path.with_name(db.path.name + ".restoring")
    try:
        if db.conn.in_transaction:
            db._rollback()
        db.path.parent.mkdir(parents=True, exist_ok=True)
        db._busy_ms = copy_out(db.conn, part, db.path)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise HistoryUnavailable(
            f"history database {db.path} was removed and cannot be written again "
            f"({str(exc).rstrip('.')})",
            f"check that {db.path.parent} can be written; the session is kept in "
            "memory meanwhile") from None
    # From here the history is only in the copy: it is opened (or tried again) before
    # any other read or write.
    db._written_back = part
    open_written_back(db, part)


def open_written_back(db: HistoryDB, part: Path) -> None:
    """Put the copy of a removed history at its path and write through it from now on;
    when it cannot be opened, the write fails as unavailable (the session is kept in
    memory, said once) and this is tried again before the next one."""
    try:
        if os.path.lexists(part):
            os.replace(part, db.path)
        fresh = db._connect(db.path, read_only=False).conn
    except (OSError, VoicecoachError) as exc:  # its own words, about "it"
        detail = (exc.message.replace(f"history database {db.path}", "it", 1)
                  if isinstance(exc, VoicecoachError) else str(exc))
        raise HistoryUnavailable(
            f"history database {db.path} was removed while in use and written again, "
            f"but cannot be opened ({detail.rstrip('.')})",
            f"check that {db.path.parent} can be written") from None
    fresh.execute(f"PRAGMA busy_timeout = {db._busy_ms}")
    db.conn = fresh
    db.identity = file_identity(db.path)
    db._written_back = None
    _LOGGER.info("history: %s is written again and in use", db.path)
