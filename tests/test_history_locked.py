"""A history another program holds locked (an export, a backup, an sqlite3 shell) never holds
the device up at its ends: serve listens at once and tidies the history once it is let go; a
"start" plans from the ends not written yet as they ended; the exit closes every unwritten
end within one deadline that the service's stop timeout leaves it, and says what it gives up.
Real SQLite throughout, the lock held by another connection."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sqlite3
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from history_helpers import HeldRoom, cut_off_mid_walk
from workout_helpers import Run

from voicecoach.events import StateChanged
from voicecoach.history import DB_NAME, HistoryDB, plan_next_session, session_writer
from voicecoach.history import recorder as recorder_module
from voicecoach.phrases import load_phrases
from voicecoach.settings import Settings
from voicecoach.workout.machine import State

#: A session a process that is gone left running (so the next opening marks it interrupted).
CUT_OFF = ("INSERT INTO sessions (started_at, plan, week, source, status, pid, host,"
           " proc_token) VALUES ('2026-01-05T08:00:00+00:00', 'week 1', 1, 'serve',"
           " 'running', ?, ?, 'a process gone')")


@pytest.fixture(autouse=True)
def _short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_writer, "SESSION_BUSY_MS", 5)


def _status(conn: sqlite3.Connection, sid: int) -> str:
    return str(conn.execute("SELECT status FROM sessions WHERE id = ?", (sid,)).fetchone()[0])


# ---------------------------------------------------------------- serve's start-up
def test_serve_listens_at_once_with_the_history_locked_and_tidies_it_once_let_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`serve` with another program holding the history's write lock and a session cut off
    earlier to mark: no try is waited for (before: 3 tries, 5 s apart, each waiting up to
    10 s for the lock, about 40 s before it listened), one line says why the cut-off session
    is left, and the loop is given the tidy to do once the lock is let go."""
    from voicecoach import cli
    from voicecoach.audio.wav import write_wav
    from voicecoach.commands import serve
    from voicecoach.history import db as db_module

    # the old start-up's waits short (its tries are counted by their log lines)
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(serve, "START_RETRY_S", 0.0)
    HistoryDB.open(tmp_path).close()
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute(CUT_OFF, (os.getpid(), socket.gethostname()))
    other.execute("BEGIN IMMEDIATE")
    loops: list[dict[str, Any]] = []
    real_loop = serve.DeviceLoop

    def loop(*args: Any, **kwargs: Any) -> Any:
        loops.append(kwargs)
        return real_loop(*args, **kwargs)

    monkeypatch.setattr(serve, "DeviceLoop", loop)
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.zeros(16000 * 2, dtype=np.float32))
    with caplog.at_level(logging.WARNING):
        code = cli.main(["--data-dir", str(tmp_path), "serve", "--engine", "pocketsphinx",
                         "--audio-in", str(wav)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert not [r.getMessage() for r in caplog.records if "(try " in r.getMessage()]
    [line] = [x for x in err.splitlines() if "locked" in x]
    assert "Listening anyway" in line and "cut off earlier are marked once it is let go" in line
    assert _status(other, 1) == "running"  # left while held ...
    [given] = loops
    upkeep = given["upkeep"]
    assert upkeep is not None and upkeep() is False  # ... and not waited for by the loop
    other.execute("COMMIT")
    assert upkeep() is True  # once let go, the tidy serve gave the loop marks it
    assert _status(other, 1) == "interrupted"
    other.close()


def test_the_loop_tidies_a_history_let_go_at_a_heartbeat(tmp_path: Path) -> None:
    """The device loop, given serve's upkeep after a start-up that met the lock, tries it at
    its heartbeats without waiting: the session cut off earlier is still running while the
    lock is held (at 3 s of audio) and marked interrupted within a heartbeat of its release
    (at 4 s), with nobody saying "start"."""
    rig = HeldRoom(tmp_path, [], 8.0)
    other = rig.other
    other.execute(CUT_OFF, (os.getpid(), socket.gethostname()))
    other.execute("BEGIN IMMEDIATE")
    seen: dict[float, str] = {}

    def let_go(t: float) -> None:
        if t >= 3.0 and 3.0 not in seen:
            seen[3.0] = _status(other, 1)
        elif t >= 4.0 and other.in_transaction:
            other.execute("COMMIT")
        elif t >= 6.0 and 6.0 not in seen:
            seen[6.0] = _status(other, 1)

    rig.run(let_go, upkeep=partial(recorder_module.tidy_if_let_go, tmp_path))
    assert seen == {3.0: "running", 6.0: "interrupted"}
    assert rig.recorders == []  # no session was started for it


# ---------------------------------------------------------------- planning meanwhile
@pytest.mark.parametrize("locked_from", ["mid-session", "before its start"])
def test_a_start_plans_from_a_session_whose_end_is_not_written_yet(
        tmp_path: Path, locked_from: str) -> None:
    """A session ends while another program holds the history (its row still 'running', or
    not written at all when the lock was held from its start) and "start" is heard before the
    lock is let go: the new session is planned from the first as it ended, as it will be once
    written. Before, the plan skipped it (a running row counts for nothing) and planned as if
    it had never been walked: week 1's first session again, not the same dose as today's."""
    from voicecoach.commands._common import recorded_session

    settings = Settings(data_dir=tmp_path)
    HistoryDB.open(tmp_path).close()
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    if locked_from == "before its start":
        other.execute("BEGIN IMMEDIATE")
    with ExitStack() as first_stack:
        plan, first = first_stack.enter_context(recorded_session(settings, None, "serve"))
        run = Run(plan)
        run.coach.listeners.append(first.on_event)
        run.coach.tick_hooks.append(first.heartbeat)
        run.into(State.BACKWARD).at(run.t + 30)
        if not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")
        run.finish()
        assert not first.end(run.coach.outcome or "interrupted")  # the device loop's end
        assert (first.session_id == 0) is (locked_from == "before its start")
        with recorded_session(settings, None, "serve") as (planned, second):
            assert second.session_id == 0  # the lock was still held
            pending = first.summary()
            other.execute("COMMIT")
            first.heartbeat(run.t + 10)  # the loop's heartbeat writes the first's end
            assert first.closed and not first.incomplete
            first_stack.close()
    other.close()
    with HistoryDB.open(tmp_path) as db:
        statuses = [s.status for s in db.sessions()]
        stored = db.sessions()[0]
        written = plan_next_session(db, settings.coach, dt.date.today())
    # the boot it began in, as stored: with no date to go by the plan counts the boot clock
    assert stored.boot_id and (pending.boot_id, pending.boot_s) == (stored.boot_id, stored.boot_s)
    assert statuses == ["finished", "interrupted"]  # the second counts for nothing
    words = load_phrases("en")
    assert written.notes[0] == words.PLAN_SAME_DAY  # the test means something ...
    assert (planned.notes, planned.phases) == (written.notes, written.phases)  # ... and holds



def _kept_beside_a_held_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                ) -> tuple[sqlite3.Connection, Any]:
    """A history with a session cut off earlier, held by another program (the connection
    returned, in its write transaction), and a session given up by its exit to a side file
    (the recorder returned; the exit's waits scaled down)."""
    from voicecoach.history import SessionRecorder
    from voicecoach.workout.plan import programme_week

    monkeypatch.setattr(recorder_module, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(recorder_module, "CLOSE_RETRY_S", 0.0)
    monkeypatch.setattr(recorder_module, "CLOSE_WORST_S", 0.2)
    db = HistoryDB.open(tmp_path)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute(CUT_OFF, (os.getpid(), socket.gethostname()))
    other.execute("BEGIN IMMEDIATE")
    kept = SessionRecorder.open(db, programme_week(2), "run")
    kept.close("stopped")
    db.close()
    assert kept.kept_in is not None
    return other, kept


def test_a_start_that_met_the_lock_tidies_once_it_is_let_go_before_its_own_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session given up to a side file at an exit (the history held), and one cut off
    earlier; "start" is heard with the history still held, so its opening's tidy is skipped.
    When the lock is let go, the new session's row is written by its heartbeat: the tidy is
    done first, at that moment, with no other opening: the kept session merged before it
    (walked before it, recorded before it: before, the new row got in first and the kept
    walk was merged after it, as if walked last), the cut-off one marked interrupted."""
    from voicecoach.commands._common import recorded_session

    settings = Settings(data_dir=tmp_path)
    other, kept = _kept_beside_a_held_history(tmp_path, monkeypatch)
    with recorded_session(settings, None, "serve") as (_plan, second):
        assert second.session_id == 0  # its row waits for the lock
        other.execute("COMMIT")
        second.heartbeat(1.0)
        assert second.session_id != 0 and not kept.kept_in.exists()
        rows = other.execute("SELECT id, source, status FROM sessions").fetchall()
        second.close("stopped")
    other.close()
    assert rows == [(1, "serve", "interrupted"), (2, "run", "stopped"), (3, "serve", "running")]


# ---------------------------------------------------------------- the exit
def test_exit_writes_every_unwritten_end_within_one_deadline_and_logs_each_given_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Three sessions end while another program holds the history and the input ends with
    it still held (serve stopped after a long lock): the exit closes all three within one
    deadline (CLOSE_WORST_S, which TimeoutStopSec leaves it: tests/test_serve.py). Before,
    each close waited its own CLOSE_WORST_S, one after another, so three passed the unit's
    60 s and the later ends were lost to the kill without a word. Measured by the closes'
    own pauses, here with every wait scaled down (a try waits 50 ms for the lock, the pauses
    are 20 ms): the first end takes the whole budget, the others one try that does not
    wait; each end given up says so in one log line with its figures and the side file it
    is kept in, and the next opening, the lock let go, merges all three
    (history/unwritten.py)."""
    monkeypatch.setattr(recorder_module, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(recorder_module, "CLOSE_RETRY_S", 0.02)
    monkeypatch.setattr(recorder_module, "CLOSE_WORST_S",
                        recorder_module.CLOSE_TRIES * 0.05
                        + (recorder_module.CLOSE_TRIES - 1) * 0.02)
    rig = HeldRoom(tmp_path, [("start", 1.0), ("stop", 5.0), ("start", 9.0), ("stop", 13.0),
                              ("start", 17.0), ("stop", 21.0)], 25.0)
    other, recorders, events = rig.other, rig.recorders, rig.events
    pauses: dict[int, list[float]] = {}

    def pause_of(index: int) -> Any:
        def pause(seconds: float) -> None:  # the close's pause, really taken (it is short)
            pauses.setdefault(index, []).append(seconds)
            time.sleep(seconds)
        return pause

    def hold(t: float) -> None:
        if t >= 3.0 and not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")  # and never let go while the loop runs
        for index, recorder in enumerate(recorders):
            recorder._sleep = pause_of(index)

    with caplog.at_level(logging.WARNING, logger="voicecoach.history.recorder"):
        rig.run(hold)
    ends = [e for e in events if isinstance(e, StateChanged) and e.dest == "stopped"]
    assert len(ends) == 3 and len(recorders) == 3
    assert all(r.closed and r.incomplete for r in recorders)  # given up: the lock was held
    taken = [s for index in sorted(pauses) for s in pauses[index]]
    assert set(pauses) <= {0}, pauses  # only the first end paused between tries ...
    assert len(taken) <= recorder_module.CLOSE_TRIES - 1  # ... as one close would
    lines = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(lines) == 3 and all("ended stopped" in line for line in lines), lines
    assert "session 1 could not be written in full" in lines[0]  # its row was written
    assert all("could not be written at all" in line for line in lines[1:])  # theirs were not
    assert [r.kept_in for r in recorders] == [
        tmp_path / f"{DB_NAME}.unwritten{tail}" for tail in ("", "-2", "-3")]
    assert all(str(r.kept_in) in line for r, line in zip(recorders, lines, strict=True))
    with HistoryDB.open(tmp_path) as db:  # in the order they ended, each with its end
        assert [s.status for s in db.sessions()] == ["stopped"] * 3


def test_history_reads_at_once_while_another_program_holds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`voicecoach history` with another program holding the history's write lock, a session
    kept beside it by an exit and one cut off earlier to mark: its opening's writes (the merge,
    the mark) each waited for the lock as any opening does (10 s: watched here as the wait in
    force when each write began, the 10 s scaled down to 50 ms) before it read the same. Now
    no write waits: they are left to the next opening, and the table is read at once, the
    kept session in it as it ended; once the lock is let go the next `history` does them."""
    import json

    from voicecoach import cli
    from voicecoach.history import db as db_module

    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    other, kept = _kept_beside_a_held_history(tmp_path, monkeypatch)
    waits: list[int] = []
    real_transaction = HistoryDB.transaction

    def watched(self: HistoryDB) -> Any:
        waits.append(int(self.conn.execute("PRAGMA busy_timeout").fetchone()[0]))
        return real_transaction(self)

    monkeypatch.setattr(HistoryDB, "transaction", watched)

    def history() -> list[tuple[int, str]]:
        assert cli.main(["--data-dir", str(tmp_path), "history", "--json"]) == 0
        return [(s["id"], s["status"]) for s in json.loads(capsys.readouterr().out)["sessions"]]

    # read as it is, the kept one too, and the one cut off as the next opening will mark it
    assert history() == [(1, "interrupted"), (2, "stopped")]
    assert waits and set(waits) == {0}, waits  # tried, never waited for
    assert kept.kept_in.exists() and _status(other, 1) == "running"  # left to the next one
    other.execute("COMMIT")
    assert history() == [(1, "interrupted"), (2, "stopped")]
    assert not kept.kept_in.exists()
    other.close()


def test_history_shows_a_session_whose_process_is_gone_as_interrupted_while_held(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two sessions 'running' in the history while another program holds it locked (so
    `history` cannot mark anything): one whose process died mid-walk (a real process, ended),
    one whose process is alive (this one, still recording). `history` showed both running.
    Now the one whose owner is gone is shown as the next opening will mark it: interrupted,
    its backward minutes from the events it logged; the live one stays running. Once the lock
    is let go, the opening marks it so, and the table says the same."""
    import json

    from voicecoach import cli
    from voicecoach.history import SessionRecorder
    from voicecoach.workout.plan import programme_week

    db = HistoryDB.open(tmp_path)
    cut, _ = cut_off_mid_walk(db, 180.0)
    live = SessionRecorder.open(db, programme_week(2), "run")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    def history() -> list[tuple[int, str, float, str | None]]:
        assert cli.main(["--data-dir", str(tmp_path), "history", "--json"]) == 0
        return [(s["id"], s["status"], s["backward_s"], s["ended_at"])
                for s in json.loads(capsys.readouterr().out)["sessions"]]

    held = history()
    assert _status(other, cut.session_id) == "running"  # nothing written while held
    assert [s[:3] for s in held] == [(cut.session_id, "interrupted", 180.0),
                                     (live.session_id, "running", 0.0)]
    assert held[0][3] is not None and held[1][3] is None  # its end: as the mark sets it
    other.execute("COMMIT")
    other.close()
    assert history() == held  # the opening's mark agrees with what was shown
    assert _status(db.conn, cut.session_id) == "interrupted"
    live.close("stopped")
    db.close()
