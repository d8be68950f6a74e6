"""A separate USB speaker unplugged and plugged back in while the microphone stays up: PortAudio
does not see it again until its device list is re-read, which closes every stream. While the
speaker is given up and the belt is still, the device loop reopens the microphone (its reopen
re-reads the list) once per speaker retry interval of audio time, and the speaker is tried on
the fresh list at its next utterance. Never while the belt moves.

The fakes are the hardware only (a fake ``sounddevice``: a USB microphone and a USB speaker);
the Microphone, its reopening, the speaker, the recogniser, the coach, its state machine, the
belt controller and the SQLite history are the real ones."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from belt_helpers import DRIVE
from fake_sounddevice import FakeSoundDevice, device
from replay_helpers import PLAN, clips_audio

from voicecoach.audio.playback import SoundDeviceSink
from voicecoach.commands._common import recorded_session
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.device.sources import Microphone
from voicecoach.events import Event, StateChanged
from voicecoach.grammar import load_grammar
from voicecoach.lab.cached import CachedRenderer
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.speaking.tts import TtsSpeaker
from voicecoach.treadmill.link import Update
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.machine import State

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

#: The speaker's retry interval (its ``sink_retry_s``): wall seconds to the speaker, which a
#: test faster than real time never reaches; audio seconds to the device loop's search.
RETRY_S = 10.0
#: No wait here is longer than this (a hang guard, not a measurement).
STALL_S = 60.0

MIC = device("USB Mic", 1, 0)
SPEAKER = device("USB Speaker", 0, 2)
GONE = ("speaker: output device #1 failed: Error opening OutputStream: Unanticipated host "
        "error [PaErrorCode -9999]: 'No such device' [ALSA error -19]; the session goes on "
        "without sound")
BACK = "speaker: the output device works again"


@pytest.fixture
def sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    """PortAudio's list as read at start-up: the microphone (#0) and the speaker (#1)."""
    fake = FakeSoundDevice([MIC, SPEAKER], default=(0, 1))
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


def voice(seconds: float, *clips: tuple[float, str, str]) -> np.ndarray:
    """What the microphone hears: silence with the fixture voice's commands in it."""
    return np.round(clips_audio(seconds, list(clips)) * 32767).astype(np.int16)


@dataclass
class Served:
    """A served device on the fake sound device: what it did, and when PortAudio re-read its
    device list (on the loop's audio clock)."""

    home: Path
    loop: DeviceLoop
    speaker: TtsSpeaker
    events: list[Event]
    reread_at: list[float] = field(default_factory=list)

    def sessions(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.home / "history.sqlite3") as db:
            return list(db.execute("SELECT source, status FROM sessions ORDER BY id"))

    def commands(self) -> list[str]:
        """The commands the history recorded as heard, in order."""
        with sqlite3.connect(self.home / "history.sqlite3") as db:
            rows = db.execute("SELECT data FROM events WHERE type = 'command_heard' "
                              "ORDER BY session_id, seq")
            return [json.loads(data)["command"] for (data,) in rows]


def no_endless_retry(limit: int = 2) -> Callable[[float], None]:
    """The loop's sleep between microphone retries: a hang guard once the test's audio has run
    out (the old code ran into it)."""
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > limit:
            raise RuntimeError("the microphone was lost again and again (a hang guard)")
    return sleep


