"""Which 10 ms frames of the recent audio hold sound above the noise floor (audio time only)."""

from __future__ import annotations

from collections import deque

import numpy as np

FRAME_S = 0.01
HISTORY_S = 20.0
FLOOR_PERCENTILE = 20.0
MIN_FLOOR = 30.0          # int16 RMS: digital silence still needs a little sound to count
RATIO = 3.0               # about 10 dB above the noise floor counts as voiced


class Voicing:
    """Keeps frame energies of the last ``HISTORY_S`` seconds, counted in samples."""

    def __init__(self, rate: int = 16000) -> None:
        self.rate = rate
        self.frame = int(rate * FRAME_S)
        self._rms: deque[float] = deque(maxlen=int(HISTORY_S / FRAME_S))
        self._frames = 0                     # frames seen since the stream began
        self._rest = np.zeros(0, dtype=np.int16)

    def add(self, pcm: bytes) -> None:
        """Add int16 samples (any length; a partial frame waits for the next call)."""
        samples = np.concatenate([self._rest, np.frombuffer(pcm, dtype="<i2")])
        whole = len(samples) // self.frame * self.frame
        frames = samples[:whole].astype(np.float64).reshape(-1, self.frame)
        for value in np.sqrt((frames ** 2).mean(axis=1)):
            self._rms.append(float(value))
        self._frames += len(frames)
        self._rest = samples[whole:]

    def floor(self) -> float:
        """The noise floor: a low percentile of the recent frame energies."""
        if not self._rms:
            return MIN_FLOOR
        return max(MIN_FLOOR, float(np.percentile(np.fromiter(self._rms, float),
                                                  FLOOR_PERCENTILE)))

    def voiced_fraction(self, start_s: float, end_s: float) -> float:
        """Share of the frames in [start_s, end_s) (seconds since the stream began) that are
        voiced; frames not yet seen or already forgotten are left out (0.0 if none)."""
        first_kept = self._frames - len(self._rms)
        lo = max(int(start_s / FRAME_S), first_kept, 0)
        hi = min(int(end_s / FRAME_S), self._frames)
        if hi <= lo:
            return 0.0
        values = [self._rms[i - first_kept] for i in range(lo, hi)]
        threshold = self.floor() * RATIO
        return sum(v > threshold for v in values) / len(values)

    def region(self, start_s: float, end_s: float, bridge_s: float = 0.15) -> tuple[float, float]:
        """The stretch of sound around [start_s, end_s): voiced frames joined across gaps
        shorter than ``bridge_s``; (start_s, end_s) itself when nothing in it is voiced."""
        first_kept = self._frames - len(self._rms)
        threshold = self.floor() * RATIO
        voiced = [i for i in range(max(int(start_s / FRAME_S), first_kept),
                                   min(int(end_s / FRAME_S), self._frames))
                  if self._rms[i - first_kept] > threshold]
        if not voiced:
            return start_s, end_s
        bridge = max(1, int(round(bridge_s / FRAME_S)))
        lo, hi = voiced[0], voiced[-1]
        gap = 0
        for i in range(lo - 1, first_kept - 1, -1):
            if self._rms[i - first_kept] > threshold:
                lo, gap = i, 0
            else:
                gap += 1
                if gap > bridge:
                    break
        gap = 0
        for i in range(hi + 1, self._frames):
            if self._rms[i - first_kept] > threshold:
                hi, gap = i, 0
            else:
                gap += 1
                if gap > bridge:
                    break
        return min(lo * FRAME_S, start_s), max((hi + 1) * FRAME_S, end_s)
