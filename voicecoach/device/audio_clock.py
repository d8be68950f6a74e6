"""Audio time on the device: the microphone's sample count, tied to the wall clock the speaker
stamps its speech with (the clock of :class:`~voicecoach.device.loop.DeviceLoop`)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

#: Chunks over which AudioClock takes the least offset between audio and capture time (10 s
#: of 0.1 s chunks).
LAG_CHUNKS = 100
#: A chunk captured this much later against audio time than that least offset (seconds): the
#: microphone dropped audio before it (whole blocks, 0.1 s each by default).
GAP_S = 0.05


class AudioClock:
    """Audio time: the end of the last chunk heard, plus (live only) wall time since then.

    Live, audio time (the samples heard) is tied to the wall clock the speaker stamps its
    speech with (``time.monotonic()``) by the offset between a chunk's audio time and the
    wall time it was *captured* (``AudioChunk.captured``, from PortAudio's ADC times): the
    least over the last ``LAG_CHUNKS`` chunks, so it does not jitter with the callback's
    scheduling (a late callback only adds). It does not move when the loop runs behind real
    time (the microphone's queue holds up to voicecoach.audio.mic.MAX_BACKLOG_S): pairing by
    when a chunk was taken instead put the echo canceller's reference off by that delay. When
    the microphone drops its oldest blocks, audio time skips what was dropped and the offset
    jumps up by as much: a rise over ``GAP_S`` starts the window again from the new offset.
    A chunk with no capture time (a replay paced in real time) counts from when it arrived.
    ``speaker_to_audio`` and ``audio_to_speaker`` map a speaker stamp to audio time and back
    (the duplex gate's spans, the echo canceller's and the gate's reference).
    """

    def __init__(self, live: bool = False, wall: Callable[[], float] = time.monotonic) -> None:
        self.live = live
        self._wall = wall
        self.audio_s = 0.0
        self._at = wall()
        self._lags: deque[float] = deque(maxlen=LAG_CHUNKS)

    def note(self, audio_s: float, captured: float | None = None) -> None:
        """The loop has heard up to ``audio_s``; ``captured``: when that sample was captured
        on the wall clock, if the source knows it."""
        self.audio_s = max(self.audio_s, audio_s)
        self._at = self._wall()
        lag = (self._at if captured is None else captured) - audio_s
        if captured is not None and self._lags and lag > min(self._lags) + GAP_S:
            self._lags.clear()  # audio was dropped: the offset jumps with it
        self._lags.append(lag)

    def now(self) -> float:
        if not self.live:
            return self.audio_s
        return self.audio_s + max(0.0, self._wall() - self._at)

    def _lag(self) -> float:
        return min(self._lags) if self._lags else self._at - self.audio_s

    def speaker_to_audio(self, stamp: float) -> float:
        return stamp - self._lag()

    def audio_to_speaker(self, t: float) -> float:
        return t + self._lag()
