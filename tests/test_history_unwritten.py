"""A session the exit cannot write (another program holds the history locked past the exit's
deadline, or a bug in writing it raises until then) is kept in a side file beside the history
and merged into it at the next opening that can write (history/unwritten.py). Real SQLite, the
lock held by another connection; the exit's waits scaled down (as in test_history_locked.py)."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from history_helpers import a_process_gone, cut_off_mid_walk

from voicecoach import cli
from voicecoach.events import DeviceProblem, Event, PainReported, PhaseStarted, SessionEnded
from voicecoach.history import (
    DB_NAME,
    HistoryDB,
    SessionRecorder,
    parts,
    recovery,
    session_writer,
    unwritten,
)
from voicecoach.history import recorder as recorder_module
from voicecoach.history.rows import SessionSummary
from voicecoach.workout.coach import Coach
from voicecoach.workout.plan import programme_week

SIDE = DB_NAME + ".unwritten"


@pytest.fixture(autouse=True)
def _short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exit's 43 s as 0.26 s: a try waits 50 ms for the lock, the pauses are 20 ms."""
    monkeypatch.setattr(session_writer, "SESSION_BUSY_MS", 5)
    monkeypatch.setattr(recorder_module, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(recorder_module, "CLOSE_RETRY_S", 0.02)
    monkeypatch.setattr(recorder_module, "CLOSE_WORST_S",
                        recorder_module.CLOSE_TRIES * 0.05
                        + (recorder_module.CLOSE_TRIES - 1) * 0.02)


def _walk_events() -> list[Event]:
    """A week-2 walk of 300 s backward with a pain report."""
    return [PhaseStarted(t=0.0, state="backward", index=1, kind="backward", duration_s=300.0,
                         speed_mph=0.9, min_speed_mph=0.8, max_speed_mph=1.0, incline_pct=0.0),
            PainReported(t=120.0, state="backward", phrase="my knee hurts"),
            SessionEnded(t=300.0, state="done", outcome="finished", backward_s=300.0,
                         total_s=300.0, min_speed_mph=0.9, max_speed_mph=0.9, summary="")]


def _walk(recorder: SessionRecorder, other: sqlite3.Connection, *, lock_at: int) -> None:
    """A week-2 walk of 300 s backward with a pain report; ``other`` takes the history's
    write lock before event ``lock_at`` (0: before the session's start) and keeps it."""
    for index, event in enumerate(_walk_events(), 1):
        if index == lock_at:
            other.execute("BEGIN IMMEDIATE")
        recorder.on_event(event)


def _history_json(data: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert cli.main(["--data-dir", str(data), "history", "--json"]) == 0
    sessions: list[dict[str, object]] = json.loads(capsys.readouterr().out)["sessions"]
    return sessions


def _kept_session_merged_in_full(merged: dict[str, object], data: Path) -> None:
    """The kept session (a finished 300-s walk with a pain report) is session 1 of the
    history, with its figures and every event."""
    assert (merged["id"], merged["status"], merged["backward_s"], merged["pain_reports"]) == (
        1, "finished", 300.0, 1)
    with HistoryDB.open(data) as db:
        assert [e["type"] for e in db.events(1)] == ["phase_started", "pain_reported",
                                                     "session_ended"]


def test_a_session_locked_out_from_its_start_is_kept_beside_and_merged_at_the_next_opening(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The history is held from before the session's start until after the exit gave its end
    up: before, the session existed only in the give-up's log line (its row never reached the
    disk). Now it is in ``history.sqlite3.unwritten``, said in one line, and the next opening
    with the lock let go adds it after the sessions recorded before it, with its figures, its
    events and its pain report; the side file is then gone."""
    db = HistoryDB.open(tmp_path)
    earlier = SessionRecorder.open(db, programme_week(1), "run")
    earlier.close("stopped")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    _walk(recorder, other, lock_at=-1)
    with caplog.at_level(logging.WARNING, logger="voicecoach.history"):
        recorder.close()
    db.close()
    side = tmp_path / SIDE
    assert recorder.kept_in == side and side.is_file()
    [line] = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert str(side) in line and "ended finished after 300 s (300 s backward)" in line
    other.execute("COMMIT")
    other.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="voicecoach.history"):
        sessions = _history_json(tmp_path, capsys)
    assert [(s["id"], s["status"]) for s in sessions] == [(1, "stopped"), (2, "finished")]
    kept = sessions[1]
    assert (kept["week"], kept["backward_s"], kept["total_s"], kept["pain_reports"]) == (
        2, 300.0, 300.0, 1)
    assert not side.exists()
    [merged] = [r.getMessage() for r in caplog.records if "merged" in r.getMessage()]
    assert str(side) in merged and "added as session 2, finished" in merged
    with HistoryDB.open(tmp_path) as db:
        assert [e["type"] for e in db.events(2)] == ["phase_started", "pain_reported",
                                                     "session_ended"]


def test_a_session_whose_end_alone_was_not_written_gets_it_at_the_next_opening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The session's row and first event reached the history, then the lock was taken and
    held past the exit: before, the next opening (its process gone) marked it interrupted
    after 0 s, from what reached the disk. Now its end is kept beside the history and applied
    to that same row (not a second session): finished, 300 s backward, the pain report and
    every event once."""
    monkeypatch.setattr(recovery, "pid_alive", lambda pid, token: False)  # the exit is over
    db = HistoryDB.open(tmp_path)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    _walk(recorder, other, lock_at=2)
    recorder.close()
    db.close()
    assert recorder.session_id == 1 and recorder.kept_in == tmp_path / SIDE
    other.execute("COMMIT")
    other.close()
    [kept] = _history_json(tmp_path, capsys)
    assert (kept["id"], kept["status"], kept["backward_s"], kept["total_s"],
            kept["pain_reports"]) == (1, "finished", 300.0, 300.0, 1)
    assert not (tmp_path / SIDE).exists()
    with HistoryDB.open(tmp_path) as db:
        assert [e["type"] for e in db.events(1)] == ["phase_started", "pain_reported",
                                                     "session_ended"]
        assert db.pain_reports(1) == [(120.0, "backward", "my knee hurts")]


BUG = "the kept events' write is broken"


def _broken_flush(monkeypatch: pytest.MonkeyPatch, *, side_file_too: bool = False) -> None:
    """From now on, a bug in writing the events kept in memory (the one real method that
    writes them) raises for the history (and for the side file too with ``side_file_too``),
    until the exit."""
    real = session_writer.SessionWriter._flush

    def broken(self: session_writer.SessionWriter) -> bool:
        if side_file_too or Path(self.db.path).name == DB_NAME:
            raise RuntimeError(BUG)
        return real(self)
    monkeypatch.setattr(session_writer.SessionWriter, "_flush", broken)


def _coached(recorder: SessionRecorder, monkeypatch: pytest.MonkeyPatch, **broken: bool) -> None:
    """:func:`_walk`'s events given by a real coach (its listener guard in between), the first
    written, the rest met by the bug of :func:`_broken_flush`."""
    coach = Coach(programme_week(2), listeners=[recorder.on_event])
    first, *rest = _walk_events()
    coach.emit(first)
    _broken_flush(monkeypatch, **broken)
    for event in rest:
        coach.emit(event)


def test_a_session_whose_writes_raise_a_bug_until_the_exit_is_kept_beside_and_merged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A bug (not a lock or a full disk) in writing the session's events raises from its second
    event until the exit: before, the exit's close raised it and the rest of the session was
    lost (the device loop's "is lost" line). Now it takes the side-file path a lock takes:
    kept beside the history, said in one line, merged at the next opening with every event."""
    monkeypatch.setattr(recovery, "pid_alive", lambda pid, token: False)  # the exit is over
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    with caplog.at_level(logging.INFO, logger="voicecoach"):
        _coached(recorder, monkeypatch)
        recorder.close()
    db.close()
    assert recorder.session_id == 1 and recorder.kept_in == tmp_path / SIDE
    # one ERROR line for the bug (naming it and where), one WARNING for where the rest went
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    [bug] = errors
    assert f"RuntimeError: {BUG}" in bug and "test_history_unwritten.py" in bug
    [kept] = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert str(tmp_path / SIDE) in kept and "ended finished after 300 s" in kept
    assert not any(r.exc_info and r.levelno > logging.DEBUG for r in caplog.records)
    [merged] = _history_json(tmp_path, capsys)
    assert not (tmp_path / SIDE).exists()
    _kept_session_merged_in_full(merged, tmp_path)


def test_a_bug_that_breaks_the_side_file_too_is_said_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The same bug in writing the side file: the exit's close does not raise it (before: it
    did); one line says what is lost and that it could not be kept beside the history
    either."""
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    with caplog.at_level(logging.INFO, logger="voicecoach"):
        _coached(recorder, monkeypatch, side_file_too=True)
        recorder.close()
    db.close()
    assert recorder.closed and recorder.incomplete and recorder.kept_in is None
    assert not (tmp_path / SIDE).exists()
    assert [p.name for p in tmp_path.iterdir() if ".unwritten" in p.name] == []
    [lost] = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert f"nor kept beside it (RuntimeError: {BUG}" in lost
    assert "ended finished after 300 s" in lost
    assert not any(r.exc_info and r.levelno > logging.DEBUG for r in caplog.records)


def test_a_side_file_that_cannot_be_read_is_left_and_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged side file: the history opens and lists its sessions as ever, one line names
    the file, and the file is left as it was (never deleted), at every opening."""
    with HistoryDB.open(tmp_path) as db:
        SessionRecorder.open(db, programme_week(1), "run").close("stopped")
    side = tmp_path / SIDE
    side.write_bytes(b"not a database " * 300)
    with caplog.at_level(logging.WARNING, logger="voicecoach.history"):
        sessions = _history_json(tmp_path, capsys)
    assert [s["status"] for s in sessions] == ["stopped"]
    [line] = [r.getMessage() for r in caplog.records if str(side) in r.getMessage()]
    assert "cannot be read" in line and "left as it is" in line
    # its own advice, not the history's ("run again to start a new history")
    assert f"move it aside (mv {side} {side}.broken)" in line and "new history" not in line
    assert side.read_bytes() == b"not a database " * 300


@pytest.mark.parametrize("kept", ["the whole session", "its end alone"])
def test_a_kept_session_is_shown_and_planned_from_while_the_history_is_still_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], kept: str) -> None:
    """The exit gave a session up to a side file and the other program still holds the
    history when the user looks at it and when the next session is planned: nothing can be
    merged yet, and before, `history` and the plan showed the session missing (its row never
    got in) or 'running', counting for nothing (its end alone kept). Now both read the side
    file alongside the history, without writing a byte: the session as the merge will put
    it, the same table and the same plan as once it is merged; the file stays until then."""
    from voicecoach.commands._common import recorded_session
    from voicecoach.history import db as db_module
    from voicecoach.history import plan_next_session
    from voicecoach.history.recorder import sessions_for_plan
    from voicecoach.settings import Settings

    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)  # `history`'s wait for the lock
    monkeypatch.setattr(recovery, "pid_alive", lambda pid, token: False)  # the exit is over
    db = HistoryDB.open(tmp_path)
    SessionRecorder.open(db, programme_week(1), "run").close("stopped")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    whole = kept == "the whole session"
    if whole:
        other.execute("BEGIN IMMEDIATE")
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    _walk(recorder, other, lock_at=-1 if whole else 2)
    recorder.close()
    db.close()
    side = tmp_path / SIDE
    assert recorder.kept_in == side
    copy = side.read_bytes()
    settings = Settings(data_dir=tmp_path)
    held = _history_json(tmp_path, capsys)
    with recorded_session(settings, None, "serve") as (planned, second):
        assert second.session_id == 0  # the lock is still held: nothing was merged ...
        assert side.is_file()  # ... nor removed
        second.close("stopped")  # given up too, to a side file of its own
    other.execute("COMMIT")
    other.close()
    merged = _history_json(tmp_path, capsys)
    assert not side.exists() and [s["status"] for s in merged[2:]] == ["stopped"]
    assert [(s["id"], s["status"]) for s in merged[:2]] == [(1, "stopped"), (2, "finished")]
    assert (merged[1]["backward_s"], merged[1]["pain_reports"]) == (300.0, 1)
    assert held == merged[:2]
    side.write_bytes(copy)  # merged, then not removed: read alongside, it is not listed twice
    with HistoryDB.open_file(tmp_path / DB_NAME, recover=False) as db:
        assert [s.to_dict() for s in db.sessions()] == merged
    with HistoryDB.open(tmp_path) as db:
        written = plan_next_session(sessions_for_plan(db)[:2], settings.coach,
                                    datetime.date.today())
    assert (planned.week, planned.phases, planned.notes) == (written.week, written.phases,
                                                            written.notes)


SUMMARY_BUG = "the summary's figures are broken"


def _broken_summary(monkeypatch: pytest.MonkeyPatch, broken: SessionRecorder) -> None:
    """A bug in ``broken``'s summary (the figures it reads back from memory): it raises."""
    real = SessionRecorder.summary

    def summary(self: SessionRecorder) -> SessionSummary:
        if self is broken:
            raise RuntimeError(SUMMARY_BUG)
        return real(self)
    monkeypatch.setattr(SessionRecorder, "summary", summary)


@pytest.mark.parametrize("kept", ["the whole session", "its end alone"])
def test_a_summary_that_raises_at_the_close_still_keeps_the_session_beside_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], kept: str) -> None:
    """The exit gives a session up to a side file (another program holds the history) and a
    bug in its summary (the figures for the line saying what could not be written) raises:
    before, the close raised it out of the command (a traceback) after the side file and
    before that line, so nothing said where the session went. Now one ERROR line names the
    bug, the close's line still says what could not be written and where it is kept (without
    the figures), the data folder is let go, and the next opening merges the session whole."""
    from voicecoach.commands._common import recorded_session
    from voicecoach.settings import Settings

    monkeypatch.setattr(recovery, "pid_alive", lambda pid, token: False)  # the exit is over
    settings = Settings(data_dir=tmp_path)
    HistoryDB.open(tmp_path).close()
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    whole = kept == "the whole session"
    if whole:
        other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.INFO, logger="voicecoach"):
        with recorded_session(settings, programme_week(2), "run") as (_plan, recorder):
            _walk(recorder, other, lock_at=-1 if whole else 2)
            _broken_summary(monkeypatch, recorder)
        # the command's end: the close gave the session up and said so, raising nothing
    assert recorder.closed and recorder.incomplete and recorder.kept_in == tmp_path / SIDE
    assert recorder.kept_in.is_file()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    [bug] = [line for line in errors if "locked by another program" not in line]
    name = "the new session" if whole else "session 1"
    assert bug.startswith(f"history: a fault while closing {name}: RuntimeError: {SUMMARY_BUG}")
    assert "test_history_unwritten.py" in bug and "not a fault of the workout" in bug
    [lost] = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert str(recorder.kept_in) in lost and "merged into the history at its next opening" in lost
    assert ("could not be written at all" in lost) is whole
    assert not any(r.exc_info and r.levelno > logging.DEBUG for r in caplog.records)
    other.execute("COMMIT")
    other.close()
    # the data folder is let go: the next session starts, and its opening merges the first
    with recorded_session(settings, programme_week(3), "run") as (_plan, second):
        assert second.session_id == 2
        second.close("stopped")
    assert not (tmp_path / SIDE).exists()
    [merged, _second] = _history_json(tmp_path, capsys)
    _kept_session_merged_in_full(merged, tmp_path)


