"""The workout log: one SQLite file per user, safe against crashes, power cuts and two writers."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from voicecoach.errors import VoicecoachError
from voicecoach.history.health import (
    BUSY_TIMEOUT_MS,
    _read_only_connection,
    access_error,
    corrupt_error,
    database_error,
    is_damage,
    newer_error,
)
from voicecoach.history.liveness import pid_alive
from voicecoach.history.schema import SCHEMA_VERSION, migrate, user_version
from voicecoach.history.summary import (
    _SUMMARY_SQL,
    MAX_INCLINE_PCT,
    SessionSummary,
    _naive,
    _safe_tally,
    _speed,
    _summary,
    finite_or,
    parse_moment,
)

_LOGGER = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"


class HistoryDB:
    """An open history database. Use :meth:`open`; one per process is plenty."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.host = socket.gethostname()
        self.lock = threading.RLock()
        self.read_only = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, data_dir: Path | str, *, recover: bool = True) -> HistoryDB:
        """Open (creating if needed) ``<data_dir>/history.sqlite3``, migrate it, and mark
        sessions whose process died as interrupted. A damaged file is never written to."""
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
            if not (read_only_ok and "read-only" in exc.message and path.is_file()):
                raise
            _LOGGER.info("history: %s is read-only; reading it without writing", path)
            return cls._connect(path, read_only=True)
        if recover:
            db.recover_interrupted()
        return db

    @classmethod
    def _connect(cls, path: Path, *, read_only: bool) -> HistoryDB:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False:
            # the coach may emit events from several threads (self.lock serialises them).
            conn = _read_only_connection(path) if read_only else sqlite3.connect(
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
        version = cls._check(path, conn)
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
        version = cls._check(path, conn)
        if version > SCHEMA_VERSION:
            raise newer_error(path, version)
        try:
            # WAL: readers never block the writer and a crash mid-write cannot damage the file.
            # synchronous=FULL (not NORMAL): in WAL mode NORMAL skips the fsync at commit, so
            # a power cut may roll back every commit since the last checkpoint (up to ~1000
            # pages, i.e. many minutes of a session). FULL syncs the WAL at each commit; we
            # commit a few small events a minute, so the cost is negligible and the promise
            # "at most the last few seconds are lost" also holds for power cuts.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                _LOGGER.warning("history: %s cannot use WAL (journal mode %s)", path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            old, new = migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise database_error(path, exc) from None
        if old != new:
            _LOGGER.info("history: %s schema v%d -> v%d", path, old, new)
        return cls(path, conn)

    @staticmethod
    def _check(path: Path, conn: sqlite3.Connection) -> int:
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

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> HistoryDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so it waits for other writers up front)."""
        with self.lock:
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
                self._reraise(exc)

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the failed statement may have ended it already
            _LOGGER.debug("history: rollback: %s", exc)

    def _reraise(self, exc: sqlite3.DatabaseError) -> NoReturn:
        raise database_error(self.path, exc) from None

    def recover_interrupted(self) -> list[int]:
        """Mark sessions left 'running' by a process on this host that has died as
        interrupted, with their totals recomputed from the events they logged. (Rows from
        schema v1 have no host: they are taken to be from this one.)"""
        if self.read_only:
            return []
        with self.lock:
            rows = self._query("SELECT id, pid, proc_token, started_at, last_t FROM sessions "
                               "WHERE status = 'running' AND host IN (?, '')", (self.host,))
            dead = [row for row in rows
                    if not pid_alive(int(finite_or(row[1], 0, 0, 2**31) or 0), str(row[2] or ""))]
            for sid, _pid, _token, started, last_t in dead:
                # Whatever a crash or an older version left in the row, this must not fail:
                # a value that is not a believable number of seconds counts as unknown.
                tally = _safe_tally(self.events(sid))
                stored = finite_or(last_t, 0.0) or 0.0
                tally.advance(stored)
                total = max(finite_or(tally.last_t, 0.0) or 0.0, stored)
                backward = min(finite_or(tally.backward_s, 0.0) or 0.0, total)
                began = parse_moment(started)
                ended = (began + timedelta(seconds=total)) if began else None
                with self.transaction() as conn:
                    conn.execute(
                        "UPDATE sessions SET status = 'interrupted', ended_at = ?, backward_s = ?,"
                        " total_s = ?, min_speed_mph = ?, max_speed_mph = ?,"
                        " backward_speed_mph = ?, belt_speed_mph = ?, belt_max_speed_mph = ?,"
                        " belt_incline_pct = ?, belt_distance_m = ?"
                        " WHERE id = ? AND status = 'running'",
                        (ended.isoformat(timespec="seconds") if ended else None, backward, total,
                         _speed(tally.min_speed_mph), _speed(tally.max_speed_mph),
                         _speed(tally.mean_backward_speed_mph), _speed(tally.belt_speed_mph),
                         _speed(tally.belt_max_mph),
                         finite_or(tally.belt_incline_pct, None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT),
                         finite_or(tally.belt_distance_m, None, 0.0, 1e7), sid))
                _LOGGER.warning("history: session %d was cut off after %.0f s; marked "
                                "interrupted", sid, total)
            return [row[0] for row in dead]

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc, "read") from None

    def sessions(self, since: datetime | None = None,
                 sources: Sequence[str] | None = None) -> list[SessionSummary]:
        """Sessions in the order they started, optionally from ``since`` and some sources."""
        rows = self._query(_SUMMARY_SQL + " ORDER BY s.started_at, s.id")
        out = []
        for row in rows:
            summary = _summary(row)
            if summary is None:
                _LOGGER.warning("history: %s: session row %r has no readable start time; "
                                "it is left out", self.path, row[0])
                continue
            if since is not None and _naive(summary.started_at) < _naive(since):
                continue
            if sources is not None and summary.source not in sources:
                continue
            out.append(summary)
        return out

    def unreadable_rows(self) -> int:
        """How many session rows hold a value no version of voicecoach should have written
        (they are read with that value as unknown, or left out without a start time)."""
        count = 0
        for row in self._query(_SUMMARY_SQL):
            summary = _summary(row)
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
        rows = self._query("SELECT data FROM events WHERE session_id = ? ORDER BY seq",
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
        return [tuple(r) for r in self._query(
            "SELECT t, state, phrase FROM pain_reports WHERE session_id = ? ORDER BY t",
            (session_id,))]

    def commands(self, session_id: int) -> list[tuple[float, str, bool, str]]:
        """(t, command, accepted, reason) of each command in a session."""
        return [(r[0], r[1], bool(r[2]), r[3]) for r in self._query(
            "SELECT t, command, accepted, reason FROM commands WHERE session_id = ? ORDER BY t",
            (session_id,))]


@dataclass(frozen=True)
class HistoryState:
    """What ``doctor`` says about a history file: ``state`` is one of none, ok, read-only,
    damaged, newer-schema, unreadable; ``sessions`` and ``odd_rows`` are counted when it reads."""

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
        conn = _read_only_connection(path)
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
    if not writable:
        return HistoryState(path, "read-only", "the folder or the file is read-only: `history` "
                            "shows it, but no new session can be recorded",
                            f"make it writable (chmod u+w '{folder}' '{path}') or choose "
                            "another --data-dir", count, odd, version)
    return HistoryState(path, "ok", "", "", count, odd, version)
