"""The residual echo suppressor after the linear canceller: unit gain without a reference,
the same samples for any chunking, the echo turned down, a voice over the echo kept."""

from __future__ import annotations

import numpy as np
import pytest

from voicecoach.audio.samples import to_int16
from voicecoach.audio.suppress import DELAY, ResidualSuppressor
from voicecoach.speaking.render import EspeakNgRenderer

RATE = 16000


class Unchanged:
    """A canceller that takes nothing out: what the suppressor alone does."""

    name = "unchanged"

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return np.asarray(mic, dtype=np.int16)


def _run(sup: ResidualSuppressor, mic: np.ndarray, ref: np.ndarray, chunk: int) -> np.ndarray:
    out = [sup.process(mic[i:i + chunk], ref[i:i + chunk]) for i in range(0, mic.size, chunk)]
    for i, part in enumerate(out):
        assert part.dtype == np.int16 and part.size == mic[i * chunk:(i + 1) * chunk].size
    return np.concatenate(out)


@pytest.fixture(scope="module")
def room() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the coach's samples, the echo in the mic with belt-like noise, a user's voice placed
    at 3.0 s in a signal as long), all float in int16 scale."""
    renderer = EspeakNgRenderer()
    coach = renderer.render("Stand at the back of the belt and hold the rails. Keep your "
                            "weight on the balls of your feet and look straight ahead.")
    ref = coach.audio.astype(np.float64)[:6 * RATE]
    rng = np.random.default_rng(3)
    rir = np.zeros(1600)
    rir[480] = 0.5
    rir[481:] = rng.standard_normal(1119) * np.exp(-np.arange(1119) / 1000.0) * 0.05
    echo = np.convolve(ref, rir)[:ref.size] + rng.standard_normal(ref.size) * 30.0
    voice = renderer.render("stop").audio.astype(np.float64)
    user = np.zeros(ref.size)
    user[3 * RATE:3 * RATE + voice.size] = voice * 0.5
    return ref, echo, user


def test_without_a_reference_it_is_the_input_a_frame_late_for_any_chunking() -> None:
    mic = to_int16((np.random.default_rng(1).standard_normal(RATE) * 0.1).astype(np.float32))
    silent = np.zeros(RATE, np.int16)
    for chunk in (DELAY, 777, 1600):
        sup = ResidualSuppressor(Unchanged())
        out = _run(sup, mic, silent, chunk)
        # the frame's delay is filled with the first samples heard, reversed: no digital zeros
        assert np.array_equal(out[:DELAY], mic[:DELAY][::-1])
        assert np.array_equal(out[DELAY:], mic[:-DELAY])
        assert sup.frames == 0  # idle: no transform computed


def test_the_same_samples_for_any_chunking(room: tuple[np.ndarray, ...]) -> None:
    ref, echo, user = room
    mic, r = to_int16((echo + user) / 32768.0), to_int16(ref / 32768.0)
    runs = [_run(ResidualSuppressor(Unchanged()), mic, r, n) for n in (DELAY, 1600, 999)]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])


def test_echo_turned_down_and_a_voice_over_it_kept(room: tuple[np.ndarray, ...]) -> None:
    ref, echo, user = room
    mic = to_int16((echo + user) / 32768.0)
    out = ResidualSuppressor(Unchanged()).process(mic, to_int16(ref / 32768.0))
    out = out.astype(np.float64)[DELAY:]
    mic_f = mic.astype(np.float64)[:-DELAY]
    quiet = slice(int(1.5 * RATE), 3 * RATE)  # echo alone, after the first 1.5 s of the coach
    turned = 10 * np.log10(np.mean(mic_f[quiet] ** 2) / np.mean(out[quiet] ** 2))
    assert turned > 6.0
    # the user's "stop" over the echo: the part of the output that is the user's voice
    said = slice(3 * RATE, 3 * RATE + int(0.5 * RATE))
    u = user[:-DELAY][said]
    kept = float(np.dot(out[said], u) / np.dot(u, u))
    assert kept > 0.7


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(ValueError):
        ResidualSuppressor(Unchanged(), floor=0.0)