def test_a_summary_that_raises_leaves_the_session_out_of_the_next_plan_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A session ends while another program holds the history (its end in memory, its row
    'running') and "start" is heard, twice, before the lock is let go, with a bug in that
    session's summary: before, the plan raised it and no session could start. Now the next
    session is planned from the rows the history holds (the first's 'running' row counts
    for nothing), one ERROR line says so however often it is planned, and the first's end is
    written once the lock is let go."""
    from voicecoach.commands._common import recorded_session
    from voicecoach.history import plan_next_session
    from voicecoach.settings import Settings

    settings = Settings(data_dir=tmp_path)
    with HistoryDB.open(tmp_path) as db:
        SessionRecorder.open(db, programme_week(1), "run").close("stopped")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    with contextlib.ExitStack() as first_stack:
        _plan, first = first_stack.enter_context(
            recorded_session(settings, programme_week(2), "serve"))
        _walk(first, other, lock_at=2)
        assert not first.end("finished")  # the device loop's end: kept in memory
        _broken_summary(monkeypatch, first)
        with HistoryDB.open_file(tmp_path / DB_NAME, recover=False) as held:
            rows = held.sessions()
        assert [s.status for s in rows] == ["stopped", "running"]
        expected = plan_next_session(rows, settings.coach, datetime.date.today())
        with caplog.at_level(logging.INFO, logger="voicecoach"):
            for _start in range(2):
                with recorded_session(settings, None, "serve") as (planned, second):
                    assert second.session_id == 0  # the lock is still held
                    second.close("stopped")  # given up too, to a side file of its own
                assert (planned.week, planned.phases, planned.notes) == (
                    expected.week, expected.phases, expected.notes)
        other.execute("COMMIT")
        other.close()
        first.heartbeat(400.0)  # the loop's heartbeat writes the first's end
        assert first.closed and not first.incomplete
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    [bug] = [line for line in errors if "locked by another program" not in line]
    assert bug.startswith(f"history: a fault while planning from session {first.session_id}: "
                          f"RuntimeError: {SUMMARY_BUG}")
    assert "test_history_unwritten.py" in bug and "not a fault of the workout" in bug
    assert not any(r.exc_info and r.levelno > logging.DEBUG for r in caplog.records)
    with HistoryDB.open(tmp_path) as db:
        assert [s.status for s in db.sessions()] == ["stopped", "finished", "stopped",
                                                     "stopped"]


def test_a_kept_session_is_not_taken_for_an_earlier_one_of_the_same_process_and_second(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two sessions of one process started in the same second, neither with an event (the
    first stopped at once), the second given up to a side file: before, the merge took the
    second for the first (same process, start and events: 'had it already') and removed its
    file, and the session was lost. Now only the same row, every column, with the same events
    is 'had already': it is added."""
    start = datetime.datetime(2026, 3, 2, 8, 0, tzinfo=datetime.timezone.utc)
    db = HistoryDB.open(tmp_path)
    SessionRecorder.open(db, programme_week(1), "run", started_at=start).close("stopped")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    SessionRecorder.open(db, programme_week(2), "serve", started_at=start).close("stopped")
    db.close()
    other.execute("COMMIT")
    other.close()
    sessions = _history_json(tmp_path, capsys)
    assert [(s["id"], s["source"], s["week"]) for s in sessions] == [(1, "run", 1),
                                                                       (2, "serve", 2)]
    assert not (tmp_path / SIDE).exists()


