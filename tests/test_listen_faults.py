"""A fault in the listening (the recogniser's ``accept``, its reset, its grammar's switch) ends
that session, not the device: the belt halted, the session stopped with the fault in its
record, one log line, and "start" heard again; a recogniser that keeps failing ends serve in
one line, exit 70 (voicecoach/device/loop_faults.py). ``voicecoach listen`` says one line too."""

from __future__ import annotations

import logging
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

from voicecoach import cli
from voicecoach.audio.wav import write_wav
from voicecoach.device import loop_faults
from voicecoach.device.audio_clock import AudioClock
from voicecoach.device.duplex import DuplexGate
from voicecoach.events import StateChanged
from voicecoach.history import HistoryDB
from voicecoach.lab.room import load_clip
from voicecoach.listening.sphinx_engine import SphinxRecogniser
from voicecoach.phrases import load_phrases
from voicecoach.treadmill.ftms import Op
from voicecoach.workout.machine import State

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

WORDS = load_phrases("en")
FAULT = "the front end's ring is broken"


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("voicecoach: error:")]


def test_a_recogniser_fault_mid_walk_halts_the_belt_ends_the_session_and_start_is_heard_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = walk(tmp_path / "home")
    settings, speaker, sim, events, loop = w.settings, w.speaker, w.sim, w.events, w.loop
    renderer, speeds, fault = w.renderer, w.speeds, w.fault

    # the recogniser fails once, 6 s into the warm-up with the belt running (a numpy error in
    # its front end, say): its one real method raises
    real = SphinxRecogniser.accept

    def broken(self: SphinxRecogniser, chunk: Any) -> Any:
        coach = loop.coach
        if coach.state is State.WARMUP and coach.phase_elapsed >= 6.0 and not fault:
            fault.update(t=chunk.end_s, belt_kmh=sim.model.speed_kmh)
            raise FloatingPointError(FAULT)
        return real(self, chunk)
    monkeypatch.setattr(SphinxRecogniser, "accept", broken)

    with caplog.at_level(logging.INFO):
        loop.run()  # on the old code the FloatingPointError came out of here
    speaker.close()
    renderer.close()

    assert fault and fault["belt_kmh"] > 0, "the fault must come with the belt running"
    changes = [(e.t, e.source, e.dest, e.trigger) for e in events
               if isinstance(e, StateChanged)]
    [back] = [t for t, *change in changes if change == ["warmup", "idle", "fault"]]
    again = [t for t, *change in changes if change == ["idle", "briefing", "start"] and t > back]
    # (1) the belt: a stop written at the fault (stamped with the coach's time, the chunk
    # before's end), no speed written after it until the user began again, and the belt
    # halted in between
    stops = [t for t, c in sim.log.of(Op.STOP_PAUSE) if c.value == 1 and t >= fault["t"] - 0.1]
    assert stops and stops[0] - fault["t"] <= 0.2
    assert again, "the next start was not heard: the recogniser must hear after its fault"
    assert [t for t, _ in sim.log.of(Op.SET_TARGET_SPEED) if fault["t"] < t < again[0]] == []
    assert [t for t, _ in sim.log.of(Op.START_RESUME) if fault["t"] < t < again[0]] == []
    assert {kmh for t, kmh in speeds if again[0] - 1.0 <= t <= again[0]} == {0.0}
    # (2) the session ended as stopped, the fault in its record; the next one was begun
    home = settings.data_dir
    assert sessions(home) == [("serve", "stopped"), ("serve", "stopped")]
    [(sid, problem)] = problems(home)
    assert sid == 1 and problem["device"] == "recogniser"
    # the history reads the first as ended by the device, not the user (progression)
    with HistoryDB.open(home) as db:
        assert [(s.fault, s.outcome) for s in db.sessions()] == [
            ("recogniser", "device fault"), ("", "stopped")]
    assert f"FloatingPointError: {FAULT}" in problem["problem"]
    assert "test_listen_faults.py" in problem["extra"]["at"]
    assert loop.outcomes[0] == "fault" and loop.listen_faults == [fault["t"]]
    assert loop.faults == [] and loop.input_losses == 0  # not the workout, not the microphone
    # (3) one line in the log naming the fault and where it was raised, no traceback
    [line] = fault_lines(caplog)
    assert line.startswith("listening fault in the recogniser: FloatingPointError: ")
    assert "test_listen_faults.py" in line and "the recogniser is reset" in line
    assert "listening for start again" in line
    no_traceback_above_debug(caplog, capsys.readouterr().err)
    # (4) said aloud, (5) back to idle at the fault
    said = [iv.text for iv in speaker.speaking_intervals()]
    assert f"{WORDS.FAULT_HALTED} {WORDS.FAULT_START_AGAIN}" in said
    assert back == pytest.approx(fault["t"], abs=0.2)


