"""A fault in the device loop's history work (writing the record of a session over, at its end
and at the heartbeats after) is not a fault of the workout: serve goes on, the record is kept in
memory and written once the write works, one log line (voicecoach/device/loop_sessions.py); nor
is one in the recorder's writes during the session or in its bookkeeping (an event's to_dict,
the tally; voicecoach/history/session_writer.py), and a record whose writes still fail at the
exit is kept beside the history (voicecoach/history/recorder.py)."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import no_traceback_above_debug, sessions, walk

from voicecoach.device import loop_sessions
from voicecoach.events import (
    BeltReported,
    DeviceProblem,
    Event,
    PainReported,
    PhaseStarted,
    SessionEnded,
    TargetChanged,
)
from voicecoach.history import HistoryDB
from voicecoach.history import recorder as recorder_module
from voicecoach.history.recorder import SessionRecorder
from voicecoach.history.session_writer import SessionWriter
from voicecoach.history.tally import Tally
from voicecoach.lab.room import load_clip
from voicecoach.treadmill.ftms import Op
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import State
from voicecoach.workout.plan import programme_week

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

FAULT = "the end's update is broken"


def says_stop_when(w: Any, when: Callable[[float], bool]) -> list[float]:
    """The walk's user also says "stop" at audio time ``t`` when ``when(t)``, the coach is
    not speaking and 5 s have passed since the last; returns when it was said."""
    polite = w.room.react
    said: list[float] = []

    def react(t: float) -> None:
        assert polite is not None
        polite(t)
        if when(t) and not w.speaker.is_speaking() and (not said or t - said[-1] > 5.0):
            said.append(t)
            stop = load_clip("stop", "stop")
            stop.at_s = t
            w.room.add(stop)
    w.room.react = react
    return said


def test_a_history_write_that_raises_then_works_loses_nothing_and_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = walk(tmp_path / "home", seconds=80.0)
    loop, sim, room = w.loop, w.sim, w.room

    # the user says "stop" 6 s into the warm-up: the session is over, and its record's end
    # (the one real method that writes it) raises three times, at the end and at the
    # heartbeats after, then works
    says_stop_when(w, lambda t: loop.coach.state is State.WARMUP
                      and loop.coach.phase_elapsed >= 6.0)

    real = SessionRecorder._write_end
    failed: list[float] = []
    written: list[tuple[float, SessionRecorder]] = []

    def broken(self: SessionRecorder, outcome: str) -> bool:
        if len(failed) < 3:
            failed.append(loop.clock.audio_s)
            raise RuntimeError(FAULT)
        done = real(self, outcome)
        written.append((loop.clock.audio_s, self))
        return done
    monkeypatch.setattr(SessionRecorder, "_write_end", broken)

    with caplog.at_level(logging.INFO):
        assert loop.run() == 1  # on the old code the session's record was dropped (a fault)
    w.speaker.close()
    w.renderer.close()

    assert len(failed) == 3, "the end must have been tried three times"
    # tried again at the loop's heartbeats (by the recorder, once a second of audio), not
    # each chunk, and written by them while serve went on: not by the close at the input's end
    assert failed[2] - failed[1] >= 0.9
    [(at, recorder)] = written
    assert at < room.total_s - 1.0 and loop._ending == []
    # the belt and the coach: no fault of the workout or the listening, back to idle
    assert loop.faults == [] and loop.listen_faults == [] and loop.outcomes == ["stopped"]
    assert loop.coach.state is State.IDLE and sim.model.speed_kmh < 0.01
    # nothing lost: the record is complete, every event the coach gave it in the history
    home = w.settings.data_dir
    assert sessions(home) == [("serve", "stopped")]
    assert recorder.closed and not recorder.incomplete
    with sqlite3.connect(home / "history.sqlite3") as db:
        [(count, ended_at)] = db.execute("SELECT (SELECT count(*) FROM events), ended_at "
                                         "FROM sessions")
        assert count == recorder.seq and ended_at
        assert db.execute("SELECT count(*) FROM events WHERE type = 'session_ended'"
                          ).fetchone() == (1,)
    # one ERROR line for the failures, naming the exception and where; no traceback
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [r.getMessage() for r in errors]
    assert errors[0].name == loop_sessions.__name__
    assert f"RuntimeError: {FAULT}" in line and "test_loop_history_faults.py" in line
    assert "tried again" in line
    assert any("written" in r.getMessage() and r.name == loop_sessions.__name__
               for r in caplog.records if r.levelno == logging.WARNING)
    no_traceback_above_debug(caplog, capsys.readouterr().err)


WRITE_FAULT = "the events' insert is broken"
FAULT_S = 2.5


def paced_recorders(monkeypatch: pytest.MonkeyPatch, loop: Any) -> list[SessionRecorder]:
    """The recorders the loop opens, their heartbeats paced by the audio (one each second of
    it), as on a device walking in real time (the simulated walk runs faster)."""
    recorders: list[SessionRecorder] = []
    opened = SessionRecorder.open.__func__

    def open_at_audio_pace(cls: type[SessionRecorder], *args: Any,
                           **kwargs: Any) -> SessionRecorder:
        recorders.append(opened(cls, *args, wall_clock=lambda: loop.clock.audio_s, **kwargs))
        return recorders[-1]
    monkeypatch.setattr(SessionRecorder, "open", classmethod(open_at_audio_pace))
    return recorders


def walked_on_and_kept(w: Any, first: float, said: list[float],
                       recorders: list[SessionRecorder],
                       caplog: pytest.LogCaptureFixture) -> list[str]:
    """The walk went on (no fault of the workout or the listening, the belt never halted
    from the first failure at ``first`` to the user's stop, the session ended as the user
    ended it) and nothing was lost or written twice (every event the recorder numbered is in
    the history once, no device problem recorded); returns the ERROR lines, each the
    history's."""
    loop = w.loop
    assert loop.faults == [] and loop.listen_faults == [] and loop.outcomes == ["stopped"]
    assert said, "the user's stop was not said"
    assert min(kmh for t, kmh in w.speeds if first <= t <= said[0]) > 0
    assert [t for t, c in w.sim.log.of(Op.STOP_PAUSE) if first <= t < said[0]] == []
    [recorder] = recorders
    home = w.settings.data_dir
    assert sessions(home) == [("serve", "stopped")]
    assert recorder.closed and not recorder.incomplete
    with sqlite3.connect(home / "history.sqlite3") as db:
        [(count, seqs)] = db.execute("SELECT count(*), count(DISTINCT seq) FROM events")
        assert count == seqs == recorder.seq
        assert db.execute("SELECT count(*) FROM events WHERE type = 'device_problem'"
                          ).fetchone() == (0,)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.name.startswith("voicecoach.history") for r in errors)
    return [r.getMessage() for r in errors]


