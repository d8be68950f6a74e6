"""A fault inside the workout (a bug in the coach or a state-machine callback) ends that
session, not the device: the belt halted, the session stopped with the fault in its record, one
log line, one sentence said, and "start" heard again; faults that come back at once end serve
in one line (voicecoach/device/loop_faults.py)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fault_helpers import (
    fault_lines,
    no_traceback_above_debug,
    problems,
    sessions,
    walk,
)
from replay_helpers import PLAN

from voicecoach import cli
from voicecoach.audio.wav import write_wav
from voicecoach.device import loop_faults
from voicecoach.events import StateChanged
from voicecoach.history import HistoryDB, plan_next_session
from voicecoach.lab.room import load_clip
from voicecoach.phrases import load_phrases
from voicecoach.settings import CoachSettings
from voicecoach.treadmill.ftms import Op
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import State

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

WORDS = load_phrases("en")
FAULT = "the check-in table is broken"


def test_a_fault_mid_walk_halts_the_belt_ends_the_session_and_start_is_heard_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = walk(tmp_path / "home")
    settings, speaker, sim, events, loop = w.settings, w.speaker, w.sim, w.events, w.loop
    renderer, speeds, fault = w.renderer, w.speeds, w.fault

    # a bug in the coach's own code, 6 s into the warm-up with the belt running: one real
    # method of the coach raises (once), inside a tick of the state machine's model
    real = Coach._maybe_checkin

    def broken(self: Coach) -> None:
        if self.state is State.WARMUP and self.phase_elapsed >= 6.0 and not fault:
            fault.update(t=self.now, belt_kmh=sim.model.speed_kmh)
            raise RuntimeError(FAULT)
        real(self)
    monkeypatch.setattr(Coach, "_maybe_checkin", broken)

    with caplog.at_level(logging.INFO):
        loop.run()  # on the old code the RuntimeError came out of here
    speaker.close()
    renderer.close()

    assert fault and fault["belt_kmh"] > 0, "the fault must come with the belt running"
    changes = [(e.t, e.source, e.dest, e.trigger) for e in events
               if isinstance(e, StateChanged)]
    [back] = [t for t, *change in changes if change == ["warmup", "idle", "fault"]]
    again = [t for t, *change in changes if change == ["idle", "briefing", "start"] and t > back]
    # (1) the belt: a stop written at the fault's audio time, no speed written after it until
    # the user began again, and the belt halted in between
    stops = [t for t, c in sim.log.of(Op.STOP_PAUSE) if c.value == 1 and t >= fault["t"]]
    assert stops and stops[0] - fault["t"] <= 0.2
    assert again, "the next start was not heard"
    assert [t for t, _ in sim.log.of(Op.SET_TARGET_SPEED) if fault["t"] < t < again[0]] == []
    assert [t for t, _ in sim.log.of(Op.START_RESUME) if fault["t"] < t < again[0]] == []
    assert {kmh for t, kmh in speeds if again[0] - 1.0 <= t <= again[0]} == {0.0}
    # (2) the session ended as stopped, the fault in its record; the next one was begun
    home = settings.data_dir
    assert sessions(home) == [("serve", "stopped"), ("serve", "stopped")]
    [(sid, problem)] = problems(home)
    assert sid == 1 and problem["device"] == "coach"
    # the history reads the first as ended by the device, not the user (progression)
    with HistoryDB.open(home) as db:
        assert [(s.fault, s.outcome) for s in db.sessions()] == [
            ("coach", "device fault"), ("", "stopped")]
    assert f"RuntimeError: {FAULT}" in problem["problem"]
    assert loop.outcomes[0] == "fault" and loop.faults == [pytest.approx(fault["t"], abs=0.2)]
    # (3) one line in the log naming the fault and where it was raised, no traceback
    [line] = fault_lines(caplog)
    assert f"RuntimeError: {FAULT}" in line and "test_loop_faults.py" in line
    assert "listening for start again" in line
    no_traceback_above_debug(caplog, capsys.readouterr().err)
    # (4) said aloud, (5) back to idle (above), and the next "start" began a new session
    said = [iv.text for iv in speaker.speaking_intervals()]
    assert f"{WORDS.FAULT_HALTED} {WORDS.FAULT_START_AGAIN}" in said
    assert back == pytest.approx(fault["t"], abs=0.2)


def test_a_fault_in_the_cool_down_is_recorded_so_and_the_walk_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the cool-down of a programme session, in the real loop: its record holds
    the cool-down's start before the fault, so the history reads it as ended by the device
    after every backward block, and the next plan goes on from that walk (it was planned as
    if the session had not happened: the first session's dose again)."""
    w = walk(tmp_path / "home", seconds=170.0, plan=replace(PLAN, week=1))
    failed: list[float] = []
    real = Coach._maybe_checkin

    def broken(self: Coach) -> None:
        if self.state is State.COOLDOWN and self.phase_elapsed >= 5.0 and not failed:
            failed.append(self.now)  # (not w.fault: the user does not start again)
            raise RuntimeError(FAULT)
        real(self)
    monkeypatch.setattr(Coach, "_maybe_checkin", broken)
    w.loop.run()
    w.speaker.close()
    w.renderer.close()

    assert failed, "the cool-down was not reached"
    with HistoryDB.open(w.settings.data_dir) as db:
        [session] = db.sessions()
        tomorrow = session.started_at.date() + dt.timedelta(days=1)
        after = plan_next_session(db, CoachSettings(), tomorrow)
    assert (after.week, after.backward_s) == (1, 120.0)  # one minute more than that walk
    assert after.notes[0] == WORDS.PLAN_FAULT_COOLDOWN  # on the old code: PLAN_FAULT's
    assert after.notes[1].startswith("Last time you did 1 minute at ")
    assert (session.outcome, session.fault, session.fault_phase) == (
        "device fault", "coach", "cooldown")
    assert session.backward_s == pytest.approx(60.0, abs=0.5)


