"""The history database on real SQLite files: kill -9, two writers, migration, damaged files."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from voicecoach.errors import VoicecoachError
from voicecoach.events import (
    CommandHeard,
    CommandRefused,
    CueSpoken,
    PainReported,
    PhaseStarted,
    SessionEnded,
    StateChanged,
    TargetChanged,
)
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder
from voicecoach.history.schema import SCHEMA_VERSION
from voicecoach.workout.plan import programme_week

REPO = Path(__file__).resolve().parent.parent

# A child process: opens the history and records a week-2 session. "kill": one heartbeat per
# second of workout time and a cue every 10 s, printing each second once it is committed,
# never ending (the parent kills it; its wall clock is a counter so every heartbeat is
# written); "finish": waits for a line on stdin, writes one cue per second N times, then
# ends the session.
CHILD = r"""
import itertools
import sys
from voicecoach.events import CueSpoken, PhaseStarted, SessionEnded
from voicecoach.history import HistoryDB, SessionRecorder
from voicecoach.workout.plan import programme_week

data_dir, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = HistoryDB.open(data_dir)
rec = SessionRecorder.open(db, programme_week(2), "run",
                           wall_clock=itertools.count().__next__)
print("session", rec.session_id, flush=True)
if mode == "finish":
    sys.stdin.readline()
rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward", duration_s=420.0,
                          speed_mph=0.8, min_speed_mph=0.8, max_speed_mph=1.0, incline_pct=0.0))
i = 0
while mode == "kill" or i < count:
    i += 1
    if mode == "kill":
        if i % 10 == 0:
            rec.on_event(CueSpoken(t=float(i), state="backward", text=f"cue {i}", kind="cue"))
        rec.heartbeat(float(i))
    else:
        rec.on_event(CueSpoken(t=float(i), state="backward", text=f"cue {i}", kind="cue"))
    if mode == "kill" and rec.problem is not None:
        sys.exit(f"recorder problem: {rec.problem}")
    if mode == "kill":
        print("wrote", i, flush=True)
rec.on_event(SessionEnded(t=float(i), state="done", outcome="finished", backward_s=float(i),
                          total_s=float(i), min_speed_mph=0.8, max_speed_mph=0.8, summary="ok"))
rec.close()
db.close()
if rec.incomplete:  # another writer's lock is waited out, never a lost event
    sys.exit(f"recorder problem: {rec.problem}")
