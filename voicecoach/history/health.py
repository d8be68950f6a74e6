"""The history's health as doctor and serve see it, read without writing a byte: its state,
and whether another program holds its write lock."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from voicecoach.errors import VoicecoachError
from voicecoach.history.db import HistoryDB, read_only_connection
from voicecoach.history.faults import database_error, is_damage
from voicecoach.history.schema import SCHEMA_VERSION, user_version

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryState:
    """What ``doctor`` says about a history file: ``state`` is one of none, ok, locked,
    read-only, damaged, newer-schema, unreadable; ``sessions`` and ``odd_rows`` are counted when it reads."""

    path: Path
    state: str
    detail: str = ""
    fix: str = ""
    sessions: int = 0
    odd_rows: int = 0
    version: int = 0


def inspect_history(path: Path) -> HistoryState:
    """The state of the history at ``path``, read without writing a byte to it."""
    if not path.exists():
        return HistoryState(path, "none")
    if path.is_dir():
        return HistoryState(path, "unreadable", f"{path} is a folder",
                            "move it aside or choose another --data-dir")
    try:
        conn = read_only_connection(path)
        db = HistoryDB._prepare_read_only(path, conn, any_version=True)
    except sqlite3.Error as exc:
        error = database_error(path, exc, "read")
        state = "damaged" if is_damage(exc) else "unreadable"
        return HistoryState(path, state, error.message, error.hint)
    except VoicecoachError as exc:
        state = ("newer-schema" if "newer than" in exc.message else
                 "damaged" if "damaged" in exc.message else "unreadable")
        return HistoryState(path, state, exc.message, exc.hint)
    try:
        version = user_version(db.conn)
        count = len(db.sessions()) if version == SCHEMA_VERSION else 0
        odd = db.unreadable_rows() if version == SCHEMA_VERSION else 0
    except VoicecoachError as exc:
        return HistoryState(path, "damaged" if "damaged" in exc.message else "unreadable",
                            exc.message, exc.hint)
    finally:
        db.close()
    folder = path.parent
    writable = os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)
    if writable:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError:  # a read-only file system says no even to root
            writable = False
    if writable:
        holder = write_lock_holder(path)
        if holder:
            return HistoryState(path, "locked", f"locked by another program ({holder}): no "
                                "session can be recorded until it lets go",
                                "close the program holding it (a backup, an sqlite3 shell); "
                                "the coach waits and tries again", count, odd, version)
    if not writable:
        return HistoryState(path, "read-only", "the folder or the file is read-only: `history` "
                            "shows it, but no new session can be recorded",
                            f"make it writable (chmod u+w '{folder}' '{path}') or choose "
                            "another --data-dir", count, odd, version)
    return HistoryState(path, "ok", "", "", count, odd, version)


def write_lock_holder(path: Path, wait_s: float = 1.0) -> str:
    """Why a session could not write ``path`` now ('' when it could): takes the write lock
    for a moment and gives it back (no byte of the file changes)."""
    try:
        conn = sqlite3.connect(str(path), timeout=wait_s, isolation_level=None)
    except sqlite3.Error as exc:
        return " ".join(str(exc).split())
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return ""
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        return " ".join(str(exc).split()) if ("locked" in text or "busy" in text) else ""
    finally:
        conn.close()
