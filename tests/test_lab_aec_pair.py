"""The lab's NLMS span pair on the coach's real rendered speech through reverberant rooms: as fast as
the short filter from a cold start, as deep as the long one once settled, the user kept."""

from __future__ import annotations

import numpy as np
import pytest
from echo_helpers import coach_speech

from voicecoach.audio.aec import EchoCanceller, erle_db
from voicecoach.audio.cancellers import make_canceller
from voicecoach.audio.samples import to_int16
from voicecoach.lab.aec_pair import SHORT_S, SpanPair
from voicecoach.lab.bench.barge_pair import pair_installed
from voicecoach.lab.room import load_clip

RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The coach's speech as the speaker plays it (float, -1..1), about 10 s."""
    return coach_speech()


def _room(ref: np.ndarray, rt60: float, seed: int = 2) -> np.ndarray:
    """30 ms late, then an exponentially decaying diffuse tail that falls 60 dB in ``rt60``."""
    rng = np.random.default_rng(seed)
    late = int(0.03 * RATE)
    t = np.arange(late + int(rt60 * RATE)) / RATE
    rir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60) * 0.05
    rir[:late] = 0.0
    rir[late] = 0.5
    return np.convolve(ref, rir)[:ref.size]


def _run(canceller: EchoCanceller, mic: np.ndarray, ref: np.ndarray,
         chunk: int = 1600) -> np.ndarray:
    m, r = to_int16(mic.astype(np.float32)), to_int16(ref.astype(np.float32))
    out = [canceller.process(m[i:i + chunk], r[i:i + chunk]) for i in range(0, m.size, chunk)]
    return np.concatenate(out).astype(np.float64) / 32768.0


def _erle(echo: np.ndarray, residual: np.ndarray, a_s: float, b_s: float | None) -> float:
    span = slice(int(a_s * RATE), None if b_s is None else int(b_s * RATE))
    return erle_db(echo[span], residual[span])


def test_cold_like_the_short_filter_and_settled_like_the_long_one(speech: np.ndarray) -> None:
    # A room whose tail (RT60 0.4 s) the short filter cannot span: alone, the long filter
    # learns it but starts slowly; the pair must do both. Floors: 1.5 dB over the long
    # filter in the first second (it gains about 2.5 here), within 2 dB of the long filter
    # once settled and 8 dB over the short one (about 14 here).
    echo = _room(speech, 0.4)
    noise = np.random.default_rng(3).standard_normal(speech.size) * 1e-3  # -60 dBFS
    mic = echo + noise
    short, long_, pair = EchoCanceller(SHORT_S), EchoCanceller(0.3), SpanPair(0.3)
    res = {name: _run(c, mic, speech) - noise
           for name, c in (("short", short), ("long", long_), ("pair", pair))}
    cold = {name: _erle(echo, r, 0.5, 1.5) for name, r in res.items()}
    settled = {name: _erle(echo, r, 6.0, None) for name, r in res.items()}
    assert cold["pair"] > cold["long"] + 1.5, cold
    assert settled["pair"] > settled["short"] + 8.0, settled
    assert settled["pair"] > settled["long"] - 2.0, settled
    assert pair.seeds > 0 and pair.short_blocks > 0  # both halves were used


def test_a_converged_long_filter_is_never_seeded_again(speech: np.ndarray) -> None:
    # A momentary dip of the short filter's residual must not zero the long one's learnt tail.
    echo = _room(speech, 0.4)
    mic = echo + np.random.default_rng(3).standard_normal(speech.size) * 1e-3
    pair = SpanPair(0.3)
    m, r = to_int16(mic.astype(np.float32)), to_int16(speech.astype(np.float32))
    three = 3 * RATE
    pair.process(m[:three], r[:three])
    assert pair._erle > pair.converged  # converged by then
    seeds = pair.seeds
    pair.process(m[three:], r[three:])
    assert pair.seeds == seeds


def test_the_rooms_tail_after_the_coach_stops_is_still_cancelled(speech: np.ndarray) -> None:
    # Once the reference has been silent for the short span, the short filter passes the
    # microphone through: the long filter's output must be taken while the tail still sounds.
    n = 5 * RATE
    ref = np.concatenate([speech[:n], np.zeros(RATE)])
    echo = _room(ref, 0.6)
    mic = echo + np.random.default_rng(7).standard_normal(ref.size) * 1e-4
    after = slice(n + int(0.15 * RATE), n + int(0.3 * RATE))
    pair = erle_db(mic[after], _run(SpanPair(0.3), mic, ref)[after])
    long_ = erle_db(mic[after], _run(EchoCanceller(0.3), mic, ref)[after])
    # the raw microphone (what the short filter passes) would be 0 dB; the long one takes
    # out about 4 dB of this late, quiet tail
    assert pair > 2.0 and abs(pair - long_) < 0.5, (pair, long_)


