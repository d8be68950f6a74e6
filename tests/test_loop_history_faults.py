"""A fault in the device loop's history work (writing the record of a session over, at its end
and at the heartbeats after) is not a fault of the workout: serve goes on, the record is kept in
memory and written once the write works, one log line (voicecoach/device/loop_sessions.py)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fault_helpers import no_traceback_above_debug, sessions, walk

from voicecoach.device import loop_sessions
from voicecoach.history.recorder import SessionRecorder
from voicecoach.lab.room import load_clip
from voicecoach.workout.machine import State

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

FAULT = "the end's update is broken"


def test_a_history_write_that_raises_then_works_loses_nothing_and_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = walk(tmp_path / "home", seconds=80.0)
    loop, sim, room = w.loop, w.sim, w.room

    # the user says "stop" 6 s into the warm-up: the session is over, and its record's end
    # (the one real method that writes it) raises three times, at the end and at the
    # heartbeats after, then works
    polite = room.react
    said: list[float] = []

    def react(t: float) -> None:
        assert polite is not None
        polite(t)
        coach = loop.coach
        if coach.state is State.WARMUP and coach.phase_elapsed >= 6.0 \
                and not w.speaker.is_speaking() and (not said or t - said[-1] > 5.0):
            said.append(t)
            stop = load_clip("stop", "stop")
            stop.at_s = t
            room.add(stop)
    room.react = react

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
    # one ERROR line for the three failures, naming the exception and where; no traceback
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [r.getMessage() for r in errors]
    assert errors[0].name == loop_sessions.__name__
    assert f"RuntimeError: {FAULT}" in line and "test_loop_history_faults.py" in line
    assert "tried again" in line
    assert any("written" in r.getMessage() and r.name == loop_sessions.__name__
               for r in caplog.records if r.levelno == logging.WARNING)
    no_traceback_above_debug(caplog, capsys.readouterr().err)
