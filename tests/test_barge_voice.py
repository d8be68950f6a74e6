"""Someone besides the coach speaking, told by the echo canceller's output against its input
(lab.bench.barge_voice, experiments 16 and 17), on the real NLMS canceller with its residual
suppressor; and the offline replay of a rule on recorded looks.

The coach's speech (espeak-ng) comes back into the microphone through a reverberant echo path;
a person's word (another espeak-ng voice, from audio_fixtures) is said over it at the echo's
level. Experiment 17's bar (-6 dB, not shipped) was chosen on real speakers' barge-in trials
(README); here the measure must tell the two apart at that bar on audio it was not chosen on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voicecoach.audio.cancellers import build
from voicecoach.audio.samples import to_int16
from voicecoach.lab.bench.barge_voice import loudest_power, voice_over_echo_db
from voicecoach.lab.corpus import read_clip
from voicecoach.speaking.render import EspeakNgRenderer

VOICED_MIN_DB = -6.0  # experiment 17's bar (README, session 24)

RATE = 16000
TEXT = ("Welcome to backward walking. Safety first: three quick checks before we walk. "
        "Stand at the back of the belt and hold the rails. Keep your steps short and soft.")
FIXTURES = Path(__file__).resolve().parent.parent / "audio_fixtures" / "commands"
WORD_AT_S = 6.0
WINDOW_S = 1.2


@pytest.fixture(scope="module")
def heard() -> dict[str, np.ndarray]:
    """The coach's speech, the mic (its echo 30 ms late through a tail, faint noise, and a
    person's "stop" at the echo's level at WORD_AT_S) and the canceller's output."""
    rng = np.random.default_rng(7)
    ref = EspeakNgRenderer().render(TEXT).audio.astype(np.float64) * 0.8
    rir = np.zeros(1600)
    rir[480] = 0.5
    rir[481:] = rng.standard_normal(1119) * np.exp(-np.arange(1119) / 400.0) * 0.05
    echo = np.convolve(ref, rir)[:ref.size]
    word = read_clip(FIXTURES / "espeak-en-us-f3" / "normal" / "stop__stop.wav").astype(np.float64)
    loud = np.flatnonzero(np.abs(word) > 0.05 * np.abs(word).max())
    word = word[loud[0]:loud[-1] + 1]  # the word itself, not the file's quiet around it
    at = int(WORD_AT_S * RATE)
    # at the echo's level: the word's loudest quarter second as loud as the echo's around it
    gain = (loudest_power(echo[at - RATE:at + word.size + RATE]) or 1.0) / (loudest_power(word) or 1.0)
    word = word * np.sqrt(gain)
    noise = rng.standard_normal(ref.size) * 30.0
    mic_echo = echo + noise
    mic_word = mic_echo.copy()
    mic_word[at:at + word.size] += word
    canceller = build("nlms", suppress=True)
    assert canceller is not None
    ref16 = to_int16((ref / 32768.0).astype(np.float32))
    out = []
    for i in range(0, ref.size, 1600):
        m = to_int16((mic_word[i:i + 1600] / 32768.0).astype(np.float32))
        out.append(canceller.process(m, ref16[i:i + 1600]))
    return {"mic": mic_word, "out": np.concatenate(out).astype(np.float64),
            "word_end": np.array(at + word.size), "ref": ref}


def _window(h: dict[str, np.ndarray], end: int) -> float:
    db = voice_over_echo_db(h["out"][end - int(WINDOW_S * RATE):end],
                            h["mic"][end - int(WINDOW_S * RATE):end])
    assert db is not None
    return db


def test_a_voice_over_the_echo_reads_as_a_voice(heard: dict[str, np.ndarray]) -> None:
    end = int(heard["word_end"])
    assert _window(heard, end + int(0.2 * RATE)) >= VOICED_MIN_DB


def test_the_echo_alone_does_not_read_as_a_voice_once_the_canceller_has_heard_the_coach(
        heard: dict[str, np.ndarray]) -> None:
    """Every window of the coach alone from 2 s in (the canceller cold for its first words,
    issue 16) up to a second before the word reads under the bar."""
    ends = range(2 * RATE, int((WORD_AT_S - 1.0) * RATE), int(0.08 * RATE))
    readings = [_window(heard, e) for e in ends]
    assert max(readings) < VOICED_MIN_DB, max(readings)


