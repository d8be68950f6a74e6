"""The history database's schema: numbered forward migrations tracked in ``PRAGMA user_version``."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

#: Version 1: the first schema (sessions, phases, events, commands, pain reports).
V1_DDL = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    plan TEXT NOT NULL,
    week INTEGER,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    ended_at TEXT,
    backward_s REAL NOT NULL DEFAULT 0,
    total_s REAL NOT NULL DEFAULT 0,
    min_speed_mph REAL,
    max_speed_mph REAL,
    pid INTEGER,
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE phases (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL,
    t REAL NOT NULL,
    duration_s REAL NOT NULL,
    speed_mph REAL NOT NULL,
    min_speed_mph REAL NOT NULL,
    max_speed_mph REAL NOT NULL,
    incline_pct REAL NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    t REAL NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    t REAL NOT NULL,
    command TEXT NOT NULL,
    phrase TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    accepted INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE pain_reports (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    t REAL NOT NULL,
    state TEXT NOT NULL,
    phrase TEXT NOT NULL
);
"""

#: Version 2: v1 could not tell a crashed session from a live one on another machine or after a
#: reboot (no host, no process start token), kept no heartbeat, and did not keep the planned
#: dose that progression needs. Old rows get the plan dose back-filled from their phases.
V2_DDL = """
ALTER TABLE sessions ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN proc_token TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_t REAL NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN planned_backward_s REAL;
ALTER TABLE sessions ADD COLUMN speed_mph REAL;
ALTER TABLE sessions ADD COLUMN incline_pct REAL;
ALTER TABLE sessions ADD COLUMN backward_speed_mph REAL;
ALTER TABLE commands ADD COLUMN confidence REAL NOT NULL DEFAULT 1.0;
UPDATE sessions SET
    planned_backward_s = (SELECT SUM(duration_s) FROM phases
                          WHERE phases.session_id = sessions.id AND kind = 'backward'),
    speed_mph = (SELECT speed_mph FROM phases
                 WHERE phases.session_id = sessions.id AND kind = 'backward' ORDER BY idx LIMIT 1),
    incline_pct = (SELECT incline_pct FROM phases
                   WHERE phases.session_id = sessions.id AND kind = 'backward'
                   ORDER BY idx LIMIT 1),
    last_t = total_s;
CREATE INDEX sessions_by_status ON sessions(status);
CREATE INDEX sessions_by_start ON sessions(started_at);
CREATE INDEX events_by_session ON events(session_id, seq);
"""


#: Version 3: what the treadmill measured (issue 11): the time-weighted belt speed and incline
#: while walking backward, the top belt speed, and the distance the belt reported. NULL when no
#: treadmill was connected (all sessions before this version).
V3_DDL = """
ALTER TABLE sessions ADD COLUMN belt_speed_mph REAL;
ALTER TABLE sessions ADD COLUMN belt_max_speed_mph REAL;
ALTER TABLE sessions ADD COLUMN belt_incline_pct REAL;
ALTER TABLE sessions ADD COLUMN belt_distance_m REAL;
"""


#: Version 4: where in its boot a session began (the boot id and the seconds since boot when
#: the start was read from the wall clock), so a session walked before NTP set the clock of a
#: Pi without a real-time clock can be dated again once it is set (history/dating.py). Empty
#: and NULL for every earlier session: those are never re-dated.
V4_DDL = """
ALTER TABLE sessions ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN boot_s REAL;
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A migration step that runs ``sql`` statement by statement (inside the caller's
    transaction: ``executescript`` would commit it)."""

    def run(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return run


#: MIGRATIONS[i] takes the schema from version i to version i + 1. Only ever append.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_script(V1_DDL), _script(V2_DDL),
                                                          _script(V3_DDL), _script(V4_DDL)]
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the file (0 for a new, empty database)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the schema up to date in one write transaction; return (old, new) versions.

    The caller has checked that the file is not newer than this code. ``BEGIN IMMEDIATE``
    takes the write lock before the version is read, so two processes opening a new file at
    the same moment cannot both run a step. A file already at this version is only read.
    """
    current = user_version(conn)
    if current >= SCHEMA_VERSION:  # up to date: no write lock taken (a session may hold it)
        return current, current
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = user_version(conn)
        for version in range(old, SCHEMA_VERSION):
            _LOGGER.info("history: migrating schema v%d -> v%d", version, version + 1)
            MIGRATIONS[version](conn)
        if old < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return old, max(old, SCHEMA_VERSION)
