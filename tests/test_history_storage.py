"""Storage faults during a session never lose what was walked (issue 18, 1 and 2): a write the
disk refuses is kept in memory and retried, the user is told once, the row is completed as
soon as the disk allows, and the exit code says when the record stayed incomplete."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from config_helpers import empty_config
from conftest import REPO
from history_helpers import HeldRoom
from workout_helpers import Run

from voicecoach.commands._common import INCOMPLETE_RECORD, check_recorded, tell_history_problem
from voicecoach.errors import VoicecoachError
from voicecoach.events import (
    CommandHeard,
    CommandRefused,
    CueSpoken,
    PainReported,
    PhaseStarted,
    StateChanged,
)
from voicecoach.grammar import load_grammar
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder, session_lock, session_writer
from voicecoach.history import recorder as recorder_module
from voicecoach.history.faults import HistoryUnavailable
from voicecoach.history.replaced import TABLES
from voicecoach.phrases import load_phrases
from voicecoach.workout.machine import State
from voicecoach.workout.plan import programme_week


@pytest.fixture(autouse=True)
def _short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_writer, "SESSION_BUSY_MS", 5)


def _session(tmp_path: Path) -> tuple[Run, HistoryDB, SessionRecorder]:
    plan = programme_week(1)
    db = HistoryDB.open(tmp_path)
    db.conn.execute("PRAGMA synchronous = OFF")  # no fsync per heartbeat: these test logic
    wall = itertools.count()
    recorder = SessionRecorder.open(db, plan, "run", wall_clock=lambda: float(next(wall)))
    recorder._sleep = lambda _s: None  # close()'s retries: no real waiting in tests
    run = Run(plan)
    run.coach.listeners.append(recorder.on_event)
    run.coach.tick_hooks.append(recorder.heartbeat)
    recorder.on_problem = tell_history_problem(run.coach)
    return run, db, recorder


def _fill_the_disk(db: HistoryDB) -> None:
    """SQLite's own 'database or disk is full' (SQLITE_FULL): no page may be added, and the
    free room in the last pages is taken, so no new row fits."""
    with db.lock:
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
        db.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        for size in (4096, 512, 64, 8, 1):
            while True:
                try:
                    db.conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc)
                    break


def _free_the_disk(db: HistoryDB) -> None:
    with db.lock:
        db.conn.execute("PRAGMA max_page_count = 1073741823")


def _refuse_writes(db: HistoryDB) -> None:
    """Every write fails (SQLite's query_only), whatever room the pages have left."""
    with db.lock:
        db.conn.execute("PRAGMA query_only = 1")


def _allow_writes(db: HistoryDB) -> None:
    with db.lock:
        db.conn.execute("PRAGMA query_only = 0")


def _spoken(run: Run) -> list[str]:
    return [e.text for e in run.of(CueSpoken)]


HISTORY_FAILING_SPEECH = load_phrases("en").HISTORY_FAILING


def test_language_has_no_command_phrase() -> None:
    for lang in ("en", "ko"):
        text = load_phrases(lang).HISTORY_FAILING
        assert load_grammar(lang).command_phrases_in(text) == []


def test_a_disk_that_fills_mid_session_loses_nothing_once_it_has_room(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, db, recorder = _session(tmp_path)
    run.through_briefing().at(run.t + 20)
    _fill_the_disk(db)
    run.into(State.BACKWARD).at(run.t + 200)  # cues, prompts, phases: none fits on the disk
    assert recorder.pending > 3 and recorder.problem is not None
    assert "full" in str(recorder.problem)
    assert _spoken(run).count(HISTORY_FAILING_SPEECH) == 1  # told once, in speech ...
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk is full" in err[0] and "kept in memory" in err[0]  # and here
    [row] = db.sessions()
    assert row.status == "running" and row.backward_s < 60  # the disk holds the old state
    _free_the_disk(db)
    run.at(run.t + 5)  # the next heartbeat writes what was kept
    assert recorder.pending == 0 and recorder.problem is None
    run.finish()
    recorder.close()
    assert not recorder.incomplete
    check_recorded(recorder)  # no error: the record is complete
    [row] = db.sessions()
    seqs = [r[0] for r in db.conn.execute("SELECT seq FROM events ORDER BY seq")]
    db.close()
    assert row.status == "finished" and row.backward_s == run.coach.backward_s == 300
    assert seqs == list(range(1, recorder.seq + 1))  # every event, in order, once


def test_a_disk_still_full_at_the_end_is_an_incomplete_record_with_its_own_exit_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, db, recorder = _session(tmp_path)
    run.through_briefing()
    _fill_the_disk(db)
    _refuse_writes(db)  # and whatever room the last pages had
    run.finish()
    recorder.close()
    assert recorder.incomplete and recorder.pending > 0
    with pytest.raises(VoicecoachError) as err:
        check_recorded(recorder)
    assert err.value.exit_code == INCOMPLETE_RECORD
    line = err.value.one_line()
    assert "incomplete" in line and "read-only" in line and "\n" not in line
    assert recorder.kept_in is not None and str(recorder.kept_in) in line
    db.close()
    # What the history refused is kept beside it (history/unwritten.py): the next opening
    # that can write adds the end to the row, with every event once.
    with HistoryDB.open(tmp_path) as again:
        assert [s.status for s in again.sessions()] == ["finished"]
        seqs = [r[0] for r in again.conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, recorder.seq + 1))
    assert not recorder.kept_in.exists()


def test_a_lock_mid_session_is_waited_out_without_freezing_the_coach(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """... and is a warning in the log, not an error: a lock lets go by itself and loses
    nothing (before, the device's log said ERROR for it, as for a full disk)."""
    run, db, recorder = _session(tmp_path)
    run.through_briefing()
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup, or an sqlite3 shell
    with caplog.at_level(logging.INFO, logger="voicecoach"):
        run.into(State.BACKWARD).at(run.t + 30)
    assert recorder.pending > 0 and "locked" in str(recorder.problem)
    [line] = [r for r in caplog.records if "cannot record" in r.getMessage()]
    assert line.levelno == logging.WARNING and "locked" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _spoken(run).count(HISTORY_FAILING_SPEECH) == 1
    other.execute("ROLLBACK")
    other.close()
    run.finish()
    recorder.close()
    [row] = db.sessions()
    db.close()
    assert not recorder.incomplete and row.status == "finished" and row.backward_s == 300


SAY_FAULT = "the speaker's driver is gone"


@pytest.mark.parametrize("met_by", ["the heartbeat", "an event"])
def test_telling_of_a_history_problem_that_raises_neither_ends_the_walk_nor_loses_events(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], met_by: str) -> None:
    """The coach's ``say`` raises while the recorder tells the user that the history is
    failing (another program holds it), whether a heartbeat (a tick hook) or an event's
    write met the lock first. Before, the exception escaped from the recorder into the
    coach: out of its tick (the device loop's workout fault) or its listener guard ("event
    listener ... failed", the recorder's later failures then unsaid). Now it is one ERROR
    line, the user is not told again and again, and every event is recorded once the lock
    is let go."""
    run, db, recorder = _session(tmp_path)
    real_say = run.coach.say
    tries: list[str] = []

    def say(text: str, *args: object, **kwargs: object) -> None:
        if text == HISTORY_FAILING_SPEECH:
            tries.append(text)
            raise RuntimeError(SAY_FAULT)
        real_say(text, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(run.coach, "say", say)
    run.into(State.BACKWARD).at(run.t + 10)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup, or an sqlite3 shell
    given = len(run.events)
    with caplog.at_level(logging.INFO):
        if met_by == "the heartbeat":
            run.at(run.t + 1)  # a tick the coach says nothing at: only the heartbeat writes
            assert len(run.events) == given
        else:
            run.say("faster")  # at the heartbeat's own time: only the event writes
        assert recorder.problem is not None and tries == [HISTORY_FAILING_SPEECH]
        run.at(run.t + 30)  # the walk goes on; its events are kept, the user not told again
        assert run.coach.state is State.BACKWARD and recorder.pending > 0
    assert tries == [HISTORY_FAILING_SPEECH] and recorder.told
    other.execute("ROLLBACK")
    other.close()
    run.finish()
    recorder.close()
    [row] = db.sessions()
    seqs = [r[0] for r in db.conn.execute("SELECT seq FROM events ORDER BY seq")]
    db.close()
    assert not recorder.incomplete and row.status == "finished" and row.backward_s == 300
    assert seqs == list(range(1, recorder.seq + 1))  # every event, in order, once
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any("listener" in r.getMessage() for r in errors)
    [told] = [r.getMessage() for r in errors if "while telling" in r.getMessage()]
    assert told.startswith("history: a fault while telling the user that session 1")
    assert f"RuntimeError: {SAY_FAULT}" in told and "test_history_storage.py" in told
    assert "not a fault of the workout" in told
    assert not any(r.exc_info and r.levelno > logging.DEBUG for r in caplog.records)
    assert "Traceback" not in capsys.readouterr().err


def test_close_retries_until_the_disk_allows(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run, db, recorder = _session(tmp_path)
    run.through_briefing()
    _refuse_writes(db)
    run.say("stop")
    tries: list[float] = []

    def wait(seconds: float) -> None:  # room is made while close() waits for its second try
        tries.append(seconds)
        _allow_writes(db)

    recorder._sleep = wait
    recorder.close()
    assert tries == [recorder_module.CLOSE_RETRY_S]
    [row] = db.sessions()
    db.close()
    assert not recorder.incomplete and row.status == "stopped"


def test_run_exits_with_the_incomplete_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: typed `run --week 1` with the disk full after the first writes."""
    from voicecoach import cli

    real_open = SessionRecorder.open

    def open_then_fill(db: HistoryDB, *args: object, **kwargs: object) -> SessionRecorder:
        rec = real_open(db, *args, **kwargs)  # type: ignore[arg-type]
        rec._sleep = lambda _s: None
        _refuse_writes(db)
        return rec

    monkeypatch.setattr(SessionRecorder, "open", staticmethod(open_then_fill))
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\nyes\nyes\nstop\n"))
    code = cli.main(["--data-dir", str(tmp_path), "run", "--week", "1", "--speed-up", "1000"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == INCOMPLETE_RECORD, err
    assert HISTORY_FAILING_SPEECH in out
    assert len(lines) == 2 and "kept in memory" in lines[0] and "incomplete" in lines[1]
    assert "Traceback" not in err


# ---------------------------------------------------------------- locks and the device
@pytest.fixture()
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sqlite3.Connection]:
    """A healthy history that another program holds (`begin exclusive` in an sqlite3
    shell); every wait for it is short here."""
    from voicecoach.history import db as db_module

    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    HistoryDB.open(tmp_path).close()
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_serve_start_says_a_lock_at_once_and_retries_only_a_fault_that_clears(
        tmp_path: Path, locked: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program's lock is not waited for at start-up (before, 3 tries 5 s apart, each
    waiting 10 s: about 40 s before serve listened): the device listens at once and tidies
    later (tests/test_history_locked.py). A full disk is still tried again, bounded."""
    from voicecoach.commands.serve import START_TRIES, check_history_at_start
    from voicecoach.history.faults import HistoryLocked

    waits: list[float] = []
    assert isinstance(check_history_at_start(tmp_path, waits.append), HistoryLocked)
    assert waits == []  # said at once
    locked.execute("ROLLBACK")
    assert check_history_at_start(tmp_path, waits.append) is None

    def full(_db: HistoryDB) -> None:
        raise HistoryUnavailable(f"cannot write history database {tmp_path}: the disk is full",
                                 "free some space")

    monkeypatch.setattr(HistoryDB, "tidy", full)
    assert isinstance(check_history_at_start(tmp_path, waits.append), HistoryUnavailable)
    assert len(waits) == START_TRIES - 1  # bounded


def test_serve_with_a_locked_history_keeps_listening(tmp_path: Path, locked: sqlite3.Connection,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach import cli
    from voicecoach.audio.wav import write_wav
    from voicecoach.commands import serve

    monkeypatch.setattr(serve, "START_RETRY_S", 0.0)
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.zeros(16000 * 2, dtype=np.float32))
    code = cli.main(["--data-dir", str(tmp_path), "serve", "--engine", "pocketsphinx",
                     "--audio-in", str(wav)])
    err = capsys.readouterr().err
    assert code == 0 and code != serve.NEEDS_A_PERSON, err  # not an exit systemd won't restart
    [line] = [x for x in err.splitlines() if x.startswith("voicecoach:") and "locked" in x]
    assert "Listening anyway" in line and "Traceback" not in err


def test_start_with_the_history_locked_starts_at_once_and_is_written_once_let_go(
        tmp_path: Path) -> None:
    """Another program holds the history's write lock (BEGIN IMMEDIATE, as an export or an
    sqlite3 shell) when "start" is heard, with a session cut off earlier still to recover:
    the session starts at once and the loop goes on hearing; nothing is written while the
    lock is held and the retries do not wait for it; once it is let go, the whole session
    is in the history. Measured in audio time and order: the lock is let go at 10 s of
    audio, "stop" is said at 12 s."""
    rig = HeldRoom(tmp_path, [("start", 1.0), ("stop", 12.0)], 16.0)
    other, recorders, events = rig.other, rig.recorders, rig.events
    other.execute("INSERT INTO sessions (started_at, plan, week, source, status, pid, host,"
                  " proc_token) VALUES ('2026-01-05T08:00:00+00:00', 'week 1', 1, 'serve',"
                  " 'running', ?, ?, 'a process gone')", (os.getpid(), socket.gethostname()))
    other.execute("BEGIN IMMEDIATE")
    start = rig.clips[0]
    at_release: dict[str, float] = {}

    def let_go(t: float) -> None:
        if t >= 10.0 and other.in_transaction:
            at_release.update(t=t, rows=other.execute("SELECT COUNT(*) FROM sessions"
                                                      " WHERE id > 1").fetchone()[0],
                              wait_ms=recorders[0].db.conn.execute(
                                  "PRAGMA busy_timeout").fetchone()[0])
            other.execute("COMMIT")

    rig.run(let_go)

    began = [e.t for e in events if isinstance(e, StateChanged) and e.trigger == "start"]
    assert began and began[0] < start.end_s + 1.0 < at_release["t"]  # started while locked
    # the loop heard on to 10 s of audio with the lock still held (let_go ran), and said so
    assert at_release and [e.text for e in events if isinstance(e, CueSpoken)].count(
        HISTORY_FAILING_SPEECH) == 1
    assert at_release["rows"] == 0  # nothing could be written meanwhile: it really was held
    assert at_release["wait_ms"] == 0  # ... and the retries did not wait for it
    assert any(e.command == "stop" and e.t > at_release["t"] for e in events
               if isinstance(e, CommandHeard))  # the session ended by voice, once let go
    recorder = recorders[0]
    assert not recorder.incomplete and recorder.session_id > 1
    with HistoryDB.open(tmp_path) as db:  # recovers the session cut off earlier too
        assert [(s.source, s.status) for s in db.sessions()] == [("serve", "interrupted"),
                                                                 ("serve", "stopped")]
        seqs = [r[0] for r in db.conn.execute("SELECT seq FROM events WHERE session_id = ?"
                                              " ORDER BY seq", (recorder.session_id,))]
    assert seqs == list(range(1, recorder.seq + 1))  # every event, the locked ones too


def test_a_session_ending_with_the_history_locked_does_not_hold_the_loop_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program takes the history's write lock (BEGIN IMMEDIATE) during a session and
    holds it across its end: the end's writes (the "stop", how it ended) are left to the
    loop's heartbeats, which do not wait, and the loop hears on: a "start" 4 s later begins the
    next session at once. Before, the loop's thread stood in the close's retries (4 tries of
    up to 10 s each plus pauses, about 43 s), while the microphone's queue keeps 2 s of audio:
    that "start", or a "stop" for a belt, was lost. Once the lock is let go, the next heartbeat
    writes the first session whole, while the loop runs, and the second is written too.
    Measured in audio time and order: the lock is taken at 3 s, "stop" said at 5 s, "start" at
    9 s, the lock let go at 14 s, "stop" at 18 s."""
    # the close's waits short, so that the old code's giving up is reached quickly
    monkeypatch.setattr(recorder_module, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(recorder_module, "CLOSE_RETRY_S", 0.01)
    rig = HeldRoom(tmp_path, [("start", 1.0), ("stop", 5.0), ("start", 9.0), ("stop", 18.0)],
                    22.0)
    other, recorders, events, clips = rig.other, rig.recorders, rig.events, rig.clips
    seen: dict[str, dict[str, object]] = {}

    def first_record(t: float) -> dict[str, object]:
        """Where the first session's record stands at audio time ``t``."""
        first = recorders[0]
        return {"t": t, "closed": first.closed, "pending": first.pending,
                "outcome": first.outcome, "sessions": len(recorders),
                "wait_ms": None if first.closed else first.db.conn.execute(
                    "PRAGMA busy_timeout").fetchone()[0]}

    def lock_around_the_end(t: float) -> None:
        if t >= 3.0 and "taken" not in seen:
            other.execute("BEGIN IMMEDIATE")
            seen["taken"] = {"t": t}
        elif t >= 14.0 and other.in_transaction:
            seen["let_go"] = {**first_record(t), "rows": other.execute(
                "SELECT COUNT(*) FROM sessions WHERE status = 'running'").fetchone()[0]}
            other.execute("COMMIT")
        elif t >= 16.0 and "after" not in seen:
            seen["after"] = first_record(t)

    rig.run(lock_around_the_end)

    starts = [e.t for e in events if isinstance(e, StateChanged) and e.trigger == "start"]
    ends = [e.t for e in events if isinstance(e, StateChanged) and e.dest == "stopped"]
    assert len(starts) == 2 and len(ends) == 2, (starts, ends)
    # the first session ended with the lock held ...
    assert seen["taken"]["t"] < ends[0] < clips[2].at_s  # type: ignore[operator]
    # ... and the loop heard the next "start" at once, its end still unwritten
    assert starts[1] < clips[2].end_s + 1.0
    let_go = seen["let_go"]
    assert let_go["sessions"] == 2 and not let_go["closed"]
    assert let_go["pending"] or not let_go["outcome"]  # neither given up nor written
    assert let_go["rows"] == 1  # the history still had the first session running: it was held
    assert let_go["wait_ms"] == 0  # the retries did not wait for it
    # the loop went on hearing 14 - 5.5 s of audio with the first session's end unwritten
    assert float(let_go["t"]) - ends[0] > 8.0  # type: ignore[arg-type]
    # once let go, a heartbeat wrote it, with the loop running (not left to the exit)
    after = seen["after"]
    assert after["closed"] and after["pending"] == 0 and after["outcome"] == "stopped"
    assert any(e.command == "stop" and e.t > float(let_go["t"])  # type: ignore[arg-type]
               for e in events if isinstance(e, CommandHeard))
    assert len(recorders) == 2 and not any(r.incomplete for r in recorders)
    with HistoryDB.open(tmp_path) as db:
        assert db.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert [(s.id, s.status) for s in db.sessions()] == [
            (r.session_id, "stopped") for r in recorders]
        for recorder in recorders:
            seqs = [r[0] for r in db.conn.execute(
                "SELECT seq FROM events WHERE session_id = ? ORDER BY seq",
                (recorder.session_id,))]
            assert seqs == list(range(1, recorder.seq + 1))  # every event, the locked ones too


def test_a_session_end_still_unwritten_when_the_loop_ends_is_written_by_its_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history is still held when the input ends (serve's exit, a replay's end): the exit
    path writes the session's end, waiting for the lock as any close does (here it is let go
    during the close's first pause), so nothing of it is lost."""
    monkeypatch.setattr(recorder_module, "BUSY_TIMEOUT_MS", 100)
    rig = HeldRoom(tmp_path, [("start", 1.0), ("stop", 5.0)], 9.0)
    other, recorders, events = rig.other, rig.recorders, rig.events
    pauses: list[float] = []

    def let_go(seconds: float) -> None:  # the close's pause: the other program lets go
        pauses.append(seconds)
        if other.in_transaction:
            other.execute("COMMIT")

    def lock(t: float) -> None:
        if t >= 3.0 and not pauses and not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")
            recorders[0]._sleep = let_go

    rig.run(lock)
    assert [e.dest for e in events if isinstance(e, StateChanged)].count("stopped") == 1
    assert pauses == [recorder_module.CLOSE_RETRY_S]  # written at the close's second try
    [recorder] = recorders
    assert recorder.closed and not recorder.incomplete
    with HistoryDB.open(tmp_path) as db:
        assert [s.status for s in db.sessions()] == ["stopped"]
        seqs = [r[0] for r in db.conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, recorder.seq + 1))


def test_doctor_does_not_call_a_locked_history_ok(tmp_path: Path,
                                                  locked: sqlite3.Connection) -> None:
    from voicecoach.doctor import FAIL, check_history

    [check] = check_history(tmp_path)
    assert check.status == FAIL and check.detail.startswith("locked:"), check
    locked.execute("ROLLBACK")
    [check] = check_history(tmp_path)
    assert check.detail.startswith("ok:"), check


def test_the_unit_restarts_whatever_a_restart_can_fix() -> None:
    from voicecoach.commands.serve import NEEDS_A_PERSON, unit_text
    from voicecoach.settings import Settings

    unit = unit_text(Settings(data_dir=Path("/tmp/vc")))
    assert "Restart=on-failure" in unit and "StartLimitIntervalSec=0" in unit
    assert "StartLimitBurst" not in unit  # never gives up on a late speakerphone
    assert f"RestartPreventExitStatus={NEEDS_A_PERSON}" in unit
    assert INCOMPLETE_RECORD != NEEDS_A_PERSON


def test_a_second_session_on_one_data_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECOACH_")}
    env.update(VOICECOACH_HOME=str(home), VOICECOACH_CONFIG=empty_config(tmp_path))
    first = subprocess.Popen([sys.executable, "-m", "voicecoach", "run", "--week", "1"],
                             cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdin is not None
    for line in first.stdout:  # the session has begun
        if "briefing" in line:
            break
    second = subprocess.run([sys.executable, "-m", "voicecoach", "run", "--week", "1"],
                            cwd=REPO, env=env, input="stop\n", capture_output=True, text=True,
                            timeout=120)
    first.stdin.write("stop\n")
    first.stdin.flush()
    _out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode != 0
    [line] = second.stderr.strip().splitlines()
    assert line == (f"voicecoach: error: another voicecoach (run, pid {first.pid}) is using the "
                    f"workout history in {home}; let its session end first (say or type stop) "
                    "or give another --data-dir.")
    with HistoryDB.open(home) as db:
        assert [s.status for s in db.sessions()] == ["stopped"]  # the second left no row


def _taken_by_another_process(data: Path) -> bool:
    """Whether another process finds the data folder's session lock taken."""
    probe = ("import fcntl, sys\n"
             "with open(sys.argv[1], 'a+') as f:\n"
             "    try:\n"
             "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "    except OSError:\n"
             "        print('taken')\n")
    out = subprocess.run([sys.executable, "-c", probe, str(data / session_lock.SESSION_LOCK)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return out.strip() == "taken"


def test_a_record_still_being_written_keeps_the_session_lock_and_lets_the_next_one_in(
        tmp_path: Path) -> None:
    """A session's record still being written after its end (the history held by another
    program) keeps the data folder's session lock, so other processes are still refused; the
    next session of the same process (the device loop's next "start") is not, and the lock
    is let go only when both are done."""
    ended = session_lock.one_session_at_a_time(tmp_path)
    ended.__enter__()
    with session_lock.one_session_at_a_time(tmp_path):  # the next session: not refused
        assert _taken_by_another_process(tmp_path)
        ended.__exit__(None, None, None)  # the first record written at last
        assert _taken_by_another_process(tmp_path)  # the second session still holds it
    assert not _taken_by_another_process(tmp_path)


def test_a_data_folder_removed_mid_session_is_written_again_with_the_session(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``rm -r`` of the data folder (or of the history) while a session runs: SQLite goes on
    writing into the deleted file without a word, and the session, with every earlier one,
    was lost when it closed. The open copy is written back at its path before the next write."""
    data = tmp_path / "data"
    data.mkdir()
    run, db, recorder = _session(data)
    run.through_briefing().at(run.t + 20)
    for name in os.listdir(data):
        os.remove(data / name)
    data.rmdir()
    run.into(State.BACKWARD).at(run.t + 30)
    run.finish()
    recorder.close()
    db.close()
    assert not recorder.incomplete
    with HistoryDB.open(data) as again:
        [row] = again.sessions()
        seqs = [r[0] for r in again.conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert row.status == "finished" and row.backward_s == run.coach.backward_s == 300
    assert seqs == list(range(1, recorder.seq + 1))  # the events before the removal too
    assert "removed" in caplog.text


def _rows(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table that holds a session, in the order they were added."""
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in TABLES}


@pytest.mark.parametrize("removed", [(DB_NAME,), (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")],
                         ids=["main-file-only", "all-three"])
def test_a_history_removed_mid_session_is_written_back_whole_and_alone(
        tmp_path: Path, removed: tuple[str, ...]) -> None:
    """``rm history.sqlite3`` while a session runs leaves its -wal and -shm at the path, held
    by the open connection, and the file written back is opened with them there. It must come
    back whole (integrity_check), the earlier session as it was, this one in full, and no row
    that was never written. (It is read through the old log: that is harmless only while the
    copy is the log's own database page for page, as SQLite's backup makes it.)"""
    data = tmp_path / "data"
    data.mkdir()
    run, db, recorder = _session(data)
    run.finish()  # an earlier session, whose pages the log must not be laid over wrongly
    recorder.close()
    db.close()
    with HistoryDB.open(data) as again:  # as any opening reads it (dated again, see dating)
        earlier = _rows(again.conn)
    run, db, recorder = _session(data)
    run.through_briefing().at(run.t + 20)
    assert (data / (DB_NAME + "-wal")).stat().st_size > 0  # the log holds the latest writes
    for name in removed:
        os.remove(data / name)
    run.into(State.BACKWARD).at(run.t + 30)
    run.finish()
    recorder.close()
    db.close()
    assert not recorder.incomplete
    with HistoryDB.open(data) as again:
        assert again.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        first, walked = again.sessions()
        events = again.events(walked.id)
        rows = _rows(again.conn)
    assert first.status == "finished" and walked.id == recorder.session_id
    assert walked.status == "finished" and walked.backward_s == run.coach.backward_s == 300
    assert events == [json.loads(json.dumps(e.to_dict(), default=str)) for e in run.events]
    ours = {table: [r for r in found if r[0 if table == "sessions" else 1] == walked.id]
            for table, found in rows.items()}
    # the earlier session as it was, this one after it, and nothing else
    assert rows == {table: earlier[table] + ours[table] for table in rows}
    assert len(ours["events"]) == len(run.events)
    assert len(ours["phases"]) == len(run.of(PhaseStarted))
    assert len(ours["pain_reports"]) == len(run.of(PainReported))
    assert len(ours["commands"]) == len(run.of(CommandHeard)) + len(run.of(CommandRefused))


#: Run in another process: who holds the WAL index of the history ``argv[1]`` in use (the
#: byte SQLite's unix VFS read-locks in ``-shm`` for as long as a connection has it open, and
#: write-locks to tell the first opener, which rebuilds the index), then how many events of
#: session ``argv[2]`` that process reads through it.
_SECOND_PROCESS = """
import fcntl, os, sqlite3, struct, sys
SHM_DMS = 128  # UNIX_SHM_DMS: (22 + SQLITE_SHM_NLOCK) * 4 + SQLITE_SHM_NLOCK
fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS, 1, 0)
kind, _whence, _start, _len, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK,
                                                                        probe))
os.close(fd)
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
count = conn.execute("SELECT COUNT(*) FROM events WHERE session_id = ?",
                     (int(sys.argv[2]),)).fetchone()[0]
conn.close()
print(kind == fcntl.F_RDLCK, pid, count)
"""


def _seen_from_another_process(path: Path, session_id: int) -> tuple[bool, int, int]:
    """(the WAL index is held in use, by which process, events of the session it reads)."""
    out = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(path), str(session_id)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    held, pid, count = out.split()
    return held == "True", int(pid), int(count)


def _finish_and_find_whole(run: Run, db: HistoryDB, recorder: SessionRecorder,
                           data: Path) -> None:
    """Walk to the end and close; the history opened again is sound and holds this session
    alone, finished, with every event the coach emitted."""
    run.finish()
    recorder.close()
    db.close()
    assert not recorder.incomplete
    with HistoryDB.open(data) as again:
        assert again.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        [walked] = again.sessions()
        events = again.events(walked.id)
    assert walked.status == "finished" and walked.backward_s == 300
    assert events == [json.loads(json.dumps(e.to_dict(), default=str)) for e in run.events]


@pytest.mark.parametrize("removed", [(DB_NAME,), (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")],
                         ids=["main-file-only", "all-three"])
def test_a_history_written_back_keeps_its_log_index_held_for_other_processes(
        tmp_path: Path, removed: tuple[str, ...]) -> None:
    """Once a removed history is written back, the session's connection holds the WAL index
    in use (the lock a second process looks at before taking itself for the first opener and
    rebuilding the index under a live writer). Closing the old connection after the new one
    was open on the same ``-shm`` dropped (POSIX) every lock of this process on it: a second
    process found nobody holding it. Checked from a second process right after the put-back,
    which then reads the history; the session goes on to its end and comes back whole."""
    data = tmp_path / "data"
    data.mkdir()
    run, db, recorder = _session(data)
    run.through_briefing().at(run.t + 20)
    for name in removed:
        os.remove(data / name)
    run.into(State.BACKWARD)  # writes: the history is written back before the first
    assert (data / DB_NAME).is_file() and recorder.pending == 0
    written = len(run.events)
    held, pid, count = _seen_from_another_process(data / DB_NAME, recorder.session_id)
    assert held and pid == os.getpid()
    assert count == written  # the second process read through it all that was written
    run.at(run.t + 30)
    _finish_and_find_whole(run, db, recorder, data)


def test_a_history_written_back_that_cannot_be_opened_keeps_the_session_until_it_can(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The copy of a removed history is put at its path once the old connection is closed,
    and it may then fail to open (here its log's name is taken by a folder): the session is
    kept in memory and the user told once, in one line, as for any history that cannot be
    written; once it opens, everything kept is written and nothing is lost."""
    data = tmp_path / "data"
    data.mkdir()
    run, db, recorder = _session(data)
    run.through_briefing().at(run.t + 20)
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        os.remove(data / name)
    log = data / (DB_NAME + "-wal")
    log.mkdir()
    run.into(State.BACKWARD).at(run.t + 30)
    assert recorder.pending > 3 and "cannot be opened" in str(recorder.problem)
    assert (data / DB_NAME).is_file()  # written back: what was walked before is on the disk
    assert _spoken(run).count(HISTORY_FAILING_SPEECH) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be opened" in err[0] and "kept in memory" in err[0]
    log.rmdir()
    run.at(run.t + 5)  # the next heartbeat opens it and writes what was kept
    assert recorder.pending == 0 and recorder.problem is None
    _finish_and_find_whole(run, db, recorder, data)
