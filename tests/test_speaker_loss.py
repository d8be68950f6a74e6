"""The speaker unplugged mid-session: the device loop's session goes on, and the log says so."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from fake_sounddevice import FakeSoundDevice, device
from replay_helpers import PLAN, clips_track, user_track

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.mic import MicSource
from voicecoach.audio.playback import SinkError, SoundDeviceSink
from voicecoach.audio.wav import AudioFileSource
from voicecoach.commands._common import recorded_session
from voicecoach.device.duplex import DuplexGate
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.events import CommandHeard, CueSpoken, Event, StateChanged
from voicecoach.grammar import load_grammar
from voicecoach.lab.cached import CachedRenderer
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.speaking.tts import TtsSpeaker

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

#: No fake waits longer than this for the other side (a hang guard, not a measurement).
STALL_S = 60.0
GONE = "speaker: output device #2 failed: [Errno 19] No such device"


class Speakerphone:
    """A USB speakerphone: a microphone (replaying the user's track) and a speaker on one
    sample clock, which is the device loop's audio clock. The only fake in the test.

    The speaker "plays" an utterance for as long as its samples last on that clock, then
    returns; it is unplugged while the clock is in ``gone`` (raising SinkError, also in the
    middle of an utterance). The microphone runs as fast as the loop reads it, except while
    the speaker is busy: it waits while speech is being rendered (rendering takes no audio
    time here), and while TtsSpeaker plays silence in place of a lost device (which lasts
    real seconds) it runs at real-time pace, so the silence lasts as long on the audio clock.
    """

    def __init__(self, track: Path, clock: AudioClock, gone: tuple[float, float]) -> None:
        self.track = track
        self.clock = clock
        self.gone = gone
        self.speaker: TtsSpeaker | None = None
        self.played: list[tuple[float, float]] = []  # (start, end) that came out as sound
        self.refused: list[float] = []  # times it raised SinkError
        self.stalled = ""
        self.mic_closed = False
        self._cv = threading.Condition()
        self._until: float | None = None  # end of the utterance now playing, audio time
        self._pace: tuple[float, float, float] | None = None  # (utterance, wall, audio) at start

    def unplugged(self) -> bool:
        return self.gone[0] <= self.clock.audio_s < self.gone[1]

    def _refuse(self) -> SinkError:
        self.refused.append(self.clock.audio_s)
        return SinkError(f"output device #2 failed: [Errno 19] No such device "
                         f"(unplugged at {self.gone[0]:.1f} s)")

    # -- the speaker: an AudioSink ---------------------------------------------------------
    def play(self, audio: np.ndarray, stop: threading.Event,
             on_start: Callable[[], None] | None = None) -> bool:
        with self._cv:
            if self.unplugged():
                raise self._refuse()
            start = self.clock.audio_s
            end = start + audio.size / SAMPLE_RATE
            self._until = end
            if on_start is not None:
                on_start()  # under the lock: the microphone does not move on before it
        try:
            deadline = time.monotonic() + STALL_S
            with self._cv:
                while self.clock.audio_s < end and not stop.is_set() and not self.mic_closed:
                    if self.unplugged():
                        raise self._refuse()  # pulled out mid-utterance
                    if time.monotonic() > deadline:
                        self.stalled = "the speaker waited for the microphone"
                        return False
                    self._cv.wait(0.01)
                self.played.append((start, self.clock.audio_s))
                return not stop.is_set()
        finally:
            with self._cv:
                self._until = None
                self._cv.notify_all()

    def close(self) -> None:
        """The loop is done with the microphone (and the speaker): the clock stops here, so
        what is still playing plays out at once."""
        with self._cv:
            self.mic_closed = True
            self._cv.notify_all()

    # -- the microphone: an AudioSource ----------------------------------------------------
    def chunks(self) -> Iterator[AudioChunk]:
        for chunk in AudioFileSource(self.track).chunks():
            self._wait_for_speaker(chunk.end_s)
            yield chunk

    def _wait_for_speaker(self, chunk_end: float) -> None:
        assert self.speaker is not None
        deadline = time.monotonic() + STALL_S
        while time.monotonic() < deadline:
            with self._cv:
                self._cv.notify_all()  # the clock has moved: a playing utterance may be over
                until = self._until
            if until is not None:  # sound is playing: speaker and microphone share the clock
                if self.clock.audio_s < until and not self.unplugged():
                    return  # (pulled out: the speaker finds out before the next chunk)
                with self._cv:
                    self._cv.wait(0.01)
                continue
            if not self.speaker.is_speaking():
                self._pace = None
                return
            spoken = self.speaker.speaking_intervals()
            if spoken and spoken[-1].end is None:  # silence in place of sound: real time
                if self._pace is None or self._pace[0] != spoken[-1].start:
                    self._pace = (spoken[-1].start, time.monotonic(), self.clock.audio_s)
                ahead = (chunk_end - self._pace[2]) - (time.monotonic() - self._pace[1])
                if ahead <= 0:
                    return
                time.sleep(min(ahead, 0.02))
            else:
                time.sleep(0.002)  # being rendered, or between utterances
        self.stalled = "the microphone waited for the speaker"
        raise OSError("speakerphone: the speaker never let the microphone go on")


def _statuses(home: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(home / "history.sqlite3") as conn:
        return list(conn.execute("SELECT source, status, backward_s FROM sessions ORDER BY id"))


def _changes(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.source, e.dest, e.trigger) for e in events if isinstance(e, StateChanged)]


@pytest.mark.slow  # minutes of audio: CI runs it in its `pytest -m slow` step
def test_speaker_unplugged_mid_session_session_goes_on_and_log_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from voicecoach.listening.engines import make_recogniser

    recogniser = make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))
    renderer = CachedRenderer(EspeakNgRenderer())
    track = user_track(tmp_path, recogniser, renderer)
    # Unplug in the middle of the first utterance after 50 s (the walk has begun), plug back
    # in the middle of the first long quiet at least 8 s later.
    said = [(iv.start, iv.end or iv.start) for iv in track.coach]
    cut = next((s, e) for s, e in said if s >= 50.0)
    unplug = (cut[0] + cut[1]) / 2
    quiet = next((e1, s2) for (_, e1), (s2, _) in pairwise(said)
                 if e1 >= unplug + 8.0 and s2 - e1 >= 5.0)
    gone = (unplug, (quiet[0] + quiet[1]) / 2)

    settings = Settings(data_dir=tmp_path / "home")
    clock = AudioClock(live=False)  # a replay: the loop's clock is the microphone's samples
    phone = Speakerphone(track.path, clock, gone)
    # The device is retried at every utterance: the retry period is wall time, which a
    # replay faster than real time compresses.
    speaker = TtsSpeaker(renderer, phone, clock=clock.now, sink_retry_s=0.0)
    phone.speaker = speaker
    sources = iter([phone])
    events: list[Event] = []
    loop = DeviceLoop(settings, load_grammar("en"), recogniser, speaker,
                      lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      listeners=[events.append], sessions=1, clock=clock,
                      gate=DuplexGate(speaker), sleep=lambda s: None,
                      canceller=None)  # the replayed track holds no echo (as serve --audio-in)
    recogniser.reset()
    try:
        with caplog.at_level(logging.WARNING):
            assert loop.run() == 1
            assert speaker.wait_idle(STALL_S)
    finally:
        speaker.close()
        renderer.close()

    assert phone.stalled == "" and loop.input_losses == 0
    # The session went on to its normal end, the same course as with the speaker plugged in.
    assert loop.outcomes == ["finished"]
    assert _statuses(settings.data_dir) == [("serve", "finished", 60.0)]
    assert _changes(events) == _changes(track.events)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    heard = [e for e in events if isinstance(e, CommandHeard) and e.source == "voice"
             and gone[0] <= e.t < gone[1]]
    assert heard  # the user answered a question asked while the speaker was gone,
    assert any(isinstance(e, CueSpoken) and heard[0].t <= e.t < gone[1]  # and was answered
               for e in events)

    # The log says so once while it is gone, and once when it works again.
    lines = [r.getMessage() for r in caplog.records if r.name == "voicecoach.speaking.tts"]
    assert len(phone.refused) >= 3  # mid-utterance, then each utterance retried while gone
    assert all(gone[0] <= t < gone[1] for t in phone.refused)
    without = [line for line in lines if "goes on without sound" in line]
    assert len(without) == 1 and without[0].startswith(GONE)
    assert lines == [without[0], "speaker: the output device works again"]

    # The coach kept talking, and its timing, while the speaker was gone.
    spoken = speaker.speaking_intervals()
    assert all(iv.end is not None for iv in spoken)
    texts = [e.text for e in events if isinstance(e, CueSpoken)]
    assert sorted(iv.text for iv in spoken) == sorted(texts)  # every cue (the queue orders by priority)
    pulled = [iv for iv in spoken if iv.start < gone[0] < (iv.end or 0.0)]
    assert len(pulled) == 1  # the utterance playing when it was pulled out: ended, not hung
    silent = [iv for iv in spoken if gone[0] <= iv.start < gone[1]]
    assert len(silent) >= 2
    for iv in silent:
        length = renderer.render(iv.text).seconds
        assert iv.completed and (iv.end or 0.0) - iv.start >= 0.5 * length, iv
    for before, after in pairwise(spoken):
        assert after.start >= (before.end or 0.0) - 1e-9  # one at a time, in order
    # Sound before the unplugging and after the plugging back, none in between.
    assert any(e <= gone[0] for _, e in phone.played)
    assert any(s >= gone[1] for s, _ in phone.played)
    assert not any(gone[0] <= s < gone[1] for s, _ in phone.played)


@pytest.fixture
def stuck_sd(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSoundDevice]:
    """A speakerphone whose speaker stops taking sound without failing: every write to it
    blocks until the test ends (then the writes left behind return)."""
    sd = FakeSoundDevice([device("Jabra", 1, 2)], audio=np.zeros(16000, dtype=np.int16))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    sd.output_stuck = True
    try:
        yield sd
    finally:
        sd.output_released.set()


def test_a_speaker_that_stops_taking_sound_mid_utterance_does_not_deafen_the_device(
        tmp_path: Path, stuck_sd: FakeSoundDevice, caplog: pytest.LogCaptureFixture) -> None:
    """The output device stops taking sound without failing (its blocking write never
    returns) in the session's first utterance. Before: the coach was taken to be speaking
    for good, so the duplex gate dropped every command but stop, and after that session no
    "start" was ever heard again (until a restart). Now the utterance is given up, one log
    line says so, and the next "start" begins a session."""
    from voicecoach.listening.engines import make_recogniser

    recogniser = make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))
    settings = Settings(data_dir=tmp_path / "home")
    clock = AudioClock(live=False)
    speaker = TtsSpeaker(CachedRenderer(EspeakNgRenderer()), SoundDeviceSink(sd=stuck_sd),
                         clock=clock.now)
    speaker.play_grace_s = 0.5  # not the 10 s a real device is given
    track = clips_track(tmp_path / "user.wav", 45.0, [
        (1.0, "start", "start_workout"), (15.0, "stop", "stop"), (32.0, "start", "start_workout")])

    class Microphone:
        """The track; before the second start it waits (a hang guard, not a measure) until the
        speaker has nothing left to say, so the test does not race the speaker's thread."""

        def chunks(self) -> Iterator[AudioChunk]:
            waited = False
            for chunk in AudioFileSource(track).chunks():
                if not waited and chunk.start_s >= 30.0:
                    waited = True
                    speaker.wait_idle(STALL_S)
                yield chunk

        def close(self) -> None:
            pass

    sources = iter([Microphone()])
    events: list[Event] = []
    loop = DeviceLoop(settings, load_grammar("en"), recogniser, speaker,
                      lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      listeners=[events.append], clock=clock, sleep=lambda s: None,
                      canceller=None)
    recogniser.reset()
    try:
        with caplog.at_level(logging.WARNING):
            loop.run()
    finally:
        speaker.close()
    assert stuck_sd.writes_stuck.acquire(timeout=0)  # the first utterance's write never returned
    starts = [e for e in _changes(events) if e == ("idle", "briefing", "start")]
    assert len(starts) == 2  # the second start was heard: before, dropped as the coach's voice
    assert _statuses(settings.data_dir) == [("serve", "stopped", 0.0), ("serve", "stopped", 0.0)]
    lines = [r.getMessage() for r in caplog.records if r.name == "voicecoach.speaking.tts"]
    assert len(lines) == 1 and "stopped taking sound" in lines[0] and "restart" in lines[0]
    assert all(iv.end is not None for iv in speaker.speaking_intervals())
    assert len(stuck_sd.outputs) == 1  # not opened again while its write is still held


def test_the_microphone_is_reopened_while_a_write_to_the_speaker_never_returns(
        stuck_sd: FakeSoundDevice) -> None:
    """Reopening a lost microphone re-reads the device list, which waits for the speaker's
    utterance (it holds PortAudio). Before, a write that never returned held it for good and
    the device loop froze in its microphone retry, deaf and never restarted; now the re-read
    is skipped after a while and the microphone is reopened from the old list."""
    from voicecoach.device.sources import Microphone

    sink = SoundDeviceSink(sd=stuck_sd)
    playing = threading.Thread(target=sink.play, daemon=True,
                               args=(np.zeros(1600, dtype=np.int16), threading.Event()))
    playing.start()
    assert stuck_sd.writes_stuck.acquire(timeout=STALL_S)
    open_source = Microphone(None)
    open_source().close()  # the first microphone, opened at start-up
    reopened: list[object] = []
    retry = threading.Thread(target=lambda: reopened.append(open_source()), daemon=True)
    retry.start()
    retry.join(STALL_S)  # a hang guard: before, it never returned
    assert not retry.is_alive() and isinstance(reopened[0], MicSource)
    assert stuck_sd.reinitialised == 0  # PortAudio is not pulled away from the held write
    stuck_sd.output_released.set()
    playing.join(STALL_S)
    assert open_source() is not None and stuck_sd.reinitialised == 1  # let go: re-read again