def test_the_short_filter_is_never_used_for_a_block_it_passes_through(
        speech: np.ndarray) -> None:
    # The choice is made a block ahead (chunking), so it must see the short filter's idle
    # rule coming: its output for the block in which it starts passing the microphone
    # through would be the raw microphone. Spied on for utterances ending at many moments.
    used_raw = chosen = 0
    for k in range(4, 40):
        n = k * 1024
        ref = np.concatenate([speech[:n], np.zeros(RATE // 4)])
        mic = _room(ref, 0.2) + np.random.default_rng(7).standard_normal(ref.size) * 1e-4
        m, r = to_int16(mic.astype(np.float32)), to_int16(ref.astype(np.float32))
        pair = SpanPair(0.3)
        assert pair.short is not None
        pair.process(m[:n], r[:n])
        chosen += pair._short_out
        short, passed = pair.short, []
        block = short._block

        def spy(d: np.ndarray, x: np.ndarray, block=block, passed=passed) -> np.ndarray:
            out = block(d, x)
            passed.append(out is d)
            return out
        short._block = spy  # type: ignore[method-assign]
        for at in range(n, ref.size - 255, 256):
            before = pair.short_blocks
            pair.process(m[at:at + 256], r[at:at + 256])
            used_raw += int(passed[-1] and pair.short_blocks > before)
    assert chosen > 10  # the short filter was the one in use as many utterances ended
    assert used_raw == 0


def test_the_users_stop_is_kept_during_double_talk(speech: np.ndarray) -> None:
    clip = load_clip("stop", "stop the workout", "espeak-en-us")
    echo = _room(speech, 0.4)
    near = np.zeros(speech.size)
    at = int(4.0 * RATE)
    near[at:at + clip.audio.size] = clip.audio
    noise = np.random.default_rng(4).standard_normal(speech.size) * 10 ** (-45 / 20)
    mic = echo + near + noise
    out = _run(SpanPair(0.3), mic, speech)
    a, b = at + int(clip.speech_start_s * RATE), at + int(clip.speech_end_s * RATE)
    kept = np.corrcoef(out[a:b], near[a:b])[0, 1]
    raw = np.corrcoef(mic[a:b], near[a:b])[0, 1]
    assert kept > 0.95 and kept > raw
    after = slice(b + RATE // 2, b + 2 * RATE)  # the user was not learnt as echo
    assert erle_db(echo[after], (out - near - noise)[after]) > 10.0


def test_the_result_does_not_depend_on_the_chunk_size(speech: np.ndarray) -> None:
    n = 3 * RATE
    ref = speech[:n]
    mic = _room(ref, 0.4) + np.random.default_rng(5).standard_normal(n) * 3e-3
    whole = _run(SpanPair(0.3), mic, ref, chunk=n)
    assert whole.size == n
    for chunk in (100, 256, 1600, 4001):
        assert np.array_equal(_run(SpanPair(0.3), mic, ref, chunk=chunk), whole), chunk


def test_a_span_no_longer_than_the_short_one_is_the_plain_filter(speech: np.ndarray) -> None:
    ref = speech[:2 * RATE]
    mic = _room(ref, 0.2)
    pair = SpanPair(SHORT_S)
    assert pair.short is None
    assert np.array_equal(_run(pair, mic, ref), _run(EchoCanceller(SHORT_S), mic, ref))


def test_the_bench_builds_the_pair_for_nlms_only_while_installed() -> None:
    from voicecoach.audio.suppress import ResidualSuppressor

    with pair_installed():  # as the device loop builds it, on audio time
        nlms = make_canceller("nlms", filter_s=SHORT_S)
        assert isinstance(nlms, SpanPair) and nlms.short is not None
        assert nlms.parts > nlms.short.parts  # the long filter is the live span, 0.3 s
        suppressed = make_canceller("auto", filter_s=SHORT_S, suppress=True)
        assert isinstance(suppressed, ResidualSuppressor)
        assert isinstance(suppressed.inner, SpanPair)
        assert make_canceller("off") is None
    assert not isinstance(make_canceller("nlms"), SpanPair)  # the shipped filter again
