"""A simulated room for tests and the benchmark: the coach's voice goes back into the microphone.

``EchoWavSpeaker`` is the WavSpeaker (speech laid out in audio time) that can hand out what it
has played so far; ``ClosedLoopSource`` is an audio source that, chunk by chunk as the device
loop asks for them, mixes treadmill noise, the user's clips (placed at fixed times or by a
simulated user reacting to the coach) and the coach's speech, delayed and attenuated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.mix import to_float, to_int16, treadmill_noise
from voicecoach.speech.timeline import WavSpeaker

_LOGGER = logging.getLogger(__name__)


class EchoWavSpeaker(WavSpeaker):
    """A WavSpeaker whose played samples can be read back while the session runs."""

    def played(self, start_s: float, end_s: float) -> np.ndarray:
        """The coach's samples in [start_s, end_s) (float, -1..1), as placed and cut so far.

        Utterances due to start before ``end_s`` are placed first: the device loop only acts
        at chunk ends, so nothing said later could have changed them.
        """
        n = max(0, int(round((end_s - start_s) * SAMPLE_RATE)))
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        self._advance(max(self._time(), end_s))
        base = int(round(start_s * SAMPLE_RATE))
        for placed in self._placed:
            if placed.end <= start_s or placed.start >= end_s:
                continue
            begin = int(round(placed.start * SAMPLE_RATE))
            count = int(round((placed.end - placed.start) * SAMPLE_RATE))
            audio = to_float(placed.audio[:count])
            lo, hi = max(begin, base), min(begin + audio.size, base + n)
            if hi > lo:
                out[lo - base:hi - base] += audio[lo - begin:hi - begin]
        return out


@dataclass
class UserClip:
    """A user utterance in the stream: ``audio`` placed at ``at_s``; truth for scoring."""

    at_s: float
    audio: np.ndarray
    command: str
    phrase: str
    speech_start_s: float = 0.0  # the phrase inside the clip (seconds from its start)
    speech_end_s: float = 0.0

    @property
    def start_s(self) -> float:
        return self.at_s + self.speech_start_s

    @property
    def end_s(self) -> float:
        return self.at_s + self.speech_end_s


@dataclass
class ClosedLoopSource:
    """Noise + user clips + the coach's delayed, attenuated voice, generated as it is read.

    ``noise_rms`` is the noise level (0 for none; e.g. -30 dBFS is 10 dB under fixture speech
    at -20 dBFS). ``react`` is called before each chunk with its start time and may add clips.
    """

    speaker: EchoWavSpeaker
    total_s: float
    echo_delay_s: float = 0.03
    echo_gain_db: float = -6.0
    noise_rms: float = 0.0
    chunk_s: float = 0.1
    seed: int = 1
    react: Callable[[float], None] | None = None
    clips: list[UserClip] = field(default_factory=list)
    keep_mic: bool = False
    closed: bool = False
    mic: list[np.ndarray] = field(default_factory=list)

    def add(self, clip: UserClip) -> None:
        self.clips.append(clip)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.noise_rms <= 0:
            return np.zeros(n, dtype=np.float32)
        return treadmill_noise(n / SAMPLE_RATE, rng) * np.float32(self.noise_rms)

    def chunks(self) -> Iterator[AudioChunk]:
        rng = np.random.default_rng(self.seed)
        step = int(round(self.chunk_s * SAMPLE_RATE))
        block = 30 * SAMPLE_RATE  # noise is made 30 s at a time
        noise = self._noise(block, rng)
        gain = np.float32(10.0 ** (self.echo_gain_db / 20.0))
        total = int(math.ceil(self.total_s * SAMPLE_RATE))
        pos = 0
        while pos < total and not self.closed:
            start = pos / SAMPLE_RATE
            if self.react is not None:
                self.react(start)
            end = (pos + step) / SAMPLE_RATE
            if noise.size < step:
                noise = np.concatenate([noise, self._noise(block, rng)])
            mix = noise[:step].copy()
            noise = noise[step:]
            for clip in self.clips:
                a = int(round(clip.at_s * SAMPLE_RATE))
                lo, hi = max(a, pos), min(a + clip.audio.size, pos + step)
                if hi > lo:
                    mix[lo - pos:hi - pos] += clip.audio[lo - a:hi - a]
            echo = self.speaker.played(start - self.echo_delay_s, end - self.echo_delay_s)
            mix += echo * gain
            if self.keep_mic:
                self.mic.append(mix)
            yield AudioChunk(to_int16(mix).tobytes(), start)
            pos += step

    def close(self) -> None:
        self.closed = True
