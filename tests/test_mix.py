"""Mixing helpers: the SNR asked for is the SNR measured; delays, gaps and trimming are exact."""

from __future__ import annotations

import numpy as np
import pytest

from voicecoach.audio.samples import active_bounds, to_float, to_int16, treadmill_noise, trim_silence
from voicecoach.lab.signals import add_at, concat_with_gaps, delayed, mix_at_snr, power, snr_db


def burst(seconds: float = 0.5, freq: float = 300.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("snr", [20.0, 10.0, 5.0, 0.0, -5.0])
def test_mix_at_snr_is_what_was_asked(snr: float) -> None:
    speech = burst(1.0)
    noise = treadmill_noise(1.5, np.random.default_rng(3))
    mixed = mix_at_snr(speech, noise, snr)
    assert snr_db(speech, mixed - speech) == pytest.approx(snr, abs=0.01)


def test_snr_against_the_phrase_power_ignores_padding() -> None:
    phrase = burst(0.4)
    padded = np.concatenate([np.zeros(8000, np.float32), phrase, np.zeros(8000, np.float32)])
    noise = treadmill_noise(2.0, np.random.default_rng(4))
    mixed = mix_at_snr(padded, noise, 10.0, speech_power=power(phrase))
    added = mixed - padded
    assert snr_db(phrase, added) == pytest.approx(10.0, abs=0.01)
    assert snr_db(padded, added) < 6.0  # measured over the padding it would be lower


def test_short_noise_is_looped() -> None:
    mixed = mix_at_snr(burst(1.0), burst(0.1, 1000.0), 0.0)
    assert mixed.size == 16000


def test_treadmill_noise_is_low_heavy_with_footfalls() -> None:
    noise = treadmill_noise(30.0, np.random.default_rng(5))
    assert noise.size == 480000 and power(noise) == pytest.approx(1.0, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(noise.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / 16000)
    assert spectrum[freqs < 500].sum() > 0.7 * spectrum.sum()
    envelope = (noise.astype(np.float64) ** 2)[: 479744].reshape(-1, 256).mean(axis=1)
    rhythm = np.abs(np.fft.rfft(envelope - envelope.mean()))
    rfreqs = np.fft.rfftfreq(envelope.size, 256 / 16000)
    band = (rfreqs > 0.5) & (rfreqs < 5.0)
    step = np.abs(rfreqs - 1.6) < 0.15
    # footfalls at ~1.6 steps/s (plain brown noise scores 2 to 4 here)
    assert rhythm[step].max() > 5 * np.median(rhythm[band])
    again = treadmill_noise(30.0, np.random.default_rng(5))
    assert np.array_equal(noise, again)  # deterministic for a seed


def test_delayed_and_attenuated() -> None:
    x = burst(0.1)
    y = delayed(x, 0.25, gain_db=-6.0)
    assert y.size == x.size + 4000 and not y[:4000].any()
    assert snr_db(y[4000:], x) == pytest.approx(-6.0, abs=0.01)


def test_concat_with_gaps_reports_starts() -> None:
    a, b = burst(0.5), burst(0.25)
    out, starts = concat_with_gaps([a, b], [1.0, 0.5], lead_s=0.25)
    assert starts == [0.25, 1.75]
    assert out.size == 16000 * (0.25 + 0.5 + 1.0 + 0.25 + 0.5)
    assert np.array_equal(out[4000:12000], a)
    with pytest.raises(ValueError):
        concat_with_gaps([a, b], [1.0])


def test_add_at_grows_the_base() -> None:
    out = add_at(np.zeros(100, np.float32), np.ones(50, np.float32), 80 / 16000)
    assert out.size == 130 and out[80:].sum() == 50 and not out[:80].any()


def test_trim_and_bounds() -> None:
    x = np.concatenate([np.zeros(3200, np.float32), burst(0.5), np.zeros(1600, np.float32)])
    assert active_bounds(x) == (3200, 11200)
    assert trim_silence(x).size == 8000
    assert active_bounds(np.zeros(1000)) == (0, 0)


def test_int16_round_trip() -> None:
    x = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    assert np.array_equal(to_int16(to_float(x)), x)
    assert to_int16(np.array([2.0, -2.0])).tolist() == [32767, -32768]


def _plain_treadmill_noise(seconds: float, rng: np.random.Generator, rate: int = 16000,
                           step_hz: float = 1.6, motor_hz: float = 96.0) -> np.ndarray:
    """treadmill_noise as the plain formula it was (before it was computed in place)."""
    def coloured(n: int, exponent: float) -> np.ndarray:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n)
        freqs[0] = freqs[1] if n > 1 else 1.0
        spectrum /= freqs ** (exponent / 2.0)
        out = np.fft.irfft(spectrum, n)
        return out / (np.sqrt(np.mean(out * out)) + 1e-12)

    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    wobble = 1.0 + 0.004 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * motor_hz * np.cumsum(wobble) / rate
    hum = sum((0.6 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 7))
    whine = 0.03 * np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
    rumble = coloured(n, 2.0)
    hiss = coloured(n, 1.0)
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
    return np.asarray(mix / (np.sqrt(np.mean(mix * mix)) + 1e-12)).astype(np.float32)


@pytest.mark.parametrize(("seed", "seconds"), [(1, 30.0), (3, 1.5), (11, 12.3456), (8, 0.01)])
def test_treadmill_noise_in_place_is_the_plain_formula_bit_for_bit(seed: int,
                                                                   seconds: float) -> None:
    """Computed in place for memory, it gives the same bits and leaves the generator where the
    plain formula did (the room, training scenes and benches draw blocks from one generator)."""
    lean, plain = np.random.default_rng(seed), np.random.default_rng(seed)
    got, want = treadmill_noise(seconds, lean), _plain_treadmill_noise(seconds, plain)
    assert got.dtype == want.dtype == np.float32
    assert np.array_equal(got, want)
    assert lean.uniform() == plain.uniform()
