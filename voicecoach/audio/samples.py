"""Sample helpers the run time needs: int16 <-> float, the loud part of a clip, treadmill noise.

Enrollment (listening/spotter/takes, calibrate) trims takes with :func:`active_bounds` and augments them
with :func:`treadmill_noise`; the test-signal half (SNR mixing, delays, gaps) is in
voicecoach.lab.signals, which the run time never imports."""

from __future__ import annotations

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
    del freqs
    out = np.fft.irfft(spectrum, n)
    del spectrum
    out /= np.sqrt(np.mean(out * out)) + 1e-12
    return out


def treadmill_noise(seconds: float, rng: np.random.Generator, rate: int = SAMPLE_RATE,
                    step_hz: float = 1.6, motor_hz: float = 96.0) -> np.ndarray:
    """Synthetic treadmill sound at unit RMS: motor hum with harmonics and a faint PWM whine,
    belt rumble (brown noise), broadband pink noise and footfall thumps at ``step_hz``.

    Computed in place, a part at a time, in the order of the plain formula (the same random
    draws, the same float operations: the same bits, tests/test_mix.py holds them equal):
    about half the memory at its peak (the barge-in bench's cost child read 30-s blocks of
    this as the device loop's peak RSS)."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    # wobble = 1 + 0.004 sin(2 pi 0.3 t + u); phase = 2 pi motor_hz cumsum(wobble) / rate
    wobble = 2 * np.pi * 0.3 * t
    wobble += rng.uniform(0, 2 * np.pi)
    np.sin(wobble, out=wobble)
    wobble *= 0.004
    wobble += 1.0
    phase = np.cumsum(wobble)
    del wobble
    phase *= 2 * np.pi * motor_hz
    phase /= rate
    # hum = sum over h of (0.6 / h) sin(h phase + u_h)
    mix = np.zeros(n)
    for h in range(1, 7):
        part = h * phase
        part += rng.uniform(0, 2 * np.pi)
        np.sin(part, out=part)
        part *= 0.6 / h
        mix += part
    del phase, part
    # mix = 0.5 hum + whine + 0.6 rumble + 0.3 hiss + 4 thumps, summed in that order
    mix *= 0.5
    whine = 2 * np.pi * rng.uniform(2500, 3500) * t
    del t
    np.sin(whine, out=whine)
    whine *= 0.03
    mix += whine
    del whine
    for gain, exponent in ((0.6, 2.0), (0.3, 1.0)):  # belt rumble (brown), hiss (pink)
        part = _coloured(rng, n, exponent)
        part *= gain
        mix += part
        del part
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
    thumps *= 4.0
    mix += thumps
    del thumps
    mix -= mix.mean()
    mix /= np.sqrt(np.mean(mix * mix)) + 1e-12
    return mix.astype(np.float32)