def test_a_side_file_still_being_written_by_its_process_is_not_merged_until_it_is_done(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An exit fills its side file in several commits, the session's row first (still
    'running') and its end last. An opening in those milliseconds (the other program let the
    history go meanwhile) merged what was there and removed the file: the end and the last
    events, written after into a file gone, were lost, and the session showed 'running'.
    Now a running row of a process still alive is left (neither merged nor shown) until its
    end is in; the next opening merges the whole."""
    import os
    import socket

    from voicecoach.history.liveness import process_token

    HistoryDB.open(tmp_path).close()
    # a side file filled under its own name (as before session 21's part files; the check
    # stands for a file an older version is still writing)
    part, conn = parts.create(tmp_path / DB_NAME, None)
    conn.close()
    side = parts.publish(part, tmp_path / DB_NAME)
    conn = sqlite3.connect(side, isolation_level=None)
    conn.execute("INSERT INTO sessions (started_at, plan, week, source, status, pid, host,"
                 " proc_token) VALUES ('2026-03-02T08:00:00+00:00', 'week 2', 2, 'run',"
                 " 'running', ?, ?, ?)",
                 (os.getpid(), socket.gethostname(), process_token(os.getpid())))
    assert _history_json(tmp_path, capsys) == []
    assert side.exists()
    conn.execute("UPDATE sessions SET status = 'finished', ended_at = '2026-03-02T08:05:00"
                 "+00:00', backward_s = 300, total_s = 300")
    conn.close()
    [kept] = _history_json(tmp_path, capsys)
    assert (kept["status"], kept["backward_s"]) == ("finished", 300.0)
    assert not side.exists()


def test_a_side_file_is_never_seen_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The exit writes its side file in several steps (created, its schema, the session's row,
    the events, the end). An opening or a read at any of those moments (the other program let
    the history go meanwhile) met the file under its side file's name, empty or without its
    session, and said "cannot be read ... move it aside" for a file that was good a moment
    later. Now it is written under a part name no reader lists and renamed into place once
    complete: after each write of the file an opening (its tidy) and `history` see no side
    file and log no error; after it, the side file holds the whole session, no part is left,
    and the next opening merges it."""
    db = HistoryDB.open(tmp_path)
    SessionRecorder.open(db, programme_week(1), "run").close("stopped")
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    seen: list[list[str]] = []
    said: list[str] = []
    real_transaction = HistoryDB.transaction

    def look() -> None:
        other.execute("COMMIT")  # let go for a moment: another opening and a read
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="voicecoach.history"):
            HistoryDB.open_file(tmp_path / DB_NAME).close()
            assert cli.main(["--data-dir", str(tmp_path), "history", "--json"]) == 0
        said.extend(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        capsys.readouterr()
        seen.append(sorted(p.name for p in unwritten.side_files(tmp_path / DB_NAME)))
        other.execute("BEGIN IMMEDIATE")

    def watched(self: HistoryDB):  # type: ignore[no-untyped-def]
        with real_transaction(self) as conn:
            yield conn
        if self.path.name != DB_NAME:  # a write of the file the session is kept in
            look()

    def created(history: Path, history_id: int | None) -> tuple[Path, sqlite3.Connection]:
        made = real_create(history, history_id)
        look()  # its schema in, its session not yet
        return made

    real_create = parts.create
    monkeypatch.setattr(parts, "create", created)
    monkeypatch.setattr(HistoryDB, "transaction", contextlib.contextmanager(watched))
    other.execute("BEGIN IMMEDIATE")
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    _walk(recorder, other, lock_at=-1)
    recorder.close()
    db.close()
    monkeypatch.setattr(HistoryDB, "transaction", real_transaction)
    assert len(seen) >= 4 and all(names == [] for names in seen), seen  # never listed
    assert said == []
    assert recorder.kept_in == tmp_path / SIDE
    assert [p.name for p in tmp_path.iterdir() if SIDE in p.name] == [SIDE]
    other.execute("COMMIT")
    other.close()
    sessions = _history_json(tmp_path, capsys)
    assert [(s["week"], s["status"]) for s in sessions] == [(1, "stopped"), (2, "finished")]
    assert sessions[1]["pain_reports"] == 1 and not (tmp_path / SIDE).exists()


def _kept_part(data: Path, week: int) -> Path:
    """A complete part file holding one finished session of ``week`` (the row never reached
    the history), as the exit writes it before it renames it into place."""
    part, conn = parts.create(data / DB_NAME, None)
    side = HistoryDB(part, conn)
    SessionRecorder.open(side, programme_week(week), "run").close("stopped")
    side.close()
    return part


@pytest.mark.parametrize("links", [True, False])
def test_two_exits_giving_up_at_once_never_write_over_each_others_side_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        links: bool) -> None:
    """Two processes give a session up at the same moment: the other takes the free name
    between this one's look for it and its rename into place. Each keeps its own file
    (`.unwritten`, `-2`), neither over the other, and the next opening merges both. Also
    where the file system has no hard links (FAT: link() refused), where the name is looked
    up and taken under a lock on the folder."""
    HistoryDB.open(tmp_path).close()
    ours, theirs = _kept_part(tmp_path, 1), _kept_part(tmp_path, 2)
    if not links:
        def no_link(src: object, dst: object) -> None:
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(parts.os, "link", no_link)
    real_free_name = parts.free_name
    raced: list[Path] = []

    def free_name(history: Path, suffix: str) -> Path:
        name = real_free_name(history, suffix)
        if not raced and links:  # the other exit takes it right after our look
            raced.append(tmp_path)  # (its own look is not raced)
            raced[0] = parts.publish(theirs, tmp_path / DB_NAME)
        return name

    monkeypatch.setattr(parts, "free_name", free_name)
    if not links:
        raced.append(parts.publish(theirs, tmp_path / DB_NAME))
    mine = parts.publish(ours, tmp_path / DB_NAME)
    assert raced == [tmp_path / SIDE] and mine == tmp_path / f"{SIDE}-2"
    assert not ours.exists() and not theirs.exists()
    monkeypatch.undo()
    sessions = _history_json(tmp_path, capsys)
    assert sorted(s["week"] for s in sessions) == [1, 2]