def test_a_recorder_write_that_raises_mid_walk_leaves_the_walk_alone_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = walk(tmp_path / "home", seconds=90.0)
    loop, sim = w.loop, w.sim

    recorders = paced_recorders(monkeypatch, loop)

    # the one real method that commits an event raises for 2.5 s of audio once the belt runs
    # (from the coach's listener, and from the recorder's heartbeat, a tick hook), then works
    real = SessionWriter._write
    failed: list[float] = []
    written: list[float] = []

    def broken(self: SessionWriter, seq: int, event: Event, data: dict[str, Any]) -> None:
        if (failed and loop.clock.audio_s - failed[0] < FAULT_S) \
                or (not failed and sim.model.speed_kmh > 0):
            failed.append(loop.clock.audio_s)
            raise RuntimeError(WRITE_FAULT)
        real(self, seq, event, data)
        if failed:
            written.append(loop.clock.audio_s)
    monkeypatch.setattr(SessionWriter, "_write", broken)

    # the user says "stop" once the history has taken the events kept meanwhile
    said = says_stop_when(w, lambda t: bool(written) and t - written[0] >= 3.0
                          and loop.coach.state is not State.IDLE)

    with caplog.at_level(logging.INFO):
        assert loop.run() == 1
    w.speaker.close()
    w.renderer.close()

    assert len(failed) >= 3 and written, "the write must have failed, then worked"
    # the walk went on and nothing was lost (on the old code: halted, ended as 'fault'), one
    # ERROR line for the failures, naming the exception and where; no traceback
    [line] = walked_on_and_kept(w, failed[0], said, recorders, caplog)
    # after the first failure (an event's write), retried only at the recorder's heartbeats
    # (once a second of audio), not at each event
    assert all(b - a >= 0.9 for a, b in zip(failed[1:-1], failed[2:], strict=True))
    assert f"RuntimeError: {WRITE_FAULT}" in line and "test_loop_history_faults.py" in line
    assert any("written again" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    no_traceback_above_debug(caplog, capsys.readouterr().err)


TALLY_FAULT = "the tally's sums are broken"


def test_a_bug_in_the_recorders_tally_at_its_heartbeat_leaves_the_walk_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The recorder's bookkeeping (its tally of the session's figures) raises at its heartbeat,
    a tick hook of the coach, for 2.5 s of audio once the belt runs: before, a workout fault
    (the belt halted, the session ended as 'fault'). Now one ERROR line, the walk goes on and
    every event is recorded once."""
    w = walk(tmp_path / "home", seconds=90.0)
    loop, sim = w.loop, w.sim

    real = Tally.advance
    failed: list[tuple[float, str]] = []  # (audio time, the recorder's method it came from)

    def broken(self: Tally, t: float) -> None:
        now = loop.clock.audio_s
        if (failed and now - failed[0][0] < FAULT_S) or (not failed and sim.model.speed_kmh > 0):
            failed.append((now, sys._getframe(1).f_code.co_name))
            raise RuntimeError(TALLY_FAULT)
        real(self, t)
    monkeypatch.setattr(Tally, "advance", broken)

    # the user says "stop" 3 s after the tally works again
    said = says_stop_when(w, lambda t: bool(failed) and t - failed[0][0] >= FAULT_S + 3.0
                          and loop.coach.state is not State.IDLE)

    recorders = paced_recorders(monkeypatch, loop)

    with caplog.at_level(logging.INFO):
        assert loop.run() == 1
    w.speaker.close()
    w.renderer.close()

    assert "heartbeat" in {where for _t, where in failed}, "the heartbeat's tally must fail"
    # the walk went on and nothing was lost; one ERROR line for the bug, however often it
    # raised, naming it and where; no traceback
    [line] = walked_on_and_kept(w, failed[0][0], said, recorders, caplog)
    assert f"RuntimeError: {TALLY_FAULT}" in line and "test_loop_history_faults.py" in line
    assert "not a fault of the workout" in line
    no_traceback_above_debug(caplog, capsys.readouterr().err)


def test_an_event_the_recorders_bookkeeping_cannot_take_is_recorded_all_the_same(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Events a real coach gives the recorder that its bookkeeping cannot take: one whose
    ``to_dict`` raises (a field that cannot be copied), two whose figures the tally cannot read
    (each twice). Before, each was lost (the listener raised before keeping it) and the coach's
    guard said so once for all. Now every event is in the history, in order, and each distinct
    bug is one ERROR line naming it and where."""
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, programme_week(2), "run")
    coach = Coach(programme_week(2), listeners=[recorder.on_event])
    uncopyable = DeviceProblem(t=30.0, state="backward", device="treadmill",
                               problem="the link dropped", extra={"link": threading.Lock()})
    unreadable = BeltReported(t=40.0, state="backward", speed_mph="fast")  # type: ignore[arg-type]
    no_speed = TargetChanged(t=50.0, state="backward", speed_mph=None,  # type: ignore[arg-type]
                             incline_pct=0.0, why="faster")
    given = [PhaseStarted(t=0.0, state="backward", index=1, kind="backward", duration_s=300.0,
                          speed_mph=0.9, min_speed_mph=0.8, max_speed_mph=1.0, incline_pct=0.0),
             uncopyable, unreadable, no_speed, uncopyable, unreadable, no_speed,
             PainReported(t=120.0, state="backward", phrase="my knee hurts"),
             SessionEnded(t=300.0, state="done", outcome="finished", backward_s=300.0,
                          total_s=300.0, min_speed_mph=0.9, max_speed_mph=0.9, summary="")]
    with caplog.at_level(logging.INFO):
        for event in given:
            coach.emit(event)
        recorder.close()
    db.close()

    assert recorder.closed and not recorder.incomplete and recorder.seq == len(given)
    with HistoryDB.open(tmp_path) as db:
        [session] = db.sessions()
        assert (session.status, session.backward_s, session.pain_reports) == (
            "finished", 300.0, 1)
        recorded = db.events(session.id)
    assert [e["type"] for e in recorded] == [e.type.value for e in given]
    assert [e["t"] for e in recorded] == [e.t for e in given]
    kept = recorded[1]  # what could be read of the event whose to_dict raised
    assert (kept["device"], kept["problem"]) == ("treadmill", "the link dropped")
    # one ERROR line for each distinct bug, naming it and where; nothing from the coach's guard
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3 and all(r.name.startswith("voicecoach.history") for r in errors)
    lines = [r.getMessage() for r in errors]
    assert "TypeError" in lines[0] and "lock" in lines[0]
    assert "ValueError" in lines[1] and "tally.py" in lines[1]
    assert "TypeError" in lines[2] and "NoneType" in lines[2] and "tally.py" in lines[2]
    assert all("not a fault of the workout" in line for line in lines)
    no_traceback_above_debug(caplog, capsys.readouterr().err)


