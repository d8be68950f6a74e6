"""A fixed, seeded noise floor under the audio a recogniser hears (comfort noise)."""

from __future__ import annotations

import numpy as np

SEED = 20261121
"""Seed of the noise table: the same floor on every run, so results stay reproducible."""
TABLE_SAMPLES = 65521
"""Length of the repeating noise table (a prime, about 4.1 s at 16 kHz: no period lines up
with the 10 ms feature frames)."""


class NoiseFloor:
    """Fills long quiet stretches up to a fixed level with seeded white noise.

    pocketsphinx's live cepstral mean normalisation follows the level of whatever it is fed.
    Half a minute of a near-silent room (-70 dBFS) drags the estimate so far that the next
    command at a normal level no longer matches the model. Blocks at or above the floor,
    such as a microphone's own hiss, speech or noise, pass unchanged; a quieter block that
    comes after ``hold`` samples of such blocks gets just enough noise to reach the floor,
    so the estimate never sees a long stretch below it. The short pauses around and inside
    words stay as they were: white noise right after a word sounds like an "f" to the model.
    Digital silence (an all-zero block: a muted or absent input) also passes unchanged and
    ends the stretch: pocketsphinx leaves the estimate alone on it (measured: 30 s of zeros
    do not move it).

    The noise comes from one table indexed by the sample's position in the stream, so the
    result depends only on the blocks, not on how the caller cut the audio into chunks.
    """

    def __init__(self, dbfs: float, hold: int = 0) -> None:
        """A floor whose RMS is ``dbfs`` relative to int16 full scale (32768), filled in
        after ``hold`` samples of quiet blocks."""
        self.dbfs = dbfs
        self.rms = 32768.0 * 10.0 ** (dbfs / 20.0)
        self.hold = hold
        self._table = np.random.default_rng(SEED).normal(0.0, 1.0, TABLE_SAMPLES)
        self.reset()

    def reset(self) -> None:
        """A new stream: no quiet stretch so far."""
        self.quiet = 0  # samples of consecutive blocks below the floor, up to now

    def noise(self, start: int, count: int) -> np.ndarray:
        """Unit-RMS noise for samples ``start`` .. ``start + count`` of a stream."""
        return self._table[(start + np.arange(count)) % TABLE_SAMPLES]

    def fill(self, pcm: bytes, start: int) -> bytes:
        """``pcm`` (int16 little-endian, its first sample at ``start`` in the stream) with
        noise added if it is below the floor and ends a quiet stretch longer than ``hold``
        samples, so that the sum has about the floor's RMS."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        if not samples.size:
            return pcm
        power = float(np.mean(samples * samples))
        if power >= self.rms * self.rms or power == 0.0:
            self.quiet = 0
            return pcm
        self.quiet += samples.size
        if self.quiet <= self.hold:
            return pcm
        gain = np.sqrt(self.rms * self.rms - power)
        mixed = samples + gain * self.noise(start, samples.size)
        return np.clip(np.round(mixed), -32768, 32767).astype("<i2").tobytes()
