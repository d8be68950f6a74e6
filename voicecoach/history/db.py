"""The workout log: one SQLite file per user, safe against crashes, power cuts and two writers."""

from __future__ import annotations

import json
import logging
import math
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
from voicecoach.history.liveness import pid_alive
from voicecoach.history.schema import SCHEMA_VERSION, migrate, user_version
from voicecoach.history.tally import Tally

_LOGGER = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
#: How long a writer waits for another process's transaction before giving up (ms). Ours
#: last a millisecond or two, so this only matters under heavy contention.
BUSY_TIMEOUT_MS = 10_000
SOURCES = ("run", "demo", "replay", "serve")
#: Pages the write-ahead log may hold before it is copied back into the file.
WAL_PAGES = 64
STATUSES = ("running", "finished", "stopped", "interrupted")


#: Longest believable session: a stored duration beyond it (or not finite) is read as unknown.
MAX_SESSION_S = 24 * 3600.0
#: Highest believable belt speed and incline: stored values beyond them are read as unknown.
MAX_SPEED_MPH, MAX_INCLINE_PCT = 30.0, 40.0

#: SQLite result codes (primary, the low byte) that mean "this file is not a sound database";
#: every other failure (read-only, full, I/O, permissions, locks) leaves the file unharmed.
_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_READONLY, _FULL, _CANTOPEN, _PERM, _BUSY, _LOCKED, _IOERR = 8, 13, 14, 3, 5, 6, 10


