"""A history file replaced while a session writes it: the session is carried into the file now
at the path, or, when that file is not a history this version can write, kept beside it.

A backup restored over the history, `mv other.sqlite3 history.sqlite3`, a sync tool or an
editor saving by rename: the path now names another file, and SQLite goes on writing into the
old one, unlinked, so the session was lost when it closed. Worse, the old file's write-ahead
log and its index (``-wal``, ``-shm``) are named after the path and SQLite leaves them there
when it closes a moved file: the next open read the new file through the old file's log, and
the restored history came back damaged.

So, before the next write (``HistoryDB.transaction``):

1. What the open connection holds is copied to ``<history>.replacing`` (a full copy, beside
   the history) and the rows of the sessions it is writing (``HistoryDB.writing``) are read;
   if either fails the write fails as unavailable and all is tried again at the next one.
2. Its log is checkpointed into the old file and emptied (TRUNCATE) and the connection
   closed; the empty ``-wal`` and the ``-shm`` it leaves at the path are removed (a ``-wal``
   that is not empty is another file's and is left alone).
3. The file at the path is opened as any history is (checked, migrated). If it opens and
   takes the rows, the running session is added to it with a new id (its own sessions are
   untouched; the session is the last recorded, so it comes last), the recorder follows the
   new id (``HistoryDB.renumbered``), the copy is removed, and one line says so.
4. Otherwise (not a database, damaged, another program's tables, a newer schema, or it cannot
   be written) that file is never written: the copy, which holds the history it replaced with
   this session, becomes ``<history>.replaced`` (``-2``, ``-3``... never over an earlier
   one), the session goes on there, and one line says where and why.

Not handled: a file overwritten in place (``cp`` onto the same inode) cannot be told from
writes of our own, and another program holding the old file open at that moment shares its
log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicecoach.errors import VoicecoachError
from voicecoach.history.faults import HistoryUnavailable

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)

#: The tables that hold a session: its row first, then the rows that name it.
TABLES = ("sessions", "phases", "events", "commands", "pain_reports")
#: The copy made before the old file is let go, and the name it keeps when the file at the
#: path is not a history (the history's own name plus this, then -2, -3...).
PART_SUFFIX, KEPT_SUFFIX = ".replacing", ".replaced"

#: Per table: its columns (without ``id``; ``sessions`` rows start with their id) and rows.
Rows = dict[str, tuple[list[str], list[list[Any]]]]


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != "id"]


def take(conn: sqlite3.Connection, ids: list[int]) -> Rows:
    """The rows of sessions ``ids`` and of everything that names them, in their order."""
    rows: Rows = {}
    marks = ", ".join("?" for _ in ids)
    for table in TABLES:
        columns = _columns(conn, table)
        if table == "sessions":
            select, where = ", ".join(["id", *columns]), f"id IN ({marks})"
        else:
            select, where = ", ".join(columns), f"session_id IN ({marks})"
        found = conn.execute(f"SELECT {select} FROM {table} WHERE {where} ORDER BY id", ids)
        rows[table] = (columns, [list(r) for r in found])
    return rows


def put(conn: sqlite3.Connection, rows: Rows, ids: dict[int, int] | None = None
        ) -> dict[int, int]:
    """Add ``rows`` to the history open on ``conn`` (in the caller's transaction), each session
    with a new id; returns the new id of each old one. ``ids``: sessions already there (old
    id -> their id), whose other rows are added to them (their ``sessions`` row is left out of
    ``rows``)."""
    new_ids: dict[int, int] = dict(ids or {})
    for table in TABLES:
        columns, found = rows[table]
        there = set(_columns(conn, table))
        keep = [i for i, c in enumerate(columns) if c in there]
        names = ", ".join(columns[i] for i in keep)
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in keep)})"
        for row in found:
            if table == "sessions":
                old_id, values = int(row[0]), row[1:]
                new_ids[old_id] = int(conn.execute(sql, [values[i] for i in keep]).lastrowid
                                      or 0)
            else:
                values = list(row)
                at = columns.index("session_id")
                values[at] = new_ids[int(values[at])]
                conn.execute(sql, [values[i] for i in keep])
    return new_ids


def free_name(path: Path, suffix: str = KEPT_SUFFIX) -> Path:
    """``<history>.replaced`` (or another ``suffix``), or the first of ``-2``, ``-3``... that
    does not exist."""
    first = path.with_name(path.name + suffix)
    candidates = (first if n == 1 else first.with_name(f"{first.name}-{n}")
                  for n in range(1, 10_000))
    return next(p for p in candidates if not os.path.lexists(p))


def let_go(conn: sqlite3.Connection, path: Path) -> None:
    """Close the connection on the old file with its log emptied into it, and remove the
    empty log and its index that SQLite leaves at the path for a moved file. Whatever file
    then comes to the path is opened only after this: the old connection and the new one
    would share the ``-shm`` at the path, and closing the old one drops (POSIX fcntl) every
    lock this process holds on it, the new one's too, among them the lock that tells other
    processes the log index is in use (history/removed.py's put-back does the same).

    Raises (the connection still open) when the log cannot be emptied; once the connection
    is closed it does not: a leftover that cannot be removed is empty, and harmless."""
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy is not None and busy[0]:
        raise sqlite3.OperationalError("another program is reading the replaced file")
    conn.close()
    wal = path.with_name(path.name + "-wal")
    try:
        empty = os.path.getsize(wal) == 0
    except OSError:
        empty = True  # none: nothing to lose
    if empty:
        for leftover in (wal, path.with_name(path.name + "-shm")):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
            except OSError as exc:  # empty: the next opener rebuilds the index from nothing
                _LOGGER.debug("history: %s is left: %s", leftover, exc)


def copy_out(old: sqlite3.Connection, part: Path, path: Path) -> int:
    """Copy what ``old`` holds into the file ``part`` (SQLite's backup: page for page), then
    let the old connection go (:func:`let_go`); returns its lock wait (busy timeout, ms) for
    the connection that takes over. Raises (OSError, sqlite3.Error) with the old connection
    still open only before :func:`let_go` closes it."""
    copy = sqlite3.connect(str(part), isolation_level=None)
    try:
        old.backup(copy)
    finally:
        copy.close()
    busy = int(old.execute("PRAGMA busy_timeout").fetchone()[0])
    let_go(old, path)
    return busy


def take_replacement(db: HistoryDB) -> None:
    """Follow a history file replaced under ``db`` (see the module's docstring)."""
    path, old = db.path, db.conn
    part = path.with_name(path.name + PART_SUFFIX)
    ids = sorted(db.writing)
    try:
        if old.in_transaction:
            old.execute("ROLLBACK")
        rows = take(old, ids)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()  # a copy left by a crash at this very step: ours, and stale
        busy = copy_out(old, part, path)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise HistoryUnavailable(
            f"history database {path} was replaced while in use, and this session cannot "
            f"be copied out of the old one yet ({exc})",
            f"check that {path.parent} can be written; the session is kept in memory "
            "meanwhile") from None
    why = ""
    try:
        fresh = db._connect(path, read_only=False)
    except VoicecoachError as exc:  # its own words, about "it" (the path is said once)
        why = exc.message.rstrip(".").replace(f"history database {path}", "it", 1)
    else:
        try:
            fresh.conn.execute("BEGIN IMMEDIATE")
            new_ids = put(fresh.conn, rows)
            fresh.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                fresh.conn.execute("ROLLBACK")
            fresh.conn.close()
            why = f"it cannot be written ({exc})"
        else:
            db.adopt(fresh, busy)
            db.renumbered = {k: new_ids.get(v, v) for k, v in db.renumbered.items()}
            db.renumbered.update(new_ids)
            db.writing = set(new_ids.values())
            with contextlib.suppress(OSError):
                part.unlink()
            added = ", ".join(f"session {old_id} is added to it as session {new_id}"
                              for old_id, new_id in new_ids.items())
            _LOGGER.warning("history: %s was replaced while in use; %s", path,
                            added or "no session was running, and writing goes on in it")
            return
    _keep_beside(db, path, part, busy, why)


def _keep_beside(db: HistoryDB, path: Path, part: Path, busy: int, why: str) -> None:
    """The file at ``path`` is not one to write: the copy becomes ``<history>.replaced``."""
    kept = free_name(path)
    try:
        os.replace(part, kept)
        fresh = db._connect(kept, read_only=False)
    except (OSError, VoicecoachError) as exc:
        detail = exc.one_line() if isinstance(exc, VoicecoachError) else str(exc)
        raise HistoryUnavailable(
            f"history database {path} was replaced by a file that cannot be written "
            f"({why}), and the session cannot be kept in {kept} either "
            f"({detail.rstrip('.')})",
            f"check that {path.parent} can be written; the session is kept in memory "
            "meanwhile") from None
    db.path = kept
    db.adopt(fresh, busy)
    _LOGGER.warning("history: %s was replaced while a session was being recorded, by a file "
                    "this voicecoach cannot write (%s); it is left as it is, and the session, "
                    "with the history it replaced, is written to %s", path, why, kept)