FLUSH_FAULT = "the kept events' write is broken"


def test_a_record_whose_writes_raise_until_the_exit_is_kept_beside_the_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """From the moment the belt runs until the input ends mid-walk, a bug in writing the
    session's events (the one real method that writes those kept in memory) raises for the
    history, not for a side file. Before, the session ended on a workout fault (the heartbeat
    raised it), and at the exit the rest of its record was 'lost'. Now the walk goes on, and at
    the exit the record goes into a side file, merged in full at the next opening."""
    monkeypatch.setattr(recorder_module, "CLOSE_RETRY_S", 0.02)  # the exit's pauses
    w = walk(tmp_path / "home", seconds=65.0)
    loop, sim = w.loop, w.sim
    home = w.settings.data_dir

    recorders = paced_recorders(monkeypatch, loop)

    real = SessionWriter._flush
    failed: list[float] = []

    def broken(self: SessionWriter) -> bool:
        if Path(self.db.path).name == "history.sqlite3" and (failed or sim.model.speed_kmh > 0):
            failed.append(loop.clock.audio_s)
            raise RuntimeError(FLUSH_FAULT)
        return real(self)
    monkeypatch.setattr(SessionWriter, "_flush", broken)

    with caplog.at_level(logging.INFO):
        loop.run()
    w.speaker.close()
    w.renderer.close()

    assert failed, "the write must have failed"
    assert loop.faults == [] and loop.listen_faults == []
    assert min(kmh for t, kmh in w.speeds if failed[0] <= t <= failed[-1]) > 0
    [recorder] = recorders
    side = home / "history.sqlite3.unwritten"
    assert recorder.closed and recorder.kept_in == side and side.is_file()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(loop_sessions.LOST in line for line in lines)
    [kept] = [line for line in lines if "could not be written" in line]
    assert str(side) in kept
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    [bug] = errors
    assert f"RuntimeError: {FLUSH_FAULT}" in bug and "test_loop_history_faults.py" in bug
    no_traceback_above_debug(caplog, capsys.readouterr().err)
    # the next opening merges it: every event the recorder numbered, once, and its end
    with HistoryDB.open(home) as db:
        [session] = db.sessions()
    assert not side.exists()
    assert session.status == "stopped" and session.total_s >= failed[-1] - failed[0]
    with sqlite3.connect(home / "history.sqlite3") as conn:
        seqs = [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, recorder.seq + 1))


