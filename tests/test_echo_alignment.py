"""The echo canceller pairs each microphone block with what the speaker played when the block
was captured, not when the device loop got round to it: a loop behind real time (a busy
Raspberry Pi, a stall) still cancels the coach's voice, and so it does after the microphone
dropped its oldest blocks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fake_sounddevice import FakeSoundDevice, FakeStream, device

from voicecoach.audio.aec import erle_db
from voicecoach.audio.chunk import AudioChunk
from voicecoach.audio.mic import MAX_BACKLOG_S, MicSource
from voicecoach.clock import SimClock
from voicecoach.events import Priority
from voicecoach.grammar import load_grammar
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.speaking.timeline import WavSpeaker

RATE = 16000
BLOCK = 1600  # the microphone's 0.1 s blocks
#: The speaker's clock (time.monotonic on the device) when the microphone opened.
T0 = 5000.0
#: The coach's words (none of them a command), begun 1 s after the microphone opened.
TEXT = ("Welcome to backward walking. Safety first: three quick checks before we walk. "
        "Stand at the back of the belt and hold the rails, and look straight ahead.")
SPEECH_AT = 1.0


@pytest.fixture(scope="module")
def room() -> np.ndarray:
    """What the microphone hears, from its opening (int16): the coach's voice back 30 ms late
    at -6 dB through a short reflection tail, over noise 50 dB under full scale."""
    twin = WavSpeaker(EspeakNgRenderer(), clock=SimClock(T0))
    twin.say(TEXT, Priority.CUE, T0 + SPEECH_AT)
    end = max(iv.end or 0.0 for iv in twin.finish()) - T0 + 1.0
    played = twin.played_audio(T0, T0 + end).astype(np.float64) / 32768.0
    rng = np.random.default_rng(7)
    rir = np.zeros(480 + 400)
    rir[480] = 0.5
    rir[481:] = rng.standard_normal(399) * np.exp(-np.arange(399) / 80.0) * 0.06
    mic = np.convolve(played, rir)[:played.size] + rng.standard_normal(played.size) * 10 ** -2.5
    n = mic.size // BLOCK * BLOCK
    return np.clip(np.round(mic[:n] * 32768.0), -32768, 32767).astype(np.int16)


class RoomMic:
    """The real MicSource over a fake sound card in real time on the fake ``wall`` clock: the
    room's block k is captured from ``T0 + k/10`` s and handed to the microphone's callback
    as it ends (PortAudio's thread does not wait for the loop; the blocks that ended while
    the loop worked are handed over in order before it next asks for audio). The loop
    begins ``late_s`` after the first block ended, each chunk costs it 0.1 s (real time, so
    it never catches up), and the chunk captured at ``stall_at`` s costs ``stall_s`` more."""

    def __init__(self, pcm: np.ndarray, wall: SimClock, sd: FakeSoundDevice, late_s: float,
                 stall_at: float = -1.0, stall_s: float = 0.0) -> None:
        self.pcm = pcm
        self.wall = wall
        self.sd = sd
        self.late_s = late_s
        self.stall_at = stall_at
        self.stall_s = stall_s
        self.blocks = pcm.size // BLOCK
        self.given = 0  # blocks handed to the callback
        self.called_at = T0  # the wall clock as the callback reads it
        self.mic = MicSource(chunk_s=0.1, clock=lambda: self.called_at)
        self.stream: FakeStream | None = None
        sd.on_start = self._started

    def _started(self, stream: FakeStream) -> None:
        self.stream = stream
        self.wall.set(T0 + 0.1 + self.late_s)
        self._hand_over()

    def _hand_over(self) -> None:
        """Every block ended by now; if none is waiting, the loop waits for the next."""
        assert self.stream is not None
        while self.given < self.blocks and (
                T0 + (self.given + 1) * 0.1 <= self.wall.now() + 1e-9
                or self.mic._queue.empty()):
            end = T0 + (self.given + 1) * 0.1
            self.wall.set(max(self.wall.now(), end))
            self.called_at = end
            self.stream.deliver(self.pcm[self.given * BLOCK:(self.given + 1) * BLOCK],
                                end - 0.1, end)
            self.given += 1

    def chunks(self) -> Iterator[AudioChunk]:
        stalled = False
        for chunk in self.mic.chunks():
            yield chunk
            self.wall.advance(0.1)
            if not stalled and self.when(chunk) >= self.stall_at >= 0:
                stalled = True
                self.wall.advance(self.stall_s)
            if self.given == self.blocks and self.mic._queue.empty():
                return
            self._hand_over()

    def when(self, chunk: AudioChunk) -> float:
        """Seconds from the microphone's opening to the chunk's capture, found by its samples
        (the noise makes every block unlike the others)."""
        return block_index(self.pcm, chunk) / 10

    def close(self) -> None:
        self.mic.close()


def block_index(pcm: np.ndarray, chunk: AudioChunk) -> int:
    got = np.frombuffer(chunk.audio, "<i2")
    first = np.nonzero(pcm[::BLOCK] == got[0])[0]
    for k in first:
        if np.array_equal(pcm[k * BLOCK:(k + 1) * BLOCK], got):
            return int(k)
    raise AssertionError("a chunk that is no block of the room")


@dataclass
class Heard:
    erle_db: float  # echo removed over the blocks captured in the window
    dropped: int  # blocks the microphone dropped
    speech: tuple[float, float]  # the coach's words as the duplex gate places them (audio time)


def erle_of_a_loop(room: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                   late_s: float, stall_at: float = -1.0, stall_s: float = 0.0,
                   window: tuple[float, float] = (4.0, 9.0)) -> Heard:
    """Run the device loop (live clock, the real canceller and recogniser) over the room with
    the coach speaking: the echo removed over the blocks captured in ``window`` (seconds from
    the microphone's opening), and more (:class:`Heard`)."""
    from voicecoach.device.loop import AudioClock, DeviceLoop
    from voicecoach.listening.engines import make_recogniser

    sd = FakeSoundDevice([device("USB Speakerphone", 1, 1)], manual=True)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    wall = SimClock(T0)
    speaker = WavSpeaker(EspeakNgRenderer(), clock=wall)  # the live speaker's clock
    speaker.say(TEXT, Priority.CUE, T0 + SPEECH_AT)
    source = RoomMic(room, wall, sd, late_s, stall_at, stall_s)
    opened: list[RoomMic] = []

    def open_source() -> RoomMic | None:
        if opened:
            return None
        opened.append(source)
        return source

    grammar = load_grammar("en")
    recogniser = make_recogniser(SpeechSettings(engine="pocketsphinx"), grammar)
    loop = DeviceLoop(Settings(data_dir=tmp_path), grammar, recogniser, speaker, open_source,
                      lambda plan: None,  # type: ignore[arg-type,return-value]
                      clock=AudioClock(live=True, wall=wall.now))
    assert loop.canceller is not None
    cancel = loop.canceller
    heard: list[tuple[int, np.ndarray, np.ndarray]] = []

    def spy(chunk: AudioChunk) -> AudioChunk:
        out = cancel(chunk)
        heard.append((block_index(room, chunk), np.frombuffer(chunk.audio, "<i2"),
                      np.frombuffer(out.audio, "<i2")))
        return out

    loop.canceller = spy
    loop.run()
    lo, hi = window
    kept = [(m, o) for k, m, o in heard if lo <= k / 10 < hi]
    assert len(kept) >= 20
    mic = np.concatenate([m for m, _ in kept]).astype(np.float64)
    out = np.concatenate([o for _, o in kept]).astype(np.float64)
    (speech,) = loop.gate.spans()
    return Heard(erle_db(mic, out), source.mic.dropped, speech)


def test_a_loop_behind_real_time_cancels_the_echo_as_one_on_time(
        room: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """0.7 s behind real time for the whole session (the queue holds seven blocks): the echo
    removed is as much as on time (pairing blocks with the speech by when the loop took them
    added echo: -4.2 dB against 19.3 dB), and the duplex gate places the coach's words where
    the microphone heard them (they began 1 s after it opened), not 0.7 s before."""
    on_time = erle_of_a_loop(room, monkeypatch, tmp_path, late_s=0.0)
    assert on_time.dropped == 0 and on_time.erle_db > 10.0
    behind = erle_of_a_loop(room, monkeypatch, tmp_path, late_s=0.7)
    assert behind.dropped == 0
    assert behind.erle_db > on_time.erle_db - 1.0, (behind, on_time)
    assert on_time.speech[0] == pytest.approx(SPEECH_AT, abs=0.01)
    assert behind.speech[0] == pytest.approx(SPEECH_AT, abs=0.01)


def test_the_pairing_jumps_with_the_blocks_the_microphone_drops(
        room: np.ndarray, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A 2.6 s stall 3 s into the coach's words: the microphone keeps its newest 2 s and drops
    the rest, the loop stays 2 s behind after it; the echo after the stall is removed as
    much as on time (without the jump: -2.8 dB against 19.6 dB)."""
    window = (5.5, 10.0)
    on_time = erle_of_a_loop(room, monkeypatch, tmp_path, late_s=0.0, window=window)
    behind = erle_of_a_loop(room, monkeypatch, tmp_path, late_s=0.0, stall_at=4.0,
                            stall_s=MAX_BACKLOG_S + 0.6, window=window)
    assert behind.dropped >= 5
    assert behind.erle_db > on_time.erle_db - 1.5, (behind, on_time)
    # audio time skipped the dropped blocks: the words (begun before them) began that much
    # nearer the start in it
    assert behind.speech[0] == pytest.approx(SPEECH_AT - behind.dropped / 10, abs=0.01)


def test_a_replay_paced_in_real_time_places_the_coachs_speech_on_audio_time(tmp_path: Path) -> None:
    """``run --audio-in FILE --realtime``: the clock is live but the simulated speaker is timed
    by that same clock, in audio time. The gate must place its speech there as it is; mapped
    as the wall clock's stamps it landed an epoch of time.monotonic() away, and a command
    said over the coach was never held back."""
    import wave

    from voicecoach.commands._device import replayed
    from voicecoach.device.loop import DeviceLoop
    from voicecoach.listening.engines import make_recogniser

    path = tmp_path / "quiet.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.zeros(2 * RATE, np.int16).tobytes())
    settings = Settings(data_dir=tmp_path, speech=SpeechSettings(engine="pocketsphinx"))
    given = replayed(settings, [str(path)], realtime=True)
    assert given.clock.live
    grammar = load_grammar("en")
    loop = DeviceLoop(settings, grammar, make_recogniser(settings.speech, grammar), given.speaker,
                      given.open_source, lambda plan: None,  # type: ignore[arg-type,return-value]
                      clock=given.clock)
    given.clock.note(3.0)
    given.speaker.say(TEXT, Priority.CUE)
    spans = loop.gate.spans()
    assert len(spans) == 1 and spans[0][0] == pytest.approx(3.0, abs=0.1)
    assert loop.gate.over_speech(3.5, 3.8)
    assert not loop.gate.over_speech(1.0, 1.5)