def _starts_wav(tmp_path: Path, at_s: list[float]) -> Path:
    clip = load_clip("start", "start")
    audio = np.zeros(int((at_s[-1] + 15.0) * 16000), dtype=np.float32)
    for t in at_s:
        i = int(t * 16000)
        audio[i:i + clip.audio.size] += clip.audio
    wav = tmp_path / "starts.wav"
    write_wav(wav, audio)
    return wav


@pytest.mark.parametrize(("window_s", "code", "gives_up"), [
    (loop_faults.FAULT_WINDOW_S, loop_faults.FAULTS_EXIT, True),  # three within 5 minutes
    (20.0, 0, False)])                                             # each alone: serve goes on
def test_repeated_faults_end_serve_in_one_line(
        window_s: float, code: int, gives_up: bool, tmp_path: Path, home: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(loop_faults, "FAULT_WINDOW_S", window_s)
    real = Coach.on_enter_BRIEFING

    def broken(self: Coach, event: Any) -> None:  # a state-machine callback that raises
        real(self, event)
        raise KeyError("briefing step")
    monkeypatch.setattr(Coach, "on_enter_BRIEFING", broken)
    wav = _starts_wav(tmp_path, [1.0, 31.0, 61.0])

    with caplog.at_level(logging.INFO):
        result = cli.main(["serve", "--engine", "pocketsphinx", "--audio-in", str(wav)])
    err = capsys.readouterr().err
    assert result == code  # on the old code the KeyError came out of cli.main
    assert sessions(home) == [("serve", "stopped")] * 3
    assert [sid for sid, _ in problems(home)] == [1, 2, 3]
    assert len(fault_lines(caplog)) == 3
    no_traceback_above_debug(caplog, err)
    errors = [line for line in err.splitlines() if line.startswith("voicecoach: error:")]
    if gives_up:
        [line] = errors
        assert "failed 3 times within 5 minutes" in line and "KeyError: 'briefing step'" in line
    else:
        assert errors == []


def test_ctrl_c_inside_a_callback_still_ends_serve(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self: Coach, event: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(Coach, "on_enter_BRIEFING", interrupted)
    wav = _starts_wav(tmp_path, [1.0, 31.0])
    assert cli.main(["serve", "--engine", "pocketsphinx", "--audio-in", str(wav)]) == 130
    assert "voicecoach: interrupted" in capsys.readouterr().err
    assert sessions(home) == [("serve", "stopped")]  # as before: the first start ends serve


def test_a_fault_in_the_only_session_of_a_replay_is_one_line(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = Coach.on_enter_BRIEFING

    def broken(self: Coach, event: Any) -> None:
        real(self, event)
        raise KeyError("briefing step")
    monkeypatch.setattr(Coach, "on_enter_BRIEFING", broken)
    wav = _starts_wav(tmp_path, [1.0])
    code = cli.main(["run", "--engine", "pocketsphinx", "--audio-in", str(wav)])
    err = capsys.readouterr().err
    assert code == loop_faults.FAULTS_EXIT and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("voicecoach: error:")]
    assert "the session stopped on a fault while starting a session: KeyError" in line
    assert sessions(home) == [("replay", "stopped")]
