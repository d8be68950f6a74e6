"""Is the history file sound? One clear error for every way it is not (damaged, newer, read-only,
full, locked), and a read-only look that never changes it."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from voicecoach.errors import VoicecoachError
from voicecoach.history.schema import SCHEMA_VERSION

_LOGGER = logging.getLogger(__name__)

#: How long a writer waits for another process's transaction before giving up (ms). Ours
#: last a millisecond or two, so this only matters under heavy contention.
BUSY_TIMEOUT_MS = 10_000


#: SQLite result codes (primary, the low byte) that mean "this file is not a sound database";
#: every other failure (read-only, full, I/O, permissions, locks) leaves the file unharmed.
_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_READONLY, _FULL, _CANTOPEN, _PERM, _BUSY, _LOCKED, _IOERR = 8, 13, 14, 3, 5, 6, 10


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file itself is damaged (not merely unreadable or unwritable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _DAMAGED_CODES
    text = str(exc).lower()  # Python 3.10: no error code, go by SQLite's message
    if any(word in text for word in ("malformed", "not a database", "corrupt", "encrypted")):
        return True
    return not isinstance(exc, sqlite3.OperationalError)


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
        return VoicecoachError(
            f"cannot write history database {path}: the disk is full "
            "(the history itself is unharmed)",
            f"free some space on the disk that holds {folder} (df -h '{folder}'), "
            "or choose another --data-dir")
    if primary in (_BUSY, _LOCKED) or "locked" in text:
        return VoicecoachError(f"history database {path} is locked by another program",
                               "close it and try again")
    if primary in (_CANTOPEN, _PERM) or "unable to open" in text or errno_ == 13:
        return VoicecoachError(
            f"cannot open history database {path} ({' '.join(str(exc).split())})",
            f"check that {folder} exists and that you may {doing} it, or use --data-dir")
    return VoicecoachError(f"cannot {doing} history database {path} ({' '.join(str(exc).split())})",
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


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that never writes. ``mode=ro`` still needs the WAL index beside the file;
    where the folder cannot be written and there is none, ``immutable=1`` reads the file as
    it is (nobody can be writing it there)."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if not folder_read_only(path.parent):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None,
                           check_same_thread=False)


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
