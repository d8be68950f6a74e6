"""The workout log: one SQLite file per user, safe against crashes, power cuts and two writers."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from voicecoach.errors import VoicecoachError
from voicecoach.history.liveness import pid_alive
from voicecoach.history.schema import SCHEMA_VERSION, migrate, user_version
from voicecoach.history.tally import Tally

_LOGGER = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
#: How long a writer waits for another process's transaction before giving up (ms). Ours
#: last a millisecond or two, so this only matters under heavy contention.
BUSY_TIMEOUT_MS = 10_000
SOURCES = ("run", "demo", "replay", "serve")
STATUSES = ("running", "finished", "stopped", "interrupted")


def corrupt_error(path: Path, detail: object) -> VoicecoachError:
    """The one error for a damaged file: name it and say how to get going again."""
    text = " ".join(str(detail).split())
    text = text if len(text) <= 100 else text[:97] + "..."
    return VoicecoachError(
        f"history database {path} is damaged or not a voicecoach database ({text})",
        f"move it aside (e.g. mv '{path}' '{path}.broken') and run again to start a new "
        "history; voicecoach never overwrites or deletes it")


@dataclass(frozen=True)
class SessionSummary:
    """One row of the sessions table, with its pain-report count."""

    id: int
    started_at: datetime
    plan: str
    week: int | None
    source: str
    status: str
    ended_at: datetime | None
    backward_s: float
    total_s: float
    min_speed_mph: float | None
    max_speed_mph: float | None
    planned_backward_s: float | None
    speed_mph: float | None
    incline_pct: float | None
    backward_speed_mph: float | None
    pain_reports: int
    notes: str = ""
    belt_speed_mph: float | None = None
    """Measured by the treadmill: time-weighted belt speed while walking backward (mph)."""
    belt_max_speed_mph: float | None = None
    belt_incline_pct: float | None = None
    belt_distance_m: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        return data


_SUMMARY_SQL = """
SELECT s.id, s.started_at, s.plan, s.week, s.source, s.status, s.ended_at, s.backward_s,
       s.total_s, s.min_speed_mph, s.max_speed_mph, s.planned_backward_s, s.speed_mph,
       s.incline_pct, s.backward_speed_mph,
       (SELECT COUNT(*) FROM pain_reports p WHERE p.session_id = s.id), s.notes,
       s.belt_speed_mph, s.belt_max_speed_mph, s.belt_incline_pct, s.belt_distance_m
FROM sessions s
"""


class HistoryDB:
    """An open history database. Use :meth:`open`; one per process is plenty."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.host = socket.gethostname()
        self.lock = threading.RLock()

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
    def open_file(cls, path: Path, *, recover: bool = True) -> HistoryDB:
        """Open one database file (see :meth:`open`)."""
        if path.is_dir():
            raise VoicecoachError(f"history database {path} is a folder",
                                  "move it aside or choose another --data-dir")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False:
            # the coach may emit events from several threads (self.lock serialises them).
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise VoicecoachError(f"cannot open history database {path} ({exc})",
                                  "check the folder's permissions or use --data-dir") from None
        try:
            db = cls._prepare(path, conn)
        except BaseException:
            conn.close()
            raise
        if recover:
            db.recover_interrupted()
        return db

    @classmethod
    def _prepare(cls, path: Path, conn: sqlite3.Connection) -> HistoryDB:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = cls._check(path, conn)
        if version > SCHEMA_VERSION:
            raise VoicecoachError(
                f"history database {path} has schema v{version}, newer than this voicecoach "
                f"(v{SCHEMA_VERSION})", "upgrade voicecoach, or use another --data-dir")
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
        except sqlite3.OperationalError as exc:
            raise VoicecoachError(f"cannot write history database {path} ({exc})",
                                  "check the folder's permissions and free space") from None
        except sqlite3.DatabaseError as exc:
            raise corrupt_error(path, exc) from None
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
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise VoicecoachError(f"history database {path} is locked by another program",
                                      "close it and try again") from None
            raise corrupt_error(path, exc) from None
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
        if isinstance(exc, sqlite3.OperationalError):
            raise VoicecoachError(f"cannot write history database {self.path} ({exc})",
                                  "check free space and permissions") from None
        raise corrupt_error(self.path, exc) from None

    def recover_interrupted(self) -> list[int]:
        """Mark sessions left 'running' by a process on this host that has died as
        interrupted, with their totals recomputed from the events they logged. (Rows from
        schema v1 have no host: they are taken to be from this one.)"""
        with self.lock:
            rows = self._query("SELECT id, pid, proc_token, started_at, last_t FROM sessions "
                               "WHERE status = 'running' AND host IN (?, '')", (self.host,))
            dead = [row for row in rows if not pid_alive(int(row[1] or 0), row[2])]
            for sid, _pid, _token, started, last_t in dead:
                tally = Tally.of(self.events(sid))
                tally.advance(float(last_t or 0))
                total = max(tally.last_t, float(last_t or 0))
                ended = datetime.fromisoformat(started) + timedelta(seconds=total)
                with self.transaction() as conn:
                    conn.execute(
                        "UPDATE sessions SET status = 'interrupted', ended_at = ?, backward_s = ?,"
                        " total_s = ?, min_speed_mph = ?, max_speed_mph = ?,"
                        " backward_speed_mph = ?, belt_speed_mph = ?, belt_max_speed_mph = ?,"
                        " belt_incline_pct = ?, belt_distance_m = ?"
                        " WHERE id = ? AND status = 'running'",
                        (ended.isoformat(timespec="seconds"), tally.backward_s, total,
                         tally.min_speed_mph, tally.max_speed_mph,
                         tally.mean_backward_speed_mph, tally.belt_speed_mph,
                         tally.belt_max_mph, tally.belt_incline_pct, tally.belt_distance_m,
                         sid))
                _LOGGER.warning("history: session %d was cut off after %.0f s; marked "
                                "interrupted", sid, total)
            return [row[0] for row in dead]

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise VoicecoachError(f"cannot read history database {self.path} ({exc})",
                                      "try again; close other programs using it") from None
            except sqlite3.DatabaseError as exc:
                raise corrupt_error(self.path, exc) from None

    def sessions(self, since: datetime | None = None,
                 sources: Sequence[str] | None = None) -> list[SessionSummary]:
        """Sessions in the order they started, optionally from ``since`` and some sources."""
        rows = self._query(_SUMMARY_SQL + " ORDER BY s.started_at, s.id")
        out = []
        for row in rows:
            started = datetime.fromisoformat(row[1])
            if since is not None and _naive(started) < _naive(since):
                continue
            if sources is not None and row[4] not in sources:
                continue
            out.append(SessionSummary(row[0], started, row[2], row[3], row[4], row[5],
                                      datetime.fromisoformat(row[6]) if row[6] else None,
                                      *row[7:21]))
        return out

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
        return [json.loads(row[0]) for row in rows]

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


def _naive(moment: datetime) -> datetime:
    """Compare local-with-offset and naive datetimes alike (as local time)."""
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment
