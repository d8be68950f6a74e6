"""Echo cancellation on the coach's real rendered speech: ERLE, the user's voice kept, chunking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from echo_helpers import TEXT, coach_speech

from voicecoach.audio.aec import EchoCanceller, ReferenceCanceller, erle_db
from voicecoach.audio.chunk import AudioChunk
from voicecoach.audio.samples import to_int16
from voicecoach.events import Priority
from voicecoach.lab.room import load_clip
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.speaking.timeline import WavSpeaker

RATE = 16000


def _room(ref: np.ndarray, seed: int = 2) -> np.ndarray:
    """The echo path: 30 ms late, -6 dB, plus a 25 ms decaying reflection tail (a small room)."""
    rng = np.random.default_rng(seed)
    rir = np.zeros(480 + 400)
    rir[480] = 0.5
    rir[481:] = rng.standard_normal(399) * np.exp(-np.arange(399) / 80.0) * 0.06
    return np.convolve(ref, rir)[:ref.size]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The coach's speech as the speaker plays it (float, -1..1), about 10 s."""
    return coach_speech()


def _cancel(mic: np.ndarray, ref: np.ndarray, chunk: int = 1600, **kw: float) -> np.ndarray:
    aec = EchoCanceller(**kw)
    m, r = to_int16(mic.astype(np.float32)), to_int16(ref.astype(np.float32))
    out = [aec.process(m[i:i + chunk], r[i:i + chunk]) for i in range(0, m.size, chunk)]
    return np.concatenate(out).astype(np.float64) / 32768.0


def test_erle_on_rendered_speech_through_a_room(speech: np.ndarray) -> None:
    # Floor: 15 dB of echo removed once converged (after 2 s). A linear echo path with a
    # 128 ms filter reaches 30+ dB here; the floor leaves room for the -60 dBFS noise and
    # the int16 rounding, and 15 dB puts the echo (-29 dBFS in the loopback room) under the
    # treadmill noise (-30 dBFS) and 25 dB under the user's voice (-20 dBFS).
    rng = np.random.default_rng(3)
    echo = _room(speech)
    noise = rng.standard_normal(speech.size) * 1e-3  # -60 dBFS
    out = _cancel(echo + noise, speech)
    residual = out - noise
    settled = slice(2 * RATE, None)
    assert erle_db(echo[settled], residual[settled]) > 15.0
    # and it converges within the first second of speech: the first stop can come then
    first = slice(RATE // 2, RATE + RATE // 2)
    assert erle_db(echo[first], residual[first]) > 3.0


def test_the_users_stop_is_kept_during_double_talk(speech: np.ndarray) -> None:
    clip = load_clip("stop", "stop the workout", "espeak-en-us")
    echo = _room(speech)
    near = np.zeros(speech.size)
    at = int(4.0 * RATE)
    near[at:at + clip.audio.size] = clip.audio
    rng = np.random.default_rng(4)
    noise = rng.standard_normal(speech.size) * 10 ** (-45 / 20)
    mic = echo + near + noise
    out = _cancel(mic, speech)
    a, b = at + int(clip.speech_start_s * RATE), at + int(clip.speech_end_s * RATE)
    kept = np.corrcoef(out[a:b], near[a:b])[0, 1]
    raw = np.corrcoef(mic[a:b], near[a:b])[0, 1]
    assert kept > 0.95 and kept > raw  # the user's voice is there, and cleaner than before
    # the user was not learnt as echo: after the phrase the echo is still cancelled
    after = slice(b + RATE // 2, b + 2 * RATE)
    assert erle_db(echo[after], (out - near - noise)[after]) > 10.0


@pytest.mark.slow  # minutes of audio under load: CI runs it in `pytest -m slow`
def test_the_result_does_not_depend_on_the_chunk_size(speech: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    n = 4 * RATE
    ref = speech[:n]
    mic = _room(ref) + rng.standard_normal(n) * 3e-3
    whole = _cancel(mic, ref, chunk=n)
    assert whole.size == n
    for chunk in (1, 100, 256, 1600, 4001):
        assert np.array_equal(_cancel(mic, ref, chunk=chunk), whole), chunk
    assert np.array_equal(_cancel(mic, ref), whole)  # and the same run twice: deterministic


def test_silence_in_silence_out_and_no_reference_passes_the_mic_through() -> None:
    aec = EchoCanceller()
    zeros = np.zeros(3200, dtype=np.int16)
    assert not aec.process(zeros, zeros).any()
    rng = np.random.default_rng(6)
    mic = (rng.standard_normal(5000) * 2000).astype(np.int16)
    assert np.array_equal(aec.process(mic, np.zeros_like(mic)), mic)
    assert aec.blocks == 0  # nothing was computed: idle listening costs nothing
    with pytest.raises(ValueError):
        aec.process(mic, mic[:-1])


def test_reference_from_the_speaker_timeline_cleans_chunks(tmp_path: Path) -> None:
    speaker = WavSpeaker(EspeakNgRenderer())
    speaker.say(TEXT, Priority.CUE, 0.5)
    timeline = speaker.audio(6.0)
    assert np.array_equal(speaker.played_audio(1.0, 2.5), timeline[RATE:int(2.5 * RATE)])
    ref = timeline[:6 * RATE].astype(np.float64) / 32768.0
    mic = to_int16(_room(ref).astype(np.float32))
    cleaner = ReferenceCanceller(speaker.played_audio)
    out = []
    for i in range(0, mic.size, 1600):
        chunk = cleaner(AudioChunk(mic[i:i + 1600].tobytes(), i / RATE))
        assert chunk.start_s == i / RATE and chunk.samples == mic[i:i + 1600].size
        out.append(np.frombuffer(chunk.audio, dtype="<i2"))
    cleaned = np.concatenate(out).astype(np.float64)
    # 10 dB after 2.5 s of speech: a reference off by a chunk (or on another clock) gives ~0
    assert erle_db(mic[3 * RATE:].astype(np.float64), cleaned[3 * RATE:]) > 10.0


class _InstantSink:
    """The sound card: plays at once; ``cut`` reports the utterance as cut off."""

    def __init__(self, cut: bool = False) -> None:
        self.cut = cut
        self.audio = np.zeros(0, dtype=np.int16)

    def play(self, audio: np.ndarray, stop: Any, on_start: Any = None) -> bool:
        if on_start is not None:
            on_start()
        self.audio = audio.copy()
        return not self.cut

    def close(self) -> None:
        pass


@pytest.mark.parametrize("cut", [False, True])
def test_the_live_speaker_hands_out_what_it_played(cut: bool) -> None:
    from voicecoach.speaking.tts import TtsSpeaker

    sink = _InstantSink(cut)
    stamps = iter([10.0, 10.25])  # playback began at 10.0; it ended (or was cut) at 10.25
    speaker = TtsSpeaker(EspeakNgRenderer(), sink, clock=lambda: next(stamps))
    try:
        speaker.say("Stand tall.", Priority.CUE, 0.0)
        assert speaker.wait_idle(30.0)
        n = sink.audio.size
        assert n > RATE // 2
        ref = speaker.played_audio(9.5, 10.0 + n / RATE + 0.5)
        half = RATE // 2
        assert not ref[:half].any() and not ref[half + n:].any()
        played = n if not cut else RATE // 4
        assert np.array_equal(ref[half:half + played], sink.audio[:played])
        assert not ref[half + played:].any()
    finally:
        speaker.close()