def test_a_part_file_left_by_an_exit_cut_off_is_taken_in_or_removed_never_read_as_a_side_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An exit killed while it wrote its side file leaves the part file. While its writer
    lives it is never listed, merged or reported; once its writer is gone the next opening
    takes it in: the session it holds merged (as its rows say: nothing of the walk lost), an
    empty one (killed before the session's row) removed, and no line says 'move it aside'."""
    HistoryDB.open(tmp_path).close()
    holding = _kept_part(tmp_path, 2)
    empty, conn = parts.create(tmp_path / DB_NAME, None)
    conn.close()
    with caplog.at_level(logging.WARNING, logger="voicecoach.history"):
        assert _history_json(tmp_path, capsys) == []  # their writer (this process) lives
    assert holding.exists() and empty.exists() and unwritten.side_files(tmp_path / DB_NAME) == []
    monkeypatch.setattr(parts, "pid_alive", lambda pid, token="": False)  # killed
    with caplog.at_level(logging.WARNING, logger="voicecoach.history"):
        [kept] = _history_json(tmp_path, capsys)
    assert (kept["week"], kept["status"]) == (2, "stopped")
    assert not holding.exists() and not empty.exists()
    assert [p.name for p in tmp_path.iterdir() if SIDE in p.name] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _left_by(part: Path, pid: int, token: str) -> Path:
    """``part`` renamed as a part file of the writer ``pid`` whose start token was ``token``
    (history/liveness.py's ``process_token``; '' where there was no process table), as that
    writer names it (parts.part_name): what a writer cut off leaves."""
    import socket

    writer = f"{pid}~{token.replace(':', '~')}" if token else str(pid)
    unique = part.name.split(".")[-3 - socket.gethostname().count(".")]  # its 8 hex digits
    left = part.with_name(f"{DB_NAME}.unwritten.{writer}.{unique}.{socket.gethostname()}.part")
    part.rename(left)
    return left


def test_a_part_left_in_an_earlier_boot_or_by_a_pid_now_reused_is_taken_in(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Part files whose writers died mid-write, named with their pids: after a reboot, or
    once pids wrapped, each pid is a live process again (here: this test's own), an unrelated
    one. They were judged by the pid alone, taken for files still being filled, and never
    taken in: the walks in them never reached the history. Now a writer is known by its pid,
    this boot's id and its start tick (/proc): the part of an earlier boot and the part of
    an earlier process with the same pid are taken in; a part of this very process (still
    being filled) is left alone."""
    import os

    from voicecoach.history.liveness import boot_id, process_token

    HistoryDB.open(tmp_path).close()
    me, mine = os.getpid(), process_token(os.getpid())
    assert mine, "needs Linux's /proc"
    earlier_boot = _left_by(_kept_part(tmp_path, 1), me, "0a0b0c0d-1111-2222-3333-444455556666"
                            + mine[mine.index(":"):])
    tick = int(mine.rsplit(":", 1)[1])
    pid_reused = _left_by(_kept_part(tmp_path, 2), me, f"{boot_id()}:{tick - 1}")
    filling = _left_by(_kept_part(tmp_path, 3), me, mine)
    sessions = _history_json(tmp_path, capsys)
    assert sorted((s["week"], s["status"]) for s in sessions) == [(1, "stopped"), (2, "stopped")]
    assert not earlier_boot.exists() and not pid_reused.exists()
    assert filling.exists() and parts.leftovers(tmp_path / DB_NAME) == []


def test_without_a_process_table_a_part_is_judged_by_its_pid_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Where there is no /proc (the process table stood for by a folder that is not there),
    a writer is named by its pid alone and judged so: a part of a live pid is left (it may be
    being filled), one of a pid gone is taken in."""
    import os

    from voicecoach.history import liveness

    monkeypatch.setattr(liveness, "PROC", tmp_path / "no-proc")
    assert liveness.process_token(os.getpid()) == ""
    assert liveness.pid_alive(os.getpid(), "a-boot:123")  # a token cannot be checked
    HistoryDB.open(tmp_path).close()
    part = _kept_part(tmp_path, 1)
    assert part.name.split(".")[3] == str(os.getpid())  # <history>.unwritten.<pid>.<hex>...
    gone, _token = a_process_gone()
    left = _left_by(_kept_part(tmp_path, 2), gone, "")
    [kept] = _history_json(tmp_path, capsys)
    assert (kept["week"], part.exists(), left.exists()) == (2, True, False)


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` (a file system of its own for root: test_history_faults.tmpfs) cannot be
    written meanwhile: chmod for a user, a read-only remount for root."""
    import os

    from test_history_faults import _mount

    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    assert _mount("-o", "remount,ro", str(folder))
    try:
        yield
    finally:
        assert _mount("-o", "remount,rw", str(folder))


def test_history_says_a_leftover_part_waits_to_be_taken_in_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A part file left by an exit cut off mid-write (its process gone), read by `history`
    where it cannot be written (the data folder read-only: mounted so, or another user's),
    so it cannot take the part in: `history` listed nothing and said nothing, and the user
    never learnt a walk was waiting. Now one line (stderr) names the file, says what it is
    and what takes it in, and the folder is left byte for byte as it was; a leftover that
    holds nothing (removed at the next opening) is not mentioned. Once the folder can be
    written, `history` takes it in and the line is gone."""
    import os

    from test_history_faults import tmpfs

    with contextlib.ExitStack() as stack:
        home = tmp_path / "home"
        if os.geteuid() == 0:
            stack.enter_context(tmpfs(home))
        else:
            home.mkdir()
        HistoryDB.open(home).close()
        pid, token = a_process_gone()
        left = _left_by(_kept_part(home, 2), pid, token)
        empty, conn = parts.create(home / DB_NAME, None)
        conn.close()
        empty = _left_by(empty, pid, token)

        def folder() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}

        before = folder()
        with _read_only(home):
            assert cli.main(["--data-dir", str(home), "history"]) == 0
            out, err = capsys.readouterr()
        assert folder() == before
        assert "No sessions recorded" in out
        [line] = err.splitlines()
        assert str(left) in line and str(empty) not in line
        assert "holds a session" in line and "takes it in" in line
        [kept] = _history_json(home, capsys)
        assert (kept["week"], kept["status"]) == (2, "stopped")
        assert capsys.readouterr().err == "" and not left.exists() and not empty.exists()


def test_a_leftover_cut_off_mid_walk_is_shown_interrupted_while_the_history_is_held(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A part file whose writer died after the session's row and some events, before its
    end (still 'running' in it), beside a history another program holds: `history` takes it
    in (a file put in place: no lock needed) but cannot merge or mark it, and showed it
    running. Now it is shown as the next opening merges and marks it: interrupted, its
    backward minutes from its events; once let go, the opening writes the same."""

    HistoryDB.open(tmp_path).close()
    part, conn = parts.create(tmp_path / DB_NAME, None)
    side = HistoryDB(part, conn)
    _, pid = cut_off_mid_walk(side, 200.0)
    side.close()
    _left_by(part, pid, "")  # named by its pid alone: as before session 22, or without /proc
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    [held] = _history_json(tmp_path, capsys)
    assert (held["status"], held["backward_s"]) == ("interrupted", 200.0)
    assert held["ended_at"] is not None
    other.execute("COMMIT")
    other.close()
    assert _history_json(tmp_path, capsys) == [held]


@pytest.mark.parametrize("phase", ["backward", "cooldown"])
@pytest.mark.parametrize("held_from", ["the fault", "the end"])
def test_a_session_a_fault_ended_while_the_history_was_held_is_read_as_ended_on_fault(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_from: str, phase: str) -> None:
    """A fault inside voicecoach ended a session (its DeviceProblem, then its end as stopped)
    while another program held the history: a plan made meanwhile (its end in memory), a read
    with its end kept beside the history, and the history once merged all read it as ended by
    the device, not the user, whichever file holds the fault, and in the phase it came in
    (the cool-down's start in the history, the fault beside it: progression counts it)."""
    from voicecoach.history.recorder import sessions_for_plan

    monkeypatch.setattr(recovery, "pid_alive", lambda pid, token: False)  # the exit is over
    db = HistoryDB.open(tmp_path)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    recorder = SessionRecorder.open(db, programme_week(2), "serve")
    recorder.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                                   duration_s=420.0, speed_mph=0.8, min_speed_mph=0.8,
                                   max_speed_mph=1.0, incline_pct=0.0))
    at = 200.0
    if phase == "cooldown":
        recorder.on_event(PhaseStarted(t=420.0, state="cooldown", index=2, kind="cooldown",
                                       duration_s=120.0, speed_mph=1.2, min_speed_mph=0.8,
                                       max_speed_mph=1.8, incline_pct=0.0))
        at = 450.0
    walked = round(min(at, 420.0))
    if held_from == "the fault":
        other.execute("BEGIN IMMEDIATE")
    recorder.on_event(DeviceProblem(t=at, state=phase, device="coach",
                                    problem="internal fault while ticking the workout: "
                                            "RuntimeError: a bug", extra={"at": "coach.py:1"}))
    if held_from == "the end":
        other.execute("BEGIN IMMEDIATE")
    assert not recorder.end("stopped")  # the end waits in memory
    [planned] = sessions_for_plan(db)
    assert (planned.status, planned.fault, planned.ended_on_fault, planned.fault_phase) == (
        "stopped", "coach", True, phase)
    recorder.close()
    db.close()
    assert recorder.kept_in == tmp_path / SIDE
    with HistoryDB.open_file(tmp_path / DB_NAME, recover=False) as held:
        [read] = held.sessions()
    assert (read.status, read.outcome, round(read.backward_s), read.fault_phase) == (
        "stopped", "device fault", walked, phase)
    other.execute("COMMIT")
    other.close()
    with HistoryDB.open(tmp_path) as merged:
        [read] = merged.sessions()
    assert not (tmp_path / SIDE).exists()
    assert (read.status, read.outcome, round(read.backward_s), read.fault_phase) == (
        "stopped", "device fault", walked, phase)
