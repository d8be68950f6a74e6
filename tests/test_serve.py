"""The device loop and `voicecoach serve`/`start`: faults, SIGTERM, idle -> session -> idle."""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from fake_sounddevice import FakeSoundDevice, device
from replay_helpers import PLAN, user_track

from voicecoach import cli
from voicecoach.audio.chunk import AudioChunk
from voicecoach.audio.wav import write_wav
from voicecoach.commands._common import recorded_session
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.events import CueSpoken, Event, StateChanged
from voicecoach.grammar import load_grammar
from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, PoliteUser, load_clip
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.workout import cues

TREADMILL = 10 ** (-40 / 20)  # belt noise 20 dB under the speech (-20 dBFS)
PLAN_TOML = """
[[phase]]
kind = "warmup"
seconds = 30
speed = 1.5
[[phase]]
kind = "backward"
seconds = 60
speed = 0.6
[[phase]]
kind = "cooldown"
seconds = 30
speed = 1.5
"""


@pytest.fixture(scope="module")
def recogniser() -> Any:
    from voicecoach.listening.engines import make_recogniser

    return make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))


def _statuses(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "history.sqlite3") as conn:
        return list(conn.execute("SELECT source, status FROM sessions ORDER BY id"))


class RaisingMic:
    """A fake microphone: the room's audio until ``unplug_when()``, then it raises."""

    def __init__(self, room: ClosedLoopSource, unplug_when: Any) -> None:
        self.room = room
        self.unplug_when = unplug_when

    def chunks(self) -> Iterator[AudioChunk]:
        for chunk in self.room.chunks():
            if self.unplug_when():
                raise OSError("[Errno 19] No such device (the USB microphone was unplugged)")
            yield chunk

    def close(self) -> None:
        self.room.close()


def test_microphone_lost_mid_session_pauses_says_so_and_resumes(
        recogniser: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    clock = AudioClock()
    speaker = EchoWavSpeaker(EspeakNgRenderer(), clock=clock)
    events: list[Event] = []
    # the room hears the coach and the belt (the loop's own duplex gate and echo canceller
    # deal with the echo)
    room = ClosedLoopSource(speaker, 200.0, noise_rms=TREADMILL)
    attempts: list[str] = []
    loop_box: list[DeviceLoop] = []

    def walking_for(seconds: float) -> bool:
        coach = loop_box[0].coach
        return coach.state.value == "warmup" and coach.phase_elapsed >= seconds

    def open_source() -> Any:
        attempts.append("open")
        if len(attempts) == 1:
            return RaisingMic(room, lambda: walking_for(5.0))
        if len(attempts) == 2:
            raise OSError("no such device")  # still unplugged at the first retry
        if len(attempts) == 3:
            back = ClosedLoopSource(speaker, 12.0, origin_s=clock.audio_s, noise_rms=TREADMILL)
            clip = load_clip("resume", "resume")
            clip.at_s = clock.audio_s + 6.0  # after "I can hear you again" has been said
            back.add(clip)
            return back
        return None

    loop = DeviceLoop(settings, load_grammar("en"), recogniser, speaker, open_source,
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      listeners=[events.append], clock=clock, sleep=lambda s: None)
    loop_box.append(loop)
    room.react = PoliteUser(loop.coach, speaker, room)
    recogniser.reset()
    loop.run()

    said = [e.text for e in events if isinstance(e, CueSpoken)]
    changes = [(e.source, e.dest, e.trigger) for e in events if isinstance(e, StateChanged)]
    assert cues.LOST_INPUT in said and cues.INPUT_BACK in said
    assert said.index(cues.LOST_INPUT) < said.index(cues.INPUT_BACK)
    assert ("warmup", "paused", "lost_input") in changes
    assert ("paused", "warmup", "resume") in changes  # listening again after the retry
    assert loop.input_losses == 1 and len(attempts) >= 4
    spoken = [iv.text for iv in speaker.speaking_intervals()]
    assert cues.LOST_INPUT in spoken  # through the speaker, not only as an event
    assert _statuses(tmp_path)[0][0] == "serve"


def test_serve_idle_start_briefing_yes_session_back_to_idle(
        recogniser: Any, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = user_track(tmp_path, recogniser, EspeakNgRenderer()).path
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN_TOML)
    code = cli.main(["serve", "--engine", "pocketsphinx", "--audio-in", str(wav),
                     "--plan", str(plan)])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if "] " in line]
    order = ["state: idle -> briefing (start)", "state: briefing -> warmup (advance)",
             "state: warmup -> backward (advance)", "state: cooldown -> finished (advance)",
             "state: finished -> idle (reset)"]
    positions = [lines.index(step) for step in order]
    assert positions == sorted(positions)
    briefing = lines[positions[0]:positions[1]]
    answers = [line for line in briefing if line.startswith("heard: ") and line.endswith(" -> yes")]
    assert len(answers) == len(cues.BRIEFING_CHECKS)  # "yes" or "yeah": the command is yes
    assert _statuses(home) == [("serve", "finished")]