SAY_FAULT = "the speaker's driver is gone"
HELD_S = 4.0


@pytest.mark.parametrize("broken", ["say", "opener"])
def test_telling_of_a_held_history_that_raises_does_not_end_the_walk(
        broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Another program holds the history for 4 s of audio once the belt runs, and telling the
    user so raises: the coach's ``say`` of HISTORY_FAILING (a speaker fault, a bug), or the
    recorder's own telling set where it was opened (a line on a stderr that is gone), which
    the loop calls first. Before, the first escaped from the recorder into the coach, at its
    heartbeat a workout fault (the belt halted, the session ended as 'fault'); the second
    kept the coach from saying it at all. Now each is one ERROR line, the coach still says
    it when it can, the walk goes on, every event is recorded once the lock is let go, and
    the user's later "stop" stops the belt."""
    w = walk(tmp_path / "home", seconds=90.0)
    loop, sim, room = w.loop, w.sim, w.room
    home = w.settings.data_dir
    recorders = paced_recorders(monkeypatch, loop)

    real_say = loop.coach.say
    tries: list[float] = []

    def say(text: str, *args: Any, **kwargs: Any) -> None:
        if text == loop.coach.words.HISTORY_FAILING:
            tries.append(loop.clock.audio_s)
            if broken == "say":
                raise RuntimeError(SAY_FAULT)
        real_say(text, *args, **kwargs)
    monkeypatch.setattr(loop.coach, "say", say)
    if broken == "opener":
        opened = SessionRecorder.open  # paced_recorders' own

        def tells_badly(exc: Exception) -> None:
            raise RuntimeError(SAY_FAULT)

        def open_telling_badly(cls: type[SessionRecorder], *args: Any,
                               **kwargs: Any) -> SessionRecorder:
            recorder = opened(*args, **kwargs)
            recorder.on_problem = tells_badly
            return recorder
        monkeypatch.setattr(SessionRecorder, "open", classmethod(open_telling_badly))

    others: list[sqlite3.Connection] = []  # another program's, once the history exists
    held: list[float] = []  # when it took the history's lock, and let it go

    def take(t: float) -> None:
        """Once the belt runs, the other program takes the lock just before a recorder's
        heartbeat that writes: the heartbeat (a tick hook) is the first to meet it."""
        [recorder] = recorders
        due = (t - recorder._beat_t >= recorder_module.HEARTBEAT_S
               and loop.clock.audio_s - recorder._beat_wall >= recorder_module.HEARTBEAT_S)
        if not held and sim.model.speed_kmh > 0 and due:
            others.append(sqlite3.connect(home / "history.sqlite3", isolation_level=None))
            others[0].execute("BEGIN IMMEDIATE")  # a backup, or an sqlite3 shell
            held.append(loop.clock.audio_s)

    polite = room.react

    def react(t: float) -> None:
        assert polite is not None
        polite(t)
        hooks = loop.coach.tick_hooks
        if recorders and take not in hooks:
            hooks.insert(hooks.index(recorders[0].heartbeat), take)
        if len(held) == 1 and t - held[0] >= HELD_S:
            others[0].execute("COMMIT")
            held.append(t)
    room.react = react
    # the user says "stop" 3 s after the other program let the history go
    said = says_stop_when(w, lambda t: len(held) == 2 and t - held[1] >= 3.0
                          and loop.coach.state is not State.IDLE)

    with caplog.at_level(logging.INFO):
        assert loop.run() == 1
    w.speaker.close()
    w.renderer.close()
    for other in others:
        other.close()

    assert len(held) == 2 and tries, "the lock must have been met, and told of aloud"
    assert tries == tries[:1], "telling that failed must not be tried again"
    [recorder] = recorders
    assert recorder.told
    # the walk went on and nothing was lost; the user's stop stopped the belt
    lines = walked_on_and_kept(w, held[0], said, recorders, caplog)
    assert [t for t, _c in sim.log.of(Op.STOP_PAUSE) if t >= said[0]]
    assert sim.model.speed_kmh < 0.01 and loop.coach.state is State.IDLE
    # one WARNING line for the lock (the history's own), one ERROR for the telling, naming the
    # exception and where; nothing from the coach's listener guard; no traceback
    [told] = [line for line in lines if "while telling" in line]
    assert f"RuntimeError: {SAY_FAULT}" in told and "test_loop_history_faults.py" in told
    assert lines == [told]  # the lock itself is a warning: it lets go by itself
    assert [r for r in caplog.records if r.levelno == logging.WARNING
            and "locked by another program" in r.getMessage()]
    no_traceback_above_debug(caplog, capsys.readouterr().err)
