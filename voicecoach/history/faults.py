"""What can be wrong with a history file, told apart: damaged (move it aside), or merely
unwritable just now (read-only, full, locked, an I/O error), each as one error with its fix."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from voicecoach.errors import VoicecoachError
from voicecoach.history.schema import SCHEMA_VERSION, user_version

_LOGGER = logging.getLogger(__name__)
#: SQLite result codes (primary, the low byte) that mean "this file is not a sound database";
#: every other failure (read-only, full, I/O, permissions, locks) leaves the file unharmed.
_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_READONLY, _FULL, _CANTOPEN, _PERM, _BUSY, _LOCKED, _IOERR = 8, 13, 14, 3, 5, 6, 10


class HistoryUnavailable(VoicecoachError):
    """The history cannot be written just now (locked, disk full, an I/O error) but is
    unharmed: waiting or a retry can fix it without a person."""


class HistoryLocked(HistoryUnavailable):
    """Another program holds the history's write lock (a backup, an sqlite3 shell, an
    export): it lets go by itself, so a session starts anyway and is written afterwards."""


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file itself is damaged (not merely unreadable or unwritable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _DAMAGED_CODES
    text = str(exc).lower()  # Python 3.10: no error code, go by SQLite's message
    if any(word in text for word in ("malformed", "not a database", "corrupt", "encrypted")):
        return True
    return not isinstance(exc, sqlite3.OperationalError)


def is_lock(exc: BaseException) -> bool:
    """Whether ``exc`` is another program holding the history's lock (SQLite busy or locked):
    it lets go by itself, and nothing is lost meanwhile."""
    if isinstance(exc, HistoryLocked):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    return primary in (_BUSY, _LOCKED) or "locked" in str(exc).lower()


def access_error(path: Path, exc: sqlite3.Error | OSError, doing: str = "write") -> VoicecoachError:
    """The one error for a history that cannot be read or written but is not damaged."""
    folder = path.parent
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    if (primary == _READONLY or "readonly" in text or "read-only" in text or errno_ == 30
            or (primary != _FULL and folder_read_only(folder))):
        return VoicecoachError(
            f"cannot write history database {path}: the folder or the file is read-only "
            "(the history itself is unharmed)",
            f"make it writable (e.g. chmod u+w '{folder}' '{path}'), or choose a writable "
            "--data-dir or VOICECOACH_HOME")
    if primary == _FULL or "disk is full" in text or errno_ == 28:
        return HistoryUnavailable(
            f"cannot write history database {path}: the disk is full "
            "(the history itself is unharmed)",
            f"free some space on the disk that holds {folder} (df -h '{folder}'), "
            "or choose another --data-dir")
    if is_lock(exc):
        return HistoryLocked(f"history database {path} is locked by another program",
                                  "close it (a backup, an sqlite3 shell); the coach waits for "
                                  "it and tries again")
    if primary in (_CANTOPEN, _PERM) or "unable to open" in text or errno_ == 13:
        return VoicecoachError(
            f"cannot open history database {path} ({' '.join(str(exc).split())})",
            f"check that {folder} exists and that you may {doing} it, or use --data-dir")
    return HistoryUnavailable(
        f"cannot {doing} history database {path} ({' '.join(str(exc).split())})",
        "check the disk, free space and permissions, then try again")


def folder_read_only(folder: Path) -> bool:
    """Whether nothing can be written in ``folder``: a read-only file system (which stops
    root too) or, for other users, no write permission."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK)


def disk_full(folder: Path) -> bool:
    """Whether the disk holding ``folder`` has no room left for an ordinary user."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def database_error(path: Path, exc: sqlite3.Error, doing: str = "write") -> VoicecoachError:
    """Damaged (move it aside) or merely inaccessible (fix the folder): never confuse them."""
    return corrupt_error(path, exc) if is_damage(exc) else access_error(path, exc, doing)


def newer_error(path: Path, version: int) -> VoicecoachError:
    """The one error for a file written by a newer voicecoach."""
    return VoicecoachError(
        f"history database {path} has schema v{version}, newer than this voicecoach "
        f"(v{SCHEMA_VERSION})", "upgrade voicecoach, or use another --data-dir")


def corrupt_error(path: Path, detail: object) -> VoicecoachError:
    """The one error for a damaged file: name it and say how to get going again."""
    text = " ".join(str(detail).split())
    text = text if len(text) <= 100 else text[:97] + "..."
    return VoicecoachError(
        f"history database {path} is damaged or not a voicecoach database ({text})",
        f"move it aside (e.g. mv '{path}' '{path}.broken') and run again to start a new "
        "history; voicecoach never overwrites or deletes it")


def check_file(path: Path, conn: sqlite3.Connection) -> int:
    """Read-only checks in one snapshot, before anything is written: a damaged or
    foreign file fails here. Returns the schema version."""
    try:
        conn.execute("BEGIN")
        try:
            version = user_version(conn)
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if not version and tables:
                raise corrupt_error(path, "it holds tables but no voicecoach schema version")
            if version:
                rows = conn.execute("PRAGMA quick_check(1)").fetchall()
                if rows != [("ok",)]:
                    raise corrupt_error(path, f"integrity check: {rows[0][0]}")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc, "read") from None
    return version
