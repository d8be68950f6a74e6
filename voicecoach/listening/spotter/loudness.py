"""The spotter's loudness envelope: where a phrase and its word are in the audio.

10 ms frames in dB, kept for :data:`KEEP_S`. A phrase is the last run of frames louder than the
recent floor by :data:`SPEECH_DB` (gaps up to :data:`GAP_S` bridged) begun by the time the
spotter's score rose, at most :data:`MAX_PHRASE_S` long; without a clear run, :data:`PHRASE_S`
before the rise. The word inside it ends at its last frame within :data:`WORD_DB` of its loudest
(a word's extent as the rest of the project measures it, ``audio.samples.active_bounds``).
"""

from __future__ import annotations

from collections import deque

import numpy as np

FRAME = 160
ENVELOPE_S = 2.5
KEEP_S = 5.0          # frames kept: the envelope span plus the longest chunk we accept
SPEECH_DB = 9.0
GAP_S = 0.2
MAX_PHRASE_S = 1.8
WORD_DB = -30.0       # a word's extent: frames within this of its loudest (as active_bounds)
PHRASE_S = 0.6


class Loudness:
    """The envelope of one stream, on its audio clock (``origin``: the stream's first sample's
    audio time)."""

    def __init__(self) -> None:
        self.frames = 0
        """Frames seen since the stream began."""
        self._rest = np.zeros(0, np.float64)
        self.energy: deque[float] = deque(maxlen=int(KEEP_S * 100))
        """The kept frames' energy (dB of the mean square, int16 scale)."""

    def feed(self, samples: np.ndarray) -> None:
        data = np.concatenate([self._rest, samples.astype(np.float64)])
        n = data.size // FRAME
        if n:
            power = (data[:n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
            self.energy.extend((10.0 * np.log10(power + 1.0)).tolist())
            self.frames += n
        self._rest = data[n * FRAME:]

    def floor_db(self) -> float | None:
        """The stream's floor (10th percentile of the kept frames), or None if too few."""
        return float(np.percentile(np.asarray(self.energy), 10)) if len(self.energy) >= 50 \
            else None

    def phrase_bounds(self, origin: float, emitted_s: float, rose_s: float) -> tuple[float, float]:
        """Start and end (audio s) of the last loud run before ``emitted_s`` begun by ``rose_s``
        (the last one, if none was)."""
        energy = np.asarray(self.energy)
        first = self.frames - energy.size          # frame index of energy[0]
        last = min(energy.size, int(round((emitted_s - origin) * 100)) - first)
        fallback = (max(origin, rose_s - PHRASE_S), rose_s)
        if last <= 10:
            return fallback
        env = energy[max(0, last - int(ENVELOPE_S * 100)):last]
        first += max(0, last - int(ENVELOPE_S * 100))
        floor = float(np.percentile(env, 10))
        loud = np.nonzero(env >= floor + SPEECH_DB)[0]
        if loud.size == 0:
            return fallback
        gap = int(GAP_S * 100)
        # a loud run that began after the score rose did not raise it (the coach's echo after a
        # stop the spotter fired late on): the phrase is the last run begun by then, if any
        breaks = np.nonzero(np.diff(loud) > gap)[0]
        run_starts = loud[np.concatenate([[0], breaks + 1])]
        run_ends = loud[np.concatenate([breaks, [loud.size - 1]])]
        rose = int(round((rose_s - origin) * 100)) - first
        begun = np.nonzero(run_starts <= rose)[0]
        end = int(run_ends[begun[-1]] if begun.size else loud[-1])
        loud = loud[loud <= end]
        start = end
        for k in loud[::-1]:
            if start - k > gap or end - k > MAX_PHRASE_S * 100:
                break
            start = int(k)
        to_s = lambda i: origin + (first + i) / 100.0  # noqa: E731
        return to_s(start), to_s(end + 1)

    def word_end(self, origin: float, emitted_s: float, rose_s: float) -> float:
        """The end (audio s) of the word in :meth:`phrase_bounds`'s loud run: its last frame
        within :data:`WORD_DB` of the run's loudest, so background louder than the room around
        it, which keeps the run over the floor, is not taken for the word."""
        start, end = self.phrase_bounds(origin, emitted_s, rose_s)
        energy = np.asarray(self.energy)
        first = self.frames - energy.size
        lo = max(0, int(round((start - origin) * 100)) - first)
        hi = min(energy.size, int(round((end - origin) * 100)) - first)
        if hi <= lo:
            return end
        run = energy[lo:hi]
        word = np.nonzero(run >= run.max() + WORD_DB)[0]
        return origin + (first + lo + int(word[-1]) + 1) / 100.0