def test_noise_after_the_coach_is_not_a_voice() -> None:
    """Belt noise passes the canceller, but over the coach the mic's loudest stretch is the
    echo: a window of echo then noise reads as the echo's leftover, not as a voice."""
    rng = np.random.default_rng(3)
    echo = rng.standard_normal(RATE // 2) * 3000.0
    noise = rng.standard_normal(int(0.7 * RATE)) * 100.0
    mic = np.concatenate([echo, noise])
    out = np.concatenate([echo * 0.05, noise])   # the canceller took 26 dB off the echo
    db = voice_over_echo_db(out, mic)
    assert db is not None and db < -20.0
    assert voice_over_echo_db(mic, mic) == pytest.approx(0.0)


def test_too_short_a_window_says_nothing() -> None:
    assert loudest_power(np.zeros(100)) is None
    assert voice_over_echo_db(np.zeros(100), np.zeros(100)) is None
    silence = voice_over_echo_db(np.zeros(RATE), np.zeros(RATE))
    assert silence == pytest.approx(0.0)  # digital silence on both: no evidence either way


def _recorded(folder: Path, looks: list[tuple[int, float, str, float, float]]) -> None:
    """A hand-made recording: (trial, audio time, candidate, Whisper's stop, output level)
    per look; the microphone at a fixed level, the output at the given fraction of it."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    with (folder / "looks.jsonl").open("w", encoding="utf-8") as f:
        for k, (trial, t, fired, stop, frac) in enumerate(looks):
            mic = rng.normal(0.0, 3000.0, 3 * RATE)
            clean = mic * frac
            clean[-800:] = mic[-800:]  # after the look's end (the chunk ran on): not read
            np.savez_compressed(folder / f"look{k:05d}.npz", mic=mic.astype(np.int16),
                                clean=clean.astype(np.int16), ref=np.zeros(0, np.int16))
            f.write(json.dumps({"k": k, "trial": trial, "end_s": t, "chunk_end": t + 0.05,
                                "fired": fired, "stop": stop, "scores": {"stop": stop}}) + "\n")


def test_a_rule_is_replayed_on_recorded_looks(tmp_path: Path) -> None:
    """A trial the shipped run lost is caught at a passing look at the user's word; a look at
    the coach before the word is counted as the coach's voice let through; another command's
    candidate, a look under the bar or one reading as the echo adds nothing; another word
    taken for stop is counted; a left-out file is not read."""
    from voicecoach.lab.bench.barge_voice import load_looks, main, replay

    folder = tmp_path / "rec"
    _recorded(folder, [(0, 2.0, "stop", 0.002, 1.0),      # at the word, a voice: caught
                       (1, 2.0, "stop", 0.002, 0.1),      # at the word, the echo: not
                       (2, 0.5, "stop", 0.002, 1.0),      # before the word: the coach's
                       (2, 2.0, "faster", 0.002, 1.0),    # another command's candidate
                       (3, 2.0, "stop", 0.0005, 1.0),     # under the bar
                       (4, 2.0, "again:stop", 0.002, 0.9),  # the gate's look again: caught
                       (5, 2.0, "stop", 0.002, 1.0)])     # another word taken for stop
    looks = load_looks(folder)
    assert looks[0]["db"] == pytest.approx(0.0, abs=0.1)
    assert looks[1]["db"] == pytest.approx(-20.0, abs=0.5)
    stop = {"word": "stop", "placed": True, "caught": False, "latency_s": None,
            "word_s": [1.5, 1.8]}
    trials = [{**stop, "diag_trial": i, "file": f"s{i}.wav"} for i in range(5)]
    trials[3].update(caught=True, latency_s=0.2)           # the shipped run caught it in time
    trials.append({"word": "down", "placed": True, "diag_trial": 5, "file": "d.wav"})
    got = replay(looks, trials, 0.001, -6.0)
    assert got == {"stops": 5, "shipped": 1, "rule": 3, "coach_passed": 1, "others": 1,
                   "others_taken": 1}
    assert replay(looks, trials, 0.001, -6.0, exclude=frozenset({"s0.wav"}))["rule"] == 2
    loop = replay(looks, None, 0.001, -6.0)
    assert loop["coach_passed"] == 4 and loop["looks"] == 7
    assert main(["replay", str(folder), "--trials", str(tmp_path / "missing.jsonl")]) == 2


def test_recording_puts_back_what_it_patched(tmp_path: Path) -> None:
    from voicecoach.device.loop import DeviceLoop
    from voicecoach.lab.bench import barge_trials
    from voicecoach.lab.bench.barge_voice import recording
    from voicecoach.listening.spotter.looks import SecondLook

    before = (DeviceLoop._cancel_echo, SecondLook._look, SecondLook._second_look,
              SecondLook.look_again, barge_trials.trial)
    with recording(tmp_path / "rec"):
        assert DeviceLoop._cancel_echo is not before[0] and barge_trials.trial is not before[4]
    assert (DeviceLoop._cancel_echo, SecondLook._look, SecondLook._second_look,
            SecondLook.look_again, barge_trials.trial) == before