def _serve_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`serve` (pocketsphinx) over a file with "start" said at 1 s: its exit code and stderr."""
    code = cli.main(["serve", "--engine", "pocketsphinx", "--audio-in",
                     str(_start_wav(tmp_path))])
    return code, capsys.readouterr().err


def _start_wav(tmp_path: Path, at_s: float = 1.0, seconds: float = 20.0) -> Path:
    clip = load_clip("start", "start")
    audio = np.zeros(int(seconds * 16000), dtype=np.float32)
    i = int(at_s * 16000)
    audio[i:i + clip.audio.size] += clip.audio
    wav = tmp_path / "start.wav"
    write_wav(wav, audio)
    return wav


def _gave_up_in(device: str, code: int, err: str, home: Path,
                caplog: pytest.LogCaptureFixture) -> tuple[str, dict[str, Any], list[str]]:
    """`serve` gave up after three listening faults in ``device``: its exit code, one error
    line naming the device, session 1 recorded with that device's problem, three fault lines
    in the log, no traceback. Returns the error line, the problem and the fault lines."""
    assert code == loop_faults.FAULTS_EXIT
    [line] = _errors(err)
    assert f"listening failed 3 times within 5 minutes, the last in the {device}" in line
    [(sid, problem)] = problems(home)
    assert (sid, problem["device"]) == (1, device)
    lines = fault_lines(caplog)
    assert len(lines) == 3
    no_traceback_above_debug(caplog, err)
    return line, problem, lines


def test_a_recogniser_failing_on_every_chunk_ends_serve_in_one_line(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    real = SphinxRecogniser.accept

    def broken(self: SphinxRecogniser, chunk: Any) -> Any:  # from 8 s on: in the briefing
        if chunk.end_s > 8.0:
            raise FloatingPointError(FAULT)
        return real(self, chunk)
    monkeypatch.setattr(SphinxRecogniser, "accept", broken)

    with caplog.at_level(logging.INFO):
        code, err = _serve_start(tmp_path, capsys)
    # on the old code the error came out of cli.main
    line, _problem, lines = _gave_up_in("recogniser", code, err, home, caplog)
    assert f"FloatingPointError: {FAULT}" in line
    assert sessions(home) == [("serve", "stopped")]
    assert "3 faults within 5 minutes: giving up" in lines[-1]


def test_an_audio_clock_that_fails_is_a_listening_fault_and_ends_serve_in_one_line(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    real = AudioClock.note

    def broken(self: AudioClock, audio_s: float, captured: float | None = None) -> None:
        if audio_s > 8.0:  # from 8 s on (in the briefing), on every chunk: a bug in its sums
            raise ZeroDivisionError("float division by zero")
        real(self, audio_s, captured)
    monkeypatch.setattr(AudioClock, "note", broken)

    with caplog.at_level(logging.INFO):
        code, err = _serve_start(tmp_path, capsys)
    # on the old code the error came out of cli.main; the fault was recorded under the recogniser
    line, problem, lines = _gave_up_in("audio clock", code, err, home, caplog)
    assert "ZeroDivisionError: float division by zero" in line
    assert sessions(home) == [("serve", "stopped")]
    assert "ZeroDivisionError" in problem["problem"]
    with HistoryDB.open(home) as db:
        assert [(s.fault, s.outcome) for s in db.sessions()] == [("audio clock", "device fault")]
    assert lines[0].startswith("listening fault in the audio clock: ")


def test_a_duplex_gate_that_fails_is_recorded_under_the_duplex_gate(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """A fault in the duplex gate is a listening fault like the recogniser's, but the record
    names the part that failed: the session's DeviceProblem is the duplex gate's (it was the
    recogniser's, the text alone saying which), and history reads it as the device's fault."""
    real = DuplexGate.hear

    def broken(self: DuplexGate, audio: bytes, end_s: float) -> None:
        if end_s > 8.0:  # from 8 s on (in the briefing), on every chunk
            raise IndexError("mic ring out of range")
        real(self, audio, end_s)
    monkeypatch.setattr(DuplexGate, "hear", broken)

    with caplog.at_level(logging.INFO):
        code, err = _serve_start(tmp_path, capsys)
    _line, problem, lines = _gave_up_in("duplex gate", code, err, home, caplog)
    assert problem["problem"].startswith("internal fault in the duplex gate: IndexError")
    with HistoryDB.open(home) as db:
        assert [(s.fault, s.outcome) for s in db.sessions()] == [("duplex gate", "device fault")]
    assert lines[0].startswith("listening fault in the duplex gate: ")


def test_a_gate_decision_that_fails_is_recorded_under_the_duplex_gate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The gate's decision on a command heard (the user's "yes" in the briefing) failing is
    the duplex gate's fault in the record and the log, not the recogniser's."""
    w = walk(tmp_path / "home", seconds=60.0)
    real = DuplexGate.decide

    def broken(self: DuplexGate, det: Any) -> Any:
        if det.command == "yes" and not w.fault:
            w.fault.update(t=det.end_s)
            raise ValueError("no echo span")
        return real(self, det)
    monkeypatch.setattr(DuplexGate, "decide", broken)

    with caplog.at_level(logging.INFO):
        w.loop.run()
    w.speaker.close()
    w.renderer.close()
    assert w.fault, "the briefing's yes was not heard"
    home = w.settings.data_dir
    [(sid, problem)] = problems(home)
    assert (sid, problem["device"]) == (1, "duplex gate")
    [line] = fault_lines(caplog)
    assert line.startswith("listening fault in the duplex gate while hearing 'yes': ValueError")
    assert "the recogniser is reset" in line
    with HistoryDB.open(home) as db:
        assert [(s.fault, s.outcome) for s in db.sessions()][0] == ("duplex gate", "device fault")
    no_traceback_above_debug(caplog, capsys.readouterr().err)


def test_a_recogniser_that_cannot_be_reset_ends_serve_at_once_in_one_line(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    real_accept, real_reset = SphinxRecogniser.accept, SphinxRecogniser.reset
    failed: list[float] = []

    def broken(self: SphinxRecogniser, chunk: Any) -> Any:
        if chunk.end_s > 8.0 and not failed:
            failed.append(chunk.end_s)
            raise FloatingPointError(FAULT)
        return real_accept(self, chunk)

    def no_reset(self: SphinxRecogniser) -> None:
        if failed:
            raise RuntimeError("the decoder is gone")
        real_reset(self)
    monkeypatch.setattr(SphinxRecogniser, "accept", broken)
    monkeypatch.setattr(SphinxRecogniser, "reset", no_reset)

    with caplog.at_level(logging.INFO):
        code, err = _serve_start(tmp_path, capsys)
    assert code == loop_faults.FAULTS_EXIT
    [line] = _errors(err)
    assert "the recogniser could not be reset (RuntimeError: the decoder is gone" in line
    assert sessions(home) == [("serve", "stopped")]
    assert [p["device"] for _, p in problems(home)] == ["recogniser"]
    [logged] = fault_lines(caplog)  # the first fault is the last: a deaf device is no device
    assert logged.endswith("giving up")
    no_traceback_above_debug(caplog, err)


def test_a_grammar_switch_that_fails_once_is_a_listening_fault_and_the_grammar_is_set_again(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    real = SphinxRecogniser.set_commands
    asked: list[tuple[str, ...]] = []

    def broken(self: SphinxRecogniser, commands: Any) -> None:
        asked.append(tuple(commands))
        if "yes" in commands and len(asked) == 2:  # the briefing's grammar, the first time
            raise KeyError("yes")
        real(self, commands)
    monkeypatch.setattr(SphinxRecogniser, "set_commands", broken)

    with caplog.at_level(logging.INFO):
        code, err = _serve_start(tmp_path, capsys)
    assert code == 0 and _errors(err) == []
    assert sessions(home) == [("serve", "stopped")]
    [(_, problem)] = problems(home)
    assert problem["device"] == "recogniser" and "KeyError: 'yes'" in problem["problem"]
    [line] = fault_lines(caplog)
    assert line.startswith("listening fault while switching the grammar: KeyError: 'yes'")
    # after the fault the idle grammar is set again (not taken as already set)
    assert "start" in asked[2] and "yes" not in asked[2]
    no_traceback_above_debug(caplog, err)


def test_listen_says_one_line_when_the_recogniser_fails_on_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import FIXTURES

    wavs = []
    for name in ("a", "b", "c"):
        wav = tmp_path / f"{name}.wav"
        wav.write_bytes((FIXTURES / "commands/joe/normal/stop__stop.wav").read_bytes())
        wavs.append(str(wav))
    real = SphinxRecogniser.accept
    seen: list[float] = []

    def broken(self: SphinxRecogniser, chunk: Any) -> Any:
        seen.append(chunk.start_s)
        if seen.count(0.0) == 2 and chunk.start_s >= 0.3:  # the second file, 0.3 s in
            raise FloatingPointError(FAULT)
        return real(self, chunk)
    monkeypatch.setattr(SphinxRecogniser, "accept", broken)

    code = cli.main(["listen", "--engine", "pocketsphinx", *wavs])
    out, err = capsys.readouterr()
    assert code == 1  # on the old code the error came out of cli.main, after a.wav's line
    assert [line.split(":")[0] for line in out.splitlines()] == [wavs[0], wavs[2]]
    [line] = _errors(err)
    assert f"the recogniser failed on {wavs[1]}: FloatingPointError: {FAULT}" in line
    assert "test_listen_faults.py" in line
    assert err.splitlines()[-1] == "voicecoach: 1 of the 3 inputs could not be read or recognised"
    assert "Traceback" not in err


def test_listen_on_the_microphone_says_one_line_when_the_recogniser_fails(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from conftest import FIXTURES
    from fake_sounddevice import FakeSoundDevice, device

    from voicecoach.audio.wav import read_wav_16k

    audio = read_wav_16k(FIXTURES / "commands/joe/normal/stop__stop.wav")
    sd = FakeSoundDevice([device("USB Mic")], audio=audio, interrupt_after=True)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    def broken(self: SphinxRecogniser, chunk: Any) -> Any:
        raise FloatingPointError(FAULT)
    monkeypatch.setattr(SphinxRecogniser, "accept", broken)
    code = cli.main(["listen", "--engine", "pocketsphinx", "--device", "usb"])
    _, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    [line] = _errors(err)
    assert f"the recogniser failed on the microphone's audio: FloatingPointError: {FAULT}" in line
    assert sd.closed == 1