"""


def child(data_dir: Path, mode: str, count: int = 0) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), mode, str(count)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_events_are_recorded_with_their_meaning(tmp_path: Path) -> None:
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(1), "demo")
        for event in (
            StateChanged(t=0.0, state="warmup", source="idle", dest="warmup", trigger="start"),
            PhaseStarted(t=180.0, state="backward", index=1, kind="backward", duration_s=300.0,
                         speed_mph=0.5, min_speed_mph=0.5, max_speed_mph=0.8, incline_pct=0.0),
            CommandHeard(t=200.0, state="backward", command="faster", phrase="speed up"),
            TargetChanged(t=200.0, state="backward", speed_mph=0.6, incline_pct=0.0,
                          why="faster"),
            CommandRefused(t=250.0, state="backward", command="incline_up", reason="not yet"),
            StateChanged(t=300.0, state="paused", source="backward", dest="paused",
                         trigger="pause"),
            StateChanged(t=360.0, state="backward", source="paused", dest="backward",
                         trigger="resume"),
            PainReported(t=400.0, state="backward", phrase="knee hurts"),
            CueSpoken(t=420.0, state="stopped", text="Stopping.", kind="announcement"),
        ):
            rec.on_event(event)
        rec.close("stopped")
        rec.on_event(CueSpoken(t=430.0, state="stopped", text="late", kind="cue"))
        [s] = db.sessions()
        assert (s.source, s.status, s.week, s.pain_reports) == ("demo", "stopped", 1, 1)
        # Backward from 180 to 420 less the 60 s pause; 20 s at 0.5 then 160 s at 0.6 mph.
        assert s.backward_s == pytest.approx(180.0)
        assert (s.min_speed_mph, s.max_speed_mph) == (0.5, 0.6)
        assert s.backward_speed_mph == pytest.approx((20 * 0.5 + 160 * 0.6) / 180)
        assert s.planned_backward_s == 300.0 and s.speed_mph == 0.5
        assert [e["type"] for e in db.events(s.id)][-1] == "cue_spoken"
        assert len(db.events(s.id)) == 9  # the event after close() is not written
        assert db.commands(s.id) == [(200.0, "faster", True, ""),
                                     (250.0, "incline_up", False, "not yet")]
        assert db.pain_reports(s.id) == [(400.0, "backward", "knee hurts")]


def test_session_ended_sets_outcome_and_the_coach_totals(tmp_path: Path) -> None:
    with HistoryDB.open(tmp_path) as db:
        began = datetime.now().astimezone() - timedelta(hours=1)
        rec = SessionRecorder.open(db, programme_week(3), "run", started_at=began)
        rec.on_event(SessionEnded(t=900.0, state="done", outcome="finished", backward_s=600.0,
                                  total_s=900.0, min_speed_mph=1.0, max_speed_mph=1.2,
                                  summary="well done"))
        rec.close("interrupted")  # already ended: close changes nothing
        [s] = db.sessions()
        assert (s.status, s.backward_s, s.total_s) == ("finished", 600.0, 900.0)
        assert (s.min_speed_mph, s.max_speed_mph) == (1.0, 1.2)
        assert s.ended_at is not None and (s.ended_at - s.started_at).total_seconds() == 900


def test_a_sped_up_session_never_ends_in_the_future(tmp_path: Path) -> None:
    """The demo runs 15 workout minutes in seconds: it ended now, not 15 minutes from now."""
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(3), "demo")
        rec.on_event(SessionEnded(t=900.0, state="done", outcome="finished", backward_s=600.0,
                                  total_s=900.0, min_speed_mph=1.0, max_speed_mph=1.2,
                                  summary="well done"))
        [s] = db.sessions()
        assert s.total_s == 900.0
        assert s.ended_at is not None and s.ended_at <= datetime.now().astimezone()


def test_heartbeats_are_paced_by_workout_and_wall_time(tmp_path: Path) -> None:
    wall = [0.0]
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(1), "run", wall_clock=lambda: wall[0])
        rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                                  duration_s=300.0, speed_mph=0.5, min_speed_mph=0.5,
                                  max_speed_mph=0.8, incline_pct=0.0))
        rec.heartbeat(5.0)
        assert db.sessions()[0].backward_s == 5.0
        rec.heartbeat(20.0)  # no wall time has passed (a sped-up demo): not written
        assert db.sessions()[0].backward_s == 5.0
        wall[0] = 1.0
        rec.heartbeat(20.5)
        rec.heartbeat(20.9)  # under a second of workout time since the last write
        assert db.sessions()[0].backward_s == 20.5
        rec.close("stopped")
        rec.heartbeat(60.0)  # after close: ignored
        assert (db.sessions()[0].status, db.sessions()[0].backward_s) == ("stopped", 20.5)


class _SignalAfterBegin:
    """The connection, except that a signal's exception lands just after one BEGIN has run
    and before the write's body: where SIGTERM struck once in CI."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn, self.struck = conn, False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql == "BEGIN IMMEDIATE" and not self.struck:
            self.struck = True
            raise SystemExit(143)
        return cursor

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def test_a_signal_just_after_begin_still_leaves_the_session_stopped(tmp_path: Path) -> None:
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(1), "run",
                                   wall_clock=lambda: 1e6)  # every heartbeat writes
        real, db.conn = db.conn, _SignalAfterBegin(db.conn)  # type: ignore[assignment]
        try:
            with pytest.raises(SystemExit):
                rec.heartbeat(30.0)
        finally:
            struck, db.conn = db.conn.struck, real  # type: ignore[attr-defined]
        assert struck
        rec.close("stopped")
        assert not rec.incomplete, rec.problem
    with HistoryDB.open(tmp_path) as db:
        assert [(s.source, s.status) for s in db.sessions()] == [("run", "stopped")]


