"""The workout log: one SQLite file per user, safe against crashes, power cuts and two writers."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from voicecoach.errors import VoicecoachError
from voicecoach.history import dating
from voicecoach.history.faults import (
    HistoryUnavailable,
    access_error,
    check_file,
    database_error,
    disk_full,
    folder_read_only,
    newer_error,
)
from voicecoach.history.recovery import as_recovered, recover_interrupted
from voicecoach.history.removed import open_written_back, put_back_if_removed
from voicecoach.history.replaced import file_identity, take_replacement
from voicecoach.history.rows import SUMMARY_SQL, SessionSummary, summary_of
from voicecoach.history.schema import SCHEMA_VERSION, migrate
from voicecoach.history.unwritten import as_merged, merge_all

_LOGGER = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
#: How long a writer waits for another process's transaction before giving up (ms). Ours
#: last a millisecond or two, so this only matters under heavy contention.
BUSY_TIMEOUT_MS = 10_000
#: Pages the write-ahead log may hold before it is copied back into the file.
WAL_PAGES = 64


def read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that never writes. ``mode=ro`` still needs the WAL index beside the file;
    where the folder cannot be written and there is none, ``immutable=1`` reads the file as
    it is (nobody can be writing it there; nor on a full disk, where nothing can be
    written)."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if not (folder_read_only(path.parent) or disk_full(path.parent)):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None,
                           check_same_thread=False)


class HistoryDB:
    """An open history database. Use :meth:`open`; one per process is plenty."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.host = socket.gethostname()
        self.lock = threading.RLock()
        self.read_only = False
        #: (device, inode) of the file the connection has open: another at the path means
        #: the history was replaced (history/replaced.py).
        self.identity = file_identity(path)
        #: Sessions being written through this connection (SessionRecorder.open adds its
        #: own): carried into a file that replaces the history while they run.
        self.writing: set[int] = set()
        #: A session's id in the file it was carried into, by any id it had before.
        self.renumbered: dict[int, int] = {}
        #: The copy of a removed history, written back but not open yet (the connection is
        #: closed meanwhile): history/removed.py.
        self._written_back: Path | None = None
        #: The write's wait for other programs' locks (ms), kept for a connection opened later.
        self._busy_ms = BUSY_TIMEOUT_MS
        #: Whether the opening's :meth:`tidy` met another program's lock and is still to do
        #: (recorder.tidy_unless_locked): the recorder does it before its session's row.
        self.tidy_owed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, data_dir: Path | str, *, recover: bool = True) -> HistoryDB:
        """Open (creating if needed) ``<data_dir>/history.sqlite3``, migrate it, mark
        sessions whose process died as interrupted, and date again this boot's sessions if
        the clock has been set since (history/dating.py). A damaged file is never written
        to."""
        data_dir = Path(data_dir).expanduser()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VoicecoachError(f"cannot create the data folder {data_dir} ({exc})",
                                  "choose another with --data-dir or VOICECOACH_HOME") from None
        return cls.open_file(data_dir / DB_NAME, recover=recover)

    @classmethod
    def open_file(cls, path: Path, *, recover: bool = True,
                  read_only_ok: bool = False) -> HistoryDB:
        """Open one database file (see :meth:`open`). With ``read_only_ok`` (for readers such
        as ``history``), a healthy, current file in a read-only place is opened read-only."""
        if path.is_dir():
            raise VoicecoachError(f"history database {path} is a folder",
                                  "move it aside or choose another --data-dir")
        try:
            db = cls._connect(path, read_only=False)
        except VoicecoachError as exc:
            readable = "read-only" in exc.message or isinstance(exc, HistoryUnavailable)
            if not (read_only_ok and readable and path.is_file()):
                raise
            _LOGGER.info("history: %s cannot be written now; reading it without writing", path)
            return cls._connect(path, read_only=True)
        if recover:
            try:
                db.tidy()
            except HistoryUnavailable:
                if not read_only_ok:
                    db.close()
                    raise
                # a reader on a full disk: the rows are read as they are (recovered later)
                _LOGGER.info("history: %s cannot be written now; read without recovering", path)
        return db

    @classmethod
    def _connect(cls, path: Path, *, read_only: bool) -> HistoryDB:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False:
            # the coach may emit events from several threads (self.lock serialises them).
            conn = read_only_connection(path) if read_only else sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False)
        except sqlite3.Error as exc:
            raise access_error(path, exc, "read") from None
        try:
            db = cls._prepare_read_only(path, conn) if read_only else cls._prepare(path, conn)
        except BaseException:
            conn.close()
            raise
        return db

    @classmethod
    def _prepare_read_only(cls, path: Path, conn: sqlite3.Connection,
                           any_version: bool = False) -> HistoryDB:
        version = check_file(path, conn)
        if version > SCHEMA_VERSION:
            raise newer_error(path, version)
        if version != SCHEMA_VERSION and not any_version:
            raise VoicecoachError(
                f"cannot read history database {path}: it is read-only and has schema "
                f"v{version}, which needs updating to v{SCHEMA_VERSION} first",
                f"make it writable (e.g. chmod u+w '{path.parent}' '{path}') and run again")
        db = cls(path, conn)
        db.read_only = True
        return db

    @classmethod
    def _prepare(cls, path: Path, conn: sqlite3.Connection) -> HistoryDB:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = check_file(path, conn)
        if version > SCHEMA_VERSION:
            raise newer_error(path, version)
        try:
            # WAL: readers never block the writer and a crash mid-write cannot damage the file.
            # synchronous=FULL (not NORMAL): in WAL mode NORMAL skips the fsync at commit, so
            # a power cut may roll back every commit since the last checkpoint (up to ~1000
            # pages, i.e. many minutes of a session). FULL syncs the WAL at each commit; we
            # commit a few small events a minute, so the cost is negligible and the promise
            # "at most the last few seconds are lost" also holds for power cuts.
            mode = _journal_mode_wal(conn)
            if str(mode).lower() != "wal":
                _LOGGER.warning("history: %s cannot use WAL (journal mode %s)", path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            # A small WAL: a session on a nearly full disk (or an SD card) needs a few
            # hundred KB, not the 4 MB a default auto-checkpoint lets it grow to.
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * 4096}")
            conn.execute("PRAGMA foreign_keys = ON")
            old, new = migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise database_error(path, exc) from None
        if old != new:
            _LOGGER.info("history: %s schema v%d -> v%d", path, old, new)
        return cls(path, conn)

    def close(self) -> None:
        with self.lock:
            self.conn.close()
            part = self._written_back
            if part is not None and os.path.lexists(part):  # not even put back: once more
                try:
                    os.replace(part, self.path)
                except OSError as exc:
                    _LOGGER.error("history: %s was removed while in use; it is kept in %s "
                                  "(%s)", self.path, part, exc)

    def busy_timeout(self, ms: int) -> None:
        """How long a write waits for another program's lock before failing (ms)."""
        if self.read_only:
            return
        with self.lock:
            self._busy_ms = int(ms)
            if self._written_back is not None:
                return  # set when it is open again
            try:
                self.conn.execute(f"PRAGMA busy_timeout = {int(ms)}")
            except sqlite3.Error as exc:
                _LOGGER.debug("history: busy_timeout: %s", exc)

    def __enter__(self) -> HistoryDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so it waits for other writers up front)."""
        with self.lock:
            put_back_if_removed(self)
            self._follow_if_replaced()
            if self.conn.in_transaction:
                # A write cut off between its BEGIN and its body (a signal's exception lands
                # between any two bytecodes): its transaction is still open and would make
                # this BEGIN, and so every later write of the session, fail.
                _LOGGER.debug("history: rolling back a write that was cut off")
                self._rollback()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                self._reraise(exc)
            try:
                yield self.conn
            except sqlite3.DatabaseError as exc:
                self._rollback()
                self._reraise(exc)
            except BaseException:
                self._rollback()
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()  # a failed COMMIT (disk full) can leave it open
                self._reraise(exc)

    def _follow_if_replaced(self) -> None:
        """Another file is at the path (a backup restored, a rename over it): this session is
        carried into it, or kept beside it when it is not a history to write
        (history/replaced.py); until then the write fails as unavailable (kept in memory)."""
        if self.read_only or self.identity is None:
            return
        now = file_identity(self.path)
        if now is not None and now != self.identity:
            take_replacement(self)

    def adopt(self, fresh: HistoryDB, busy_ms: int) -> None:
        """Write through ``fresh``'s connection from now on (the file at the path changed;
        the old connection is closed)."""
        fresh.conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        self.conn = fresh.conn
        self.identity = fresh.identity

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the failed statement may have ended it already
            _LOGGER.debug("history: rollback: %s", exc)

    def _reraise(self, exc: sqlite3.DatabaseError) -> NoReturn:
        raise database_error(self.path, exc) from None

    def recover_interrupted(self) -> list[int]:
        """Mark sessions left 'running' by a process that has died as interrupted
        (voicecoach.history.recovery); the ids marked."""
        return recover_interrupted(self)

    def tidy(self) -> None:
        """What every opening for writing does: merge the sessions an exit kept beside the
        history while it was locked (history/unwritten.py), mark sessions cut off earlier as
        interrupted and date again this boot's sessions if the clock has been set since
        (history/dating.py)."""
        merge_all(self)
        self.recover_interrupted()
        dating.redate_this_boot(self)
        self.tidy_owed = False

    # ------------------------------------------------------------------ reading
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.lock:
            if self._written_back is not None:
                open_written_back(self, self._written_back)
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc, "read") from None

    def sessions(self, since: datetime | None = None,
                 sources: Sequence[str] | None = None) -> list[SessionSummary]:
        """Sessions in the order they were recorded, each date checked against that order
        (voicecoach.history.dating), optionally from ``since`` and some sources; with the
        sessions kept beside the history and not merged yet as the merge will put them
        (history/unwritten.py's ``as_merged``)."""
        rows = self.query(SUMMARY_SQL + " ORDER BY s.id")
        read = []
        for row in rows:
            summary = summary_of(row)
            if summary is None:
                _LOGGER.warning("history: %s: session row %r has no readable start time; "
                                "it is left out", self.path, row[0])
                continue
            read.append(summary)
        # where the opening could not write (the history held locked, or read where it
        # cannot be written): a session cut off is shown as the next opening will mark it,
        # and one an exit kept beside the history as its merge will put it
        out = dating.in_recorded_order(as_merged(self, as_recovered(self, read)))
        if since is not None:
            out = dating.since(out, since.astimezone() if since.tzinfo is None else since)
        return [s for s in out if sources is None or s.source in sources]

    def unreadable_rows(self) -> int:
        """How many session rows hold a value no version of voicecoach should have written
        (they are read with that value as unknown, or left out without a start time)."""
        count = 0
        for row in self.query(SUMMARY_SQL):
            summary = summary_of(row)
            if summary is None or summary.repaired:
                count += 1
        return count

    def session(self, session_id: int) -> SessionSummary:
        """One session by id."""
        for summary in self.sessions():
            if summary.id == session_id:
                return summary
        raise KeyError(session_id)

    def events(self, session_id: int) -> list[dict[str, Any]]:
        """A session's events as dicts (the ``Event.to_dict()`` form), in order."""
        rows = self.query("SELECT data FROM events WHERE session_id = ? ORDER BY seq",
                           (session_id,))
        out = []
        for (data,) in rows:
            try:
                event = json.loads(data)
            except (TypeError, ValueError, RecursionError):
                event = None
            if isinstance(event, dict):
                out.append(event)
            else:
                _LOGGER.warning("history: session %d: an unreadable event is skipped", session_id)
        return out

    def pain_reports(self, session_id: int) -> list[tuple[float, str, str]]:
        """(t, state, phrase) of each pain report in a session."""
        return [tuple(r) for r in self.query(
            "SELECT t, state, phrase FROM pain_reports WHERE session_id = ? ORDER BY t",
            (session_id,))]

    def commands(self, session_id: int) -> list[tuple[float, str, bool, str]]:
        """(t, command, accepted, reason) of each command in a session."""
        return [(r[0], r[1], bool(r[2]), r[3]) for r in self.query(
            "SELECT t, command, accepted, reason FROM commands WHERE session_id = ? ORDER BY t",
            (session_id,))]


def _journal_mode_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, waited for like any other write. SQLite answers it with
    "database is locked" at once, without the busy handler, while another connection is opening
    the same new file; so it is retried for up to BUSY_TIMEOUT_MS before the lock is reported
    (two processes creating the history at one moment both open it)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000.0
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