@pytest.fixture
def serve(sd: FakeSoundDevice, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Runs the device loop as serve wires it (the microphone opener, the real speaker on
    the configured output by name) for one session, the speaker already given up: its last
    utterance found the device gone."""
    from voicecoach.listening.engines import make_recogniser

    renderer = CachedRenderer(EspeakNgRenderer())
    speakers: list[TtsSpeaker] = []

    def run(treadmill: SimTreadmill | None = None, *, begin_at_once: bool = False,
            sleep: Callable[[float], None] | None = None) -> Served:
        settings = Settings(data_dir=tmp_path / "home")
        clock = AudioClock(live=False)
        speaker = TtsSpeaker(renderer, SoundDeviceSink(1, spec="USB Speaker"), clock=clock.now,
                             sink_retry_s=RETRY_S)
        speakers.append(speaker)
        speaker.say("Hello.")
        assert speaker.wait_idle(STALL_S)
        assert sd.outputs == []  # it could not be opened: given up
        recogniser = make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))
        events: list[Event] = []
        loop = DeviceLoop(settings, load_grammar("en"), recogniser, speaker,
                          Microphone(None), lambda plan: recorded_session(settings, plan, "serve"),
                          plan=PLAN, listeners=[events.append], sessions=1, clock=clock,
                          begin_at_once=begin_at_once, sleep=sleep or no_endless_retry(),
                          canceller=None, treadmill=treadmill, treadmill_settings=DRIVE)
        served = Served(settings.data_dir, loop, speaker, events)
        initialize = sd._initialize

        def reread() -> None:
            served.reread_at.append(clock.audio_s)
            initialize()
        sd._initialize = reread  # type: ignore[method-assign]
        recogniser.reset()
        assert loop.run() == 1
        assert speaker.wait_idle(STALL_S)
        return served

    try:
        yield run
    finally:
        for speaker in speakers:
            speaker.close()
        renderer.close()


def speaker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "voicecoach.speaking.tts"]


def search_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("voicecoach.device") and "look for the speaker" in r.getMessage()
            and r.levelno >= level]


def test_a_replugged_speaker_is_found_while_the_microphone_stays_up_and_the_belt_is_still(
        sd: FakeSoundDevice, serve: Callable[..., Served],
        caplog: pytest.LogCaptureFixture) -> None:
    """The speaker was unplugged and plugged back in (it is a new device to the system, under
    another number) while the microphone listened. Before, PortAudio's list was never re-read
    while the microphone stayed up: the coach stayed mute until a microphone loss or a
    restart. Now, with the belt still (connected, never started), the loop reopens the
    microphone one retry interval after it found the speaker given up, the list is re-read,
    and the coach's next words (the briefing after "start") reach the speaker."""
    sd.replugged = [MIC, device("HDMI", 0, 2), device("USB Speaker", 0, 2)]
    sd.next_audio = [voice(3 * RETRY_S),  # the device idle: no one says anything
                     voice(16.0, (1.0, "start", "start_workout"), (12.0, "stop", "stop"))]
    with caplog.at_level(logging.INFO):
        served = serve(SimTreadmill())

    assert served.loop.input_losses == 0  # not found by a microphone loss
    assert len(served.reread_at) == 1 and RETRY_S <= served.reread_at[0] < RETRY_S + 1.0
    assert len(sd.streams) == 2  # the microphone opened once more, for the re-read
    played = [o for o in sd.outputs if o.written]
    assert played and all(o.kwargs["device"] == 2 for o in played)  # found under its new number
    assert served.commands() == ["start", "stop"]
    assert speaker_lines(caplog) == [GONE, BACK]
    assert len(search_lines(caplog)) == 1
    assert served.sessions() == [("serve", "stopped")]


class WatchedTreadmill(SimTreadmill):
    """The simulated treadmill, its belt's true speed noted at each poll (audio time, km/h)."""

    def __init__(self) -> None:
        super().__init__()
        self.speeds: list[tuple[float, float]] = []

    def poll(self, t: float) -> list[Update]:
        updates = super().poll(t)
        self.speeds.append((t, self.model.speed_kmh))
        return updates


def test_no_microphone_reopen_while_the_belt_moves_then_one_once_it_is_still(
        sd: FakeSoundDevice, serve: Callable[..., Served],
        caplog: pytest.LogCaptureFixture) -> None:
    """The same, but the belt was started on the console (the coach idle) and runs for three
    retry intervals: the microphone is never closed under it (a deaf gap while the belt moves);
    the session goes on without sound as before. Once the belt is reported still after the
    console's stop, the microphone is reopened, and the speaker is back."""
    sd.replugged = [MIC, device("HDMI", 0, 2), device("USB Speaker", 0, 2)]
    sim = WatchedTreadmill()
    sim.schedule(1.0, "start")
    sim.schedule(3 * RETRY_S, "stop")
    sd.next_audio = [voice(5 * RETRY_S),
                     voice(16.0, (1.0, "start", "start_workout"), (12.0, "stop", "stop"))]
    with caplog.at_level(logging.INFO):
        served = serve(sim)

    moving = [t for t, kmh in sim.speeds if kmh > 0.05]
    assert len(served.reread_at) == 1 and moving and served.reread_at[0] > moving[-1]
    assert moving[-1] - moving[0] > 2 * RETRY_S  # it ran past two retries
    assert served.loop.input_losses == 0
    # at once when the belt was reported still (a report a second)
    assert served.reread_at[0] <= moving[-1] + sim.report_s + 0.2
    assert [o.kwargs["device"] for o in sd.outputs if o.written][:1] == [2]
    assert speaker_lines(caplog) == [GONE, BACK]
    assert served.sessions() == [("serve", "stopped")]


def test_a_speaker_still_gone_is_looked_for_once_per_retry_interval_never_mid_walk(
        sd: FakeSoundDevice, serve: Callable[..., Served],
        caplog: pytest.LogCaptureFixture) -> None:
    """The speaker stays unplugged and no belt is driven (the user may walk on a belt started
    by hand): the device list is re-read once per retry interval of audio time while the
    device waits (not at every chunk), never in the middle of the session, and the session
    goes on to its stop with its history whole: no microphone loss, every command heard and
    recorded, one line that the speaker is gone and one for the first look."""
    sd.replugged = [MIC]
    # each reopened microphone hears the next clip: the walk (2.5 retry intervals) in one
    sd.next_audio = [voice(1.5 * RETRY_S), voice(1.5 * RETRY_S),
                     voice(3.5 * RETRY_S, (2.0, "start", "start_workout"),
                           (2.0 + 2.5 * RETRY_S, "stop", "stop")), voice(4.0)]
    with caplog.at_level(logging.INFO):
        served = serve()

    assert served.loop.input_losses == 0
    gaps = [b - a for a, b in zip(served.reread_at, served.reread_at[1:], strict=False)]
    assert len(served.reread_at) >= 2 and served.reread_at[0] >= RETRY_S
    assert all(gap >= RETRY_S for gap in gaps)
    changes = [e for e in served.events if isinstance(e, StateChanged)]
    began = next(e.t for e in changes if e.source == State.IDLE.value)
    ended = next(e.t for e in changes if e.dest in (State.STOPPED.value, State.FINISHED.value))
    assert ended - began > 2 * RETRY_S  # long enough for a re-read had one been allowed
    assert not [t for t in served.reread_at if began < t < ended]
    assert len(sd.streams) == 1 + len(served.reread_at)  # the Microphone, and once per re-read
    assert sd.outputs == []
    assert served.loop.outcomes == ["stopped"]
    assert served.sessions() == [("serve", "stopped")]
    assert served.commands() == ["start", "stop"]
    assert speaker_lines(caplog) == [GONE]
    assert len(search_lines(caplog)) == 1  # the first look; the later ones are quieter
    assert len(search_lines(caplog, logging.INFO)) == len(served.reread_at)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_microphone_that_fails_to_reopen_for_the_search_is_a_microphone_loss(
        sd: FakeSoundDevice, serve: Callable[..., Served],
        caplog: pytest.LogCaptureFixture) -> None:
    """The microphone cannot be opened again right after the re-read made for the speaker (the
    device waiting, no belt driven): that is the loop's microphone loss (one line, retried),
    not the end of the device; it is back at the retry and a session then goes on to its stop,
    recorded."""
    sd.replugged = [MIC]
    sd.next_audio = [voice(1.5 * RETRY_S),
                     voice(8.0, (1.0, "start", "start_workout"), (4.5, "stop", "stop"))]
    initialize = sd._initialize

    def reread() -> None:
        initialize()
        if sd.reinitialised == 1:  # the search's re-read; not the retry's
            sd.open_error = "Invalid device [PaErrorCode -9996]"
    sd._initialize = reread  # type: ignore[method-assign]
    retries: list[float] = []

    def sleep(seconds: float) -> None:
        retries.append(seconds)
        assert len(retries) == 1  # a hang guard
        sd.open_error = ""  # back by the retry

    with caplog.at_level(logging.INFO):
        served = serve(sleep=sleep)

    assert served.loop.input_losses == 1 and len(retries) == 1
    assert len(served.reread_at) == 2 and served.reread_at[0] >= RETRY_S  # the search's, the retry's
    lost = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "microphone: lost" in r.getMessage()]
    assert len(lost) == 1 and "cannot open the microphone" in lost[0]
    assert served.loop.outcomes == ["stopped"]
    assert served.sessions() == [("serve", "stopped")]
    assert served.commands()[-1:] == ["stop"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