def test_sigkill_mid_session_leaves_an_interrupted_session(tmp_path: Path) -> None:
    proc = child(tmp_path, "kill")
    assert proc.stdout is not None
    assert proc.stdout.readline().split()[0] == "session"
    written = 0
    while written < 45:
        written = int(proc.stdout.readline().split()[1])
    # While the writer lives, opening the history must not mark its session interrupted.
    with HistoryDB.open(tmp_path) as db:
        assert [s.status for s in db.sessions()] == ["running"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()  # reaps it and closes the pipes
    assert proc.returncode == -signal.SIGKILL
    with HistoryDB.open(tmp_path) as db:
        [s] = db.sessions()
        cues = [e["t"] for e in db.events(s.id) if e["type"] == "cue_spoken"]
        assert s.status == "interrupted"
        # Every second reported as committed survived the kill; the cues are all there and
        # backward time is recomputed from them plus the last heartbeat (not the last cue).
        assert s.backward_s >= written and s.backward_s == int(s.backward_s)
        assert cues == [float(t) for t in range(10, int(s.backward_s) + 1, 10)]
        assert s.total_s == s.backward_s
        assert db.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_two_processes_writing_at_once(tmp_path: Path) -> None:
    procs = [child(tmp_path, "finish", 150) for _ in range(2)]  # both create the file
    ids = []
    for proc in procs:
        assert proc.stdout is not None
        ids.append(int(proc.stdout.readline().split()[1]))
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(ids) == [1, 2]
    with HistoryDB.open(tmp_path) as db:
        assert db.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        sessions = db.sessions()
        assert [s.status for s in sessions] == ["finished", "finished"]
        for s in sessions:
            seqs = [r[0] for r in db.conn.execute(
                "SELECT seq FROM events WHERE session_id = ? ORDER BY seq", (s.id,))]
            assert seqs == list(range(1, 153))  # phase + 150 cues + end, none lost
            assert s.backward_s == 150.0


V1_SCHEMA = """
CREATE TABLE sessions (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, plan TEXT NOT NULL,
    week INTEGER, source TEXT NOT NULL, status TEXT NOT NULL, ended_at TEXT,
    backward_s REAL NOT NULL DEFAULT 0, total_s REAL NOT NULL DEFAULT 0, min_speed_mph REAL,
    max_speed_mph REAL, pid INTEGER, notes TEXT NOT NULL DEFAULT '');
CREATE TABLE phases (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
    idx INTEGER NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, duration_s REAL NOT NULL,
    speed_mph REAL NOT NULL, min_speed_mph REAL NOT NULL, max_speed_mph REAL NOT NULL,
    incline_pct REAL NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL, t REAL NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL,
    data TEXT NOT NULL, UNIQUE (session_id, seq));
CREATE TABLE commands (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL
    REFERENCES sessions(id), t REAL NOT NULL, command TEXT NOT NULL,
    phrase TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '', accepted INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '');
CREATE TABLE pain_reports (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL
    REFERENCES sessions(id), t REAL NOT NULL, state TEXT NOT NULL, phrase TEXT NOT NULL);
PRAGMA user_version = 1;
"""


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_v1_database_is_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO sessions VALUES (1, '2026-01-05T08:00:00+00:00', 'week 2', 2, "
                 "'run', 'finished', '2026-01-05T08:15:00+00:00', 420, 720, 0.8, 0.9, 10, '')")
    conn.execute("INSERT INTO phases VALUES (1, 1, 1, 'backward', 180, 420, 0.8, 0.8, 1.0, 0)")
    conn.execute("INSERT INTO pain_reports VALUES (1, 1, 300, 'backward', 'pain')")
    conn.execute("INSERT INTO sessions (id, started_at, plan, week, source, status, pid) VALUES"
                 " (2, '2026-01-07T08:00:00+00:00', 'week 2', 2, 'run', 'running', ?)",
                 (_dead_pid(),))
    conn.execute("""INSERT INTO events VALUES (1, 2, 1, 0, 'phase_started', 'backward',
        '{"type": "phase_started", "t": 0, "state": "backward", "index": 1, "kind": "backward",
          "duration_s": 420, "speed_mph": 0.8, "min_speed_mph": 0.8, "max_speed_mph": 1.0,
          "incline_pct": 0}')""")
    conn.execute("""INSERT INTO events VALUES (2, 2, 2, 95, 'cue_spoken', 'backward',
        '{"type": "cue_spoken", "t": 95, "state": "backward", "text": "hi", "kind": "cue"}')""")
    conn.commit()
    conn.close()
    with HistoryDB.open(tmp_path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        first, second = db.sessions()
        assert (first.status, first.backward_s, first.pain_reports) == ("finished", 420.0, 1)
        assert (first.planned_backward_s, first.speed_mph, first.incline_pct) == (420, 0.8, 0)
        assert (second.status, second.backward_s) == ("interrupted", 95.0)  # dead pid
        rec = SessionRecorder.open(db, programme_week(3), "run")  # v2 columns are usable
        rec.close("stopped")
        assert db.session(rec.session_id).planned_backward_s == 600.0
    with HistoryDB.open(tmp_path) as db:  # opening again migrates nothing
        assert len(db.sessions()) == 3


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(VoicecoachError, match="schema v7, newer"):
        HistoryDB.open(tmp_path)
    assert path.read_bytes() == before


@pytest.fixture(scope="module")
def real_history(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a healthy history file of some size (built once for this module)."""
    folder = tmp_path_factory.mktemp("healthy")
    with HistoryDB.open(folder) as db:
        for _ in range(3):
            rec = SessionRecorder.open(db, programme_week(2), "run")
            for i in range(80):
                rec.on_event(CueSpoken(t=float(i), state="backward", text=f"cue {i} " * 60,
                                       kind="cue"))
            rec.close("finished")
    return (folder / DB_NAME).read_bytes()


@pytest.mark.parametrize("damage", ["random", "truncated", "header_only", "scribbled",
                                    "foreign"])
def test_damaged_file_is_one_clear_error_and_left_alone(tmp_path: Path, damage: str,
                                                       real_history: bytes) -> None:
    path = tmp_path / DB_NAME
    rng = random.Random(damage)
    if damage == "random":
        path.write_bytes(rng.randbytes(20_000))
    elif damage == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
        conn.close()
    else:
        good = real_history
        assert len(good) > 100_000
        if damage == "truncated":
            path.write_bytes(good[: len(good) // 2])
        elif damage == "header_only":
            path.write_bytes(good[:100])
        else:
            middle = len(good) // 2
            path.write_bytes(good[:middle] + rng.randbytes(4096) + good[middle + 4096:])
    before = path.read_bytes()
    with pytest.raises(VoicecoachError) as info:
        HistoryDB.open(tmp_path)
    line = info.value.one_line()
    assert "\n" not in line
    assert str(path) in line and "move it aside" in line
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]  # no -wal/-shm left


def test_a_folder_in_the_way_is_reported(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).mkdir()
    with pytest.raises(VoicecoachError, match="is a folder"):
        HistoryDB.open(tmp_path)


def test_wal_and_full_sync_are_in_force(tmp_path: Path) -> None:
    with HistoryDB.open(tmp_path) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
