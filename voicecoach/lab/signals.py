"""Test signals for fixtures, benchmarks and tests: mix at an SNR, delay, gaps (the lab only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float


def power(samples: np.ndarray) -> float:
    """Mean square of the samples (as floats in [-1, 1])."""
    data = to_float(samples).astype(np.float64)
    return float(np.mean(data * data)) if data.size else 0.0


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of two arrays (power over each whole array)."""
    return 10.0 * float(np.log10(power(signal) / power(noise)))


def fit_length(noise: np.ndarray, length: int) -> np.ndarray:
    """Loop or cut ``noise`` to exactly ``length`` samples."""
    data = to_float(noise)
    if data.size == 0:
        raise ValueError("noise is empty")
    reps = -(-length // data.size)
    return np.tile(data, reps)[:length]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float,
               speech_power: float | None = None) -> np.ndarray:
    """Add ``noise`` to ``speech`` so that speech power / noise power is ``snr`` dB.

    ``speech_power`` is the power of the speech alone (e.g. measured on the phrase before it was
    padded with silence); by default it is measured over the whole ``speech`` array.
    Returns float32; the caller converts (clipping is avoided by keeping levels moderate).
    """
    s = to_float(speech)
    n = fit_length(noise, s.size)
    p_speech = power(s) if speech_power is None else speech_power
    p_noise = power(n)
    if p_speech <= 0 or p_noise <= 0:
        raise ValueError("speech and noise must both have energy to set an SNR")
    gain = np.sqrt(p_speech / (p_noise * 10.0 ** (snr / 10.0)))
    return (s + n * np.float32(gain)).astype(np.float32)


def delayed(samples: np.ndarray, delay_s: float, gain_db: float = 0.0,
            rate: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` later by ``delay_s`` and scaled by ``gain_db`` (e.g. the coach's voice
    reaching the microphone); the result is longer by the delay."""
    pad = np.zeros(int(round(delay_s * rate)), dtype=np.float32)
    return np.concatenate([pad, to_float(samples) * np.float32(10.0 ** (gain_db / 20.0))])


def add_at(base: np.ndarray, segment: np.ndarray, at_s: float,
           rate: int = SAMPLE_RATE) -> np.ndarray:
    """A copy of ``base`` (float) with ``segment`` added from ``at_s`` seconds (grows if needed)."""
    out = to_float(base).copy()
    seg = to_float(segment)
    start = int(round(at_s * rate))
    if start + seg.size > out.size:
        out = np.concatenate([out, np.zeros(start + seg.size - out.size, dtype=np.float32)])
    out[start:start + seg.size] += seg
    return out


def concat_with_gaps(segments: Sequence[np.ndarray], gaps_s: float | Sequence[float],
                     lead_s: float = 0.0, rate: int = SAMPLE_RATE
                     ) -> tuple[np.ndarray, list[float]]:
    """Join segments with silence between them; return the signal and each segment's start (s).

    ``gaps_s`` is one gap for all, or one per segment (the silence after it); ``lead_s`` is
    silence before the first.
    """
    gaps = [float(gaps_s)] * len(segments) if isinstance(gaps_s, (int, float)) else list(gaps_s)
    if len(gaps) != len(segments):
        raise ValueError("give one gap per segment")
    parts = [np.zeros(int(round(lead_s * rate)), dtype=np.float32)]
    starts = []
    pos = parts[0].size
    for seg, gap in zip(segments, gaps, strict=True):
        data = to_float(seg)
        starts.append(pos / rate)
        silence = np.zeros(int(round(gap * rate)), dtype=np.float32)
        parts += [data, silence]
        pos += data.size + silence.size
    return np.concatenate(parts), starts