class HistoryUnavailable(VoicecoachError):
    """The history cannot be written just now (locked, disk full, an I/O error) but is
    unharmed: waiting or a retry can fix it without a person."""


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
        return HistoryUnavailable(
            f"cannot write history database {path}: the disk is full "
            "(the history itself is unharmed)",
            f"free some space on the disk that holds {folder} (df -h '{folder}'), "
            "or choose another --data-dir")
    if primary in (_BUSY, _LOCKED) or "locked" in text:
        return HistoryUnavailable(f"history database {path} is locked by another program",
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


def _read_only_connection(path: Path) -> sqlite3.Connection:
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


def database_error(path: Path, exc: sqlite3.Error, doing: str = "write") -> VoicecoachError:
    """Damaged (move it aside) or merely inaccessible (fix the folder): never confuse them."""
    return corrupt_error(path, exc) if is_damage(exc) else access_error(path, exc, doing)


def finite_or(value: object, default: float | None, low: float = 0.0,
              high: float = MAX_SESSION_S) -> float | None:
    """A stored number if it is a finite number in [low, high], else ``default``: rows written
    by a crash, an older version or a bug never break a read."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    if not math.isfinite(number) or number < low or number > high:
        return default
    return number


def parse_moment(value: object) -> datetime | None:
    """A stored ISO time, or None when it is missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def newer_error(path: Path, version: int) -> VoicecoachError:
    """The one error for a file written by a newer voicecoach."""
    return VoicecoachError(
        f"history database {path} has schema v{version}, newer than this voicecoach "
        f"(v{SCHEMA_VERSION})", "upgrade voicecoach, or use another --data-dir")


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
    #: Whether a stored value was unreadable or impossible and was read as unknown.
    repaired: bool = False
    belt_speed_mph: float | None = None
    """Measured by the treadmill: time-weighted belt speed while walking backward (mph)."""
    belt_max_speed_mph: float | None = None
    belt_incline_pct: float | None = None
    belt_distance_m: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.pop("repaired")
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
            readable = "read-only" in exc.message or isinstance(exc, HistoryUnavailable)
            if not (read_only_ok and readable and path.is_file()):
                raise
            _LOGGER.info("history: %s cannot be written now; reading it without writing", path)
            return cls._connect(path, read_only=True)
        if recover:
            try:
                db.recover_interrupted()
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

    def busy_timeout(self, ms: int) -> None:
        """How long a write waits for another program's lock before failing (ms)."""
        if self.read_only:
            return
        with self.lock:
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
                events = self.events(sid)
                tally = _safe_tally(events)
                stored = finite_or(last_t, 0.0) or 0.0
                tally.advance(stored)
                total = max(finite_or(tally.last_t, 0.0) or 0.0, stored)
                backward = min(finite_or(tally.backward_s, 0.0) or 0.0, total)
                status = "interrupted"
                ended_event = _ended(events)
                if ended_event is not None:
                    # The session did end (a row set back to 'running' by hand, or a crash
                    # between the two writes): its own figures stand, nothing is added.
                    status = ended_event[0]
                    total = ended_event[2] or total
                    backward = min(ended_event[1], total)
                began = parse_moment(started)
                ended = (began + timedelta(seconds=total)) if began else None
                with self.transaction() as conn:
                    conn.execute(
                        "UPDATE sessions SET status = ?, ended_at = ?, backward_s = ?,"
                        " total_s = ?, min_speed_mph = ?, max_speed_mph = ?,"
                        " backward_speed_mph = ?, belt_speed_mph = ?, belt_max_speed_mph = ?,"
                        " belt_incline_pct = ?, belt_distance_m = ?"
                        " WHERE id = ? AND status = 'running'",
                        (status, ended.isoformat(timespec="seconds") if ended else None,
                         backward, total,
                         _speed(tally.min_speed_mph), _speed(tally.max_speed_mph),
                         _speed(tally.mean_backward_speed_mph), _speed(tally.belt_speed_mph),
                         _speed(tally.belt_max_mph),
                         finite_or(tally.belt_incline_pct, None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT),
                         finite_or(tally.belt_distance_m, None, 0.0, 1e7), sid))
                if ended_event is None:
                    _LOGGER.warning("history: session %d was cut off after %.0f s; marked "
                                    "interrupted", sid, total)
                else:
                    _LOGGER.warning("history: session %d had ended (%s) but was still marked "
                                    "running; its own figures are kept", sid, status)
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


def _speed(value: object) -> float | None:
    return finite_or(value, None, 0.0, MAX_SPEED_MPH)


def _ended(events: list[dict[str, Any]]) -> tuple[str, float, float] | None:
    """(outcome, backward_s, total_s) of a logged session_ended event, checked; else None."""
    for event in reversed(events):
        if event.get("type") != "session_ended":
            continue
        outcome = event.get("outcome")
        if outcome not in ("finished", "stopped"):
            return None
        return (str(outcome), finite_or(event.get("backward_s"), 0.0) or 0.0,
                finite_or(event.get("total_s"), 0.0) or 0.0)
    return None


def _safe_tally(events: list[dict[str, Any]]) -> Tally:
    """The tally of ``events``, skipping any event whose fields cannot be read."""
    tally = Tally()
    for event in events:
        try:
            tally.feed(event)
        except (KeyError, TypeError, ValueError, OverflowError):
            _LOGGER.debug("history: event skipped in the tally: %r", event)
    return tally


def _summary(row: Sequence[Any]) -> SessionSummary | None:
    """A session row as read back, every value checked: None without a readable start."""
    started = parse_moment(row[1])
    if started is None:
        return None
    cleaned: list[Any] = []
    repaired = False

    def keep(value: object, clean: object) -> None:
        nonlocal repaired
        repaired = repaired or (value is not None and (clean is None or clean != value))
        cleaned.append(clean)

    week = finite_or(row[3], None, 1, 1000)
    keep(row[3], int(week) if week is not None else None)
    backward = finite_or(row[7], 0.0)
    total = finite_or(row[8], 0.0)
    keep(row[7], backward)
    keep(row[8], total)
    for i in (9, 10):
        keep(row[i], _speed(row[i]))
    keep(row[11], finite_or(row[11], None))
    keep(row[12], _speed(row[12]))
    keep(row[13], finite_or(row[13], None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT))
    keep(row[14], _speed(row[14]))
    status = str(row[5]) if row[5] in STATUSES else "interrupted"
    source = str(row[4]) if row[4] in SOURCES else "run"
    repaired = repaired or status != row[5] or source != row[4]
    ended = parse_moment(row[6])
    repaired = repaired or (row[6] is not None and ended is None)
    pains = int(finite_or(row[15], 0, 0, 1e9) or 0)
    belt = list(row[17:21]) + [None] * (4 - len(row[17:21]))
    keep(belt[0], _speed(belt[0]))
    keep(belt[1], _speed(belt[1]))
    keep(belt[2], finite_or(belt[2], None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT))
    keep(belt[3], finite_or(belt[3], None, 0.0, 1e7))
    return SessionSummary(int(row[0]), started, str(row[2] or ""), cleaned[0], source, status,
                          ended, cleaned[1] or 0.0, cleaned[2] or 0.0, cleaned[3], cleaned[4],
                          cleaned[5], cleaned[6], cleaned[7], cleaned[8], pains,
                          str(row[16] or ""), repaired, belt_speed_mph=cleaned[9],
                          belt_max_speed_mph=cleaned[10], belt_incline_pct=cleaned[11],
                          belt_distance_m=cleaned[12])


def _naive(moment: datetime) -> datetime:
    """Compare local-with-offset and naive datetimes alike (as local time)."""
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment
