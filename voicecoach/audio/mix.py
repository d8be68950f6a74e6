"""Signal helpers for fixtures and tests: mix at an SNR, delay, gaps, trimming, treadmill noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 (or float) samples -> float32 in [-1, 1]."""
    data = np.asarray(samples)
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    return data.astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, clipped."""
    data = np.asarray(samples)
    if data.dtype == np.int16:
        return data
    return np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16)


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


def active_bounds(samples: np.ndarray, threshold_db: float = -40.0, frame_s: float = 0.01,
                  rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """Sample indices [start, end) of the part louder than ``threshold_db`` below the loudest
    10 ms frame; (0, 0) for pure silence."""
    data = to_float(samples).astype(np.float64)
    frame = max(1, int(round(frame_s * rate)))
    n = data.size // frame
    if n == 0:
        return (0, 0)
    energy = (data[:n * frame].reshape(n, frame) ** 2).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return (0, 0)
    loud = np.nonzero(energy >= peak * 10.0 ** (threshold_db / 10.0))[0]
    return int(loud[0] * frame), int(min(data.size, (loud[-1] + 1) * frame))


def trim_silence(samples: np.ndarray, threshold_db: float = -40.0,
                 rate: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` without leading and trailing silence (see :func:`active_bounds`)."""
    start, end = active_bounds(samples, threshold_db, rate=rate)
    return to_float(samples)[start:end]


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (1: pink, 2: brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum /= freqs ** (exponent / 2.0)
    out = np.fft.irfft(spectrum, n)
    return out / (np.sqrt(np.mean(out * out)) + 1e-12)


def treadmill_noise(seconds: float, rng: np.random.Generator, rate: int = SAMPLE_RATE,
                    step_hz: float = 1.6, motor_hz: float = 96.0) -> np.ndarray:
    """Synthetic treadmill sound at unit RMS: motor hum with harmonics and a faint PWM whine,
    belt rumble (brown noise), broadband pink noise and footfall thumps at ``step_hz``."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    wobble = 1.0 + 0.004 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * motor_hz * np.cumsum(wobble) / rate
    hum = sum((0.6 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 7))
    whine = 0.03 * np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
    rumble = _coloured(rng, n, 2.0)
    hiss = _coloured(rng, n, 1.0)
    thumps = np.zeros(n)
    k = np.arange(int(0.25 * rate)) / rate
    thump = np.exp(-k / 0.035) * np.sin(2 * np.pi * 70.0 * k)
    slap = np.exp(-k / 0.006) * rng.standard_normal(k.size) * 0.5
    step = rate / step_hz
    pos = rng.uniform(0, step)
    while pos < n:
        i = int(pos)
        seg = (thump + slap)[: n - i] * rng.uniform(0.6, 1.0)
        thumps[i:i + seg.size] += seg
        pos += step * rng.uniform(0.93, 1.07)
    mix = 0.5 * hum + whine + 0.6 * rumble + 0.3 * hiss + 4.0 * thumps
    mix -= mix.mean()
    return (mix / (np.sqrt(np.mean(mix * mix)) + 1e-12)).astype(np.float32)