def test_sigterm_stops_speech_records_stopped_and_exits_0(
        recogniser: Any, tmp_path: Path, home: Path) -> None:
    clip = load_clip("start", "start")
    audio = np.zeros(int(40 * 16000), dtype=np.float32)
    audio[16000:16000 + clip.audio.size] += clip.audio
    wav = tmp_path / "start.wav"
    write_wav(wav, audio)
    env = {**os.environ, "VOICECOACH_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "voicecoach", "serve", "--engine",
                             "pocketsphinx", "--audio-in", str(wav), "--realtime"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait (in the child's own time) until the session runs
        seen.append(line)
        if "idle -> briefing" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert any("idle -> briefing" in line for line in seen)
    assert "Traceback" not in err
    assert _statuses(home) == [("serve", "stopped")]


def test_start_without_sound_card_runs_the_demo(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice([]))
    assert cli.main(["start", "--speed-up", "100000"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "voicecoach: no microphone found (there is no input sound device); "
        "running the offline demo instead (not recorded in the history)"]
    assert "session finished" in captured.out
    assert not (home / "history.sqlite3").exists()  # no "finished" session that never was


@pytest.mark.parametrize("options", [["--input-device", "Jabra"], ["--week", "3"],
                                     ["--engine", "pocketsphinx"], ["--output-device", "1"]])
def test_start_without_a_microphone_refuses_options_it_cannot_honour(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        options: list[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice([]))
    assert cli.main(["start", "--speed-up", "100000", *options]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("voicecoach: error: no microphone found") and options[0] in line
    assert "voicecoach demo" in line and captured.out == ""
    assert not (home / "history.sqlite3").exists()


def test_start_checks_the_plan_before_the_microphone(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice([]))
    plan = tmp_path / "p.toml"
    plan.write_text('[[phase]]\nkind = "backwards"\nminutes = 5\nspeed = 0.6\n')
    assert cli.main(["start", "--plan", str(plan)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "backwards" in line and str(plan) in line
    assert cli.main(["start", "--week", "9"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--week 9 is not in the programme" in line


def test_start_without_portaudio_runs_the_demo(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import voicecoach.audio.devices as devices
    from voicecoach.errors import VoicecoachError

    def no_portaudio() -> Any:
        raise VoicecoachError("cannot use sound devices: PortAudio library not found",
                              "install PortAudio")
    monkeypatch.setattr(devices, "sounddevice_module", no_portaudio)
    assert cli.main(["start", "--speed-up", "100000"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PortAudio" in err[0] and "offline demo" in err[0]


def test_serve_device_name_that_matches_nothing_is_one_line(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice",
                        FakeSoundDevice([device("Jabra SPEAK 410", 1, 2)]))
    assert cli.main(["serve", "--input-device", "blue yeti"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["voicecoach: error: no input device matches 'blue yeti'; "
                   "choose one of: 0: Jabra SPEAK 410."]
    assert not (home / "history.sqlite3").exists()


def test_serve_without_any_sound_card_is_one_line(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice([]))
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voicecoach: error: no microphone found")


def test_print_unit_is_filled_in(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--print-unit", "--input-device", "Jabra"]) == 0
    unit = capsys.readouterr().out
    assert "{" not in unit
    assert f'ExecStart="{Path(sys.executable).parent / "voicecoach"}" serve --input-device "Jabra"' \
        in unit
    assert f'Environment="VOICECOACH_HOME={home}"' in unit
    assert "RestartPreventExitStatus=3" in unit
    for line in ("Restart=on-failure", "KillSignal=SIGTERM", "SupplementaryGroups=audio"):
        assert line in unit
    # SIGTERM stops the belt and closes its link (its queued writes flushed, then a
    # disconnect that BlueZ may never answer given up) and then writes every session's end
    # still unwritten, waiting for a locked history within one deadline for all of them
    # (CLOSE_WORST_S, DeviceLoop.close; tests/test_history_locked.py): killed sooner, they
    # are lost
    from voicecoach.history.recorder import CLOSE_WORST_S
    from voicecoach.treadmill import client

    [stop_s] = [float(x.split("=", 1)[1]) for x in unit.splitlines()
                if x.startswith("TimeoutStopSec=")]
    assert stop_s >= CLOSE_WORST_S + client.CLOSE_WORST_S


def _systemd_words(value: str, command: bool = True) -> list[str]:
    """A unit line's value split as systemd does (specifiers undone, in ExecStart= also
    variables, then shell-like quotes)."""
    value = value.replace("%%", "%")
    return shlex.split(value.replace("$$", "$") if command else value)


def test_print_unit_quotes_a_data_path_with_spaces_quotes_and_percent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / 'my data "folder" 100% $HOME\\x'
    monkeypatch.setenv("VOICECOACH_HOME", str(home))
    assert cli.main(["serve", "--print-unit", "--input-device", "Jabra Speak 510 'USB'"]) == 0
    lines = capsys.readouterr().out.splitlines()
    values = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in lines
              if "=" in line and not line.startswith("#")}
    envs = [_systemd_words(line.split("=", 1)[1], command=False)[0] for line in lines
            if line.startswith("Environment=")]
    assert f"VOICECOACH_HOME={home}" in envs
    words = _systemd_words(values["ExecStart"])
    assert words == [str(Path(sys.executable).parent / "voicecoach"), "serve",
                     "--input-device", "Jabra Speak 510 'USB'"]
    for line in lines:
        if line.startswith(("Environment=", "ExecStart=", "WorkingDirectory=")):
            assert "%" not in line.replace("%%", ""), line  # no stray specifier
