"""The shipped command spotter through the Recogniser interface.

Recognition is tested on real people the model never heard: the locked test speakers of
../shared (``training.data.is_locked``; no recipe, threshold or verifier setting ever saw them),
skipped with a reason when ../shared is not beside the checkout. Fixture voices serve only
tests of the mechanics (chunking, stream times, state grammars).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from voicecoach import cli
from voicecoach.audio.chunk import AudioChunk, split_pcm
from voicecoach.audio.samples import to_float, to_int16
from voicecoach.audio.wav import read_wav_16k
from voicecoach.grammar import load_grammar
from voicecoach.listening.recogniser import Detection
from voicecoach.listening.spotter.engine import SpotterRecogniser

GRAMMAR = load_grammar("en")
SPEECH_COMMANDS = FIXTURES.parent.parent / "shared" / "speech_commands"
needs_shared = pytest.mark.skipif(not SPEECH_COMMANDS.is_dir(),
                                  reason="../shared/speech_commands is not beside this checkout")


def locked(word: str, n: int) -> list[np.ndarray]:
    """``n`` clips of ``word`` by locked test speakers (never trained on, never tuned on)."""
    from voicecoach.lab.training.data import all_real_clips, is_locked, read_audio

    return [read_audio(p) for p, w, spk in all_real_clips(SPEECH_COMMANDS)
            if w == word and is_locked(spk)][:n]


@pytest.fixture(scope="module")
def rec() -> SpotterRecogniser:
    """The spotter as shipped: with its second look when the 'verify' extra is installed."""
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.settings import SpeechSettings

    made = make_recogniser(SpeechSettings(engine="spotter"), GRAMMAR)
    assert isinstance(made, SpotterRecogniser)
    return made


def hear(rec: SpotterRecogniser, samples: np.ndarray, commands: tuple[str, ...] | None = None,
         chunk_s: float = 0.1, room: bool = False) -> list[Detection]:
    """Detections for ``samples`` after 0.25 s of digital silence and before 1 s of it, or
    (``room``) with half a second of quiet room tone around them, as a user's audio is."""
    rec.reset()
    rec.set_commands(commands or GRAMMAR.commands)
    if room:
        from voicecoach.lab.training.data import in_room

        pcm = in_room(samples, "room").tobytes()
    else:
        pcm = np.concatenate([np.zeros(4000, np.int16), samples, np.zeros(16000, np.int16)]).tobytes()
    out: list[Detection] = []
    for chunk in split_pcm(pcm, chunk_s):
        out += rec.accept(chunk)
    return out + rec.flush()


def fixture(rel: str) -> np.ndarray:
    return read_wav_16k(FIXTURES / rel)


@needs_shared
def test_real_stops_of_unseen_people_are_heard_soon_after_they_end(rec: SpotterRecogniser) -> None:
    from voicecoach.audio.samples import active_bounds

    heard, late = 0, []
    clips = locked("stop", 16)
    for clip in clips:
        stops = [d for d in hear(rec, clip, GRAMMAR.commands_for("backward"), room=True)
                 if d.command == "stop"]
        if stops:
            heard += 1
            _, end = active_bounds(to_float(clip), threshold_db=-30.0)
            late.append(stops[0].emitted_s - (0.5 + end / 16000))
            assert stops[0].start_s < stops[0].end_s <= stops[0].emitted_s + 1e-6
    assert heard >= 0.8 * len(clips)
    assert max(late) < 0.5


@needs_shared
def test_only_the_states_commands_are_heard(rec: SpotterRecogniser) -> None:
    yes = locked("yes", 6)
    in_briefing = sum(any(d.command == "yes" for d in hear(rec, c, GRAMMAR.commands_for("briefing"),
                                                            room=True)) for c in yes)
    assert in_briefing >= 4
    idle = GRAMMAR.commands_for("idle")
    assert "yes" not in idle
    assert all(d.command != "yes" for c in yes for d in hear(rec, c, idle))


@needs_shared
@pytest.mark.parametrize("gain_db", [12.0, 24.0])
def test_a_shouted_clipped_stop_is_still_a_stop(rec: SpotterRecogniser, gain_db: float) -> None:
    clips = locked("stop", 8)
    calm = [any(d.command == "stop" for d in hear(rec, c)) for c in clips]
    shouted = [any(d.command == "stop" for d in hear(
        rec, to_int16(np.clip(to_float(c) * 10 ** (gain_db / 20), -1.0, 1.0)))) for c in clips]
    assert sum(shouted) >= sum(calm) - 1 and sum(shouted) >= 5


@needs_shared
def test_stop_stop_is_heard(rec: SpotterRecogniser) -> None:
    clips = locked("stop", 6)
    twice = [np.concatenate([c, np.zeros(2400, np.int16), c]) for c in clips]
    assert sum(any(d.command == "stop" for d in hear(rec, t)) for t in twice) >= 5


@needs_shared
def test_a_stop_at_the_very_end_of_a_stream_is_heard(rec: SpotterRecogniser) -> None:
    """flush() goes on with room tone like the stream's floor: a file that ends right after
    "stop" is heard as when half a second of quiet room follows it."""
    from voicecoach.lab.training.data import in_room

    def stops(samples: np.ndarray) -> int:
        rec.reset()
        rec.set_commands(GRAMMAR.commands_for("backward"))
        out = []
        for chunk in split_pcm(samples.tobytes(), 0.1):
            out += rec.accept(chunk)
        return sum(d.command == "stop" for d in out + rec.flush())

    clips = locked("stop", 12)
    bare = [stops(in_room(c, f"c{k}", lead_s=0.5, tail_s=0.0)) for k, c in enumerate(clips)]
    tailed = [stops(in_room(c, f"c{k}", lead_s=0.5, tail_s=0.5)) for k, c in enumerate(clips)]
    assert sum(map(bool, bare)) >= sum(map(bool, tailed)) - 1
    assert sum(map(bool, bare)) >= 0.75 * len(clips)


def test_digital_silence_and_a_quiet_room_give_nothing(rec: SpotterRecogniser) -> None:
    assert hear(rec, np.zeros(16000 * 20, np.int16)) == []
    noise = (np.random.default_rng(0).standard_normal(16000 * 20) * 30).astype(np.int16)
    assert hear(rec, noise) == []


@pytest.mark.slow  # minutes of audio: CI runs it in its `pytest -m slow` step
def test_chunk_size_gives_identical_detections(rec: SpotterRecogniser) -> None:
    stream = fixture("streams/stream_a.wav") if (FIXTURES / "streams/stream_a.wav").is_file() \
        else fixture("commands/joe/normal/stop__stop.wav")
    runs = [[d.to_dict() for d in hear(rec, stream, chunk_s=size)] for size in (0.01, 0.1, 0.5)]
    assert runs[1], "nothing was heard"
    assert runs[0] == runs[1] == runs[2]


@needs_shared
def test_accept_with_a_stream_not_starting_at_zero(rec: SpotterRecogniser) -> None:
    clips = [c for c in locked("stop", 8) if any(d.command == "stop" for d in hear(rec, c))]
    assert clips
    rec.reset()
    rec.set_commands(GRAMMAR.commands)
    pcm = np.concatenate([np.zeros(4000, np.int16), clips[0], np.zeros(16000, np.int16)]).tobytes()
    got = []
    for chunk in split_pcm(pcm, 0.1, start_s=100.0):
        got += rec.accept(AudioChunk(chunk.audio, chunk.start_s))
    assert got and all(d.emitted_s > 100.0 for d in got)


@needs_shared
def test_listen_json_uses_the_spotter_under_auto(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, rec: SpotterRecogniser) -> None:
    from voicecoach.audio.wav import write_wav
    from voicecoach.lab.training.data import in_room

    heard = [c for c in locked("stop", 8) if [d.command for d in hear(rec, c)] == ["stop"]]
    clip = tmp_path / "stop.wav"
    write_wav(clip, in_room(heard[0], "stop"))
    code = cli.main(["--data-dir", str(tmp_path), "listen", "--json", str(clip)])
    out, err = capsys.readouterr()
    assert code == 0, err
    line = json.loads(out.strip().splitlines()[-1])
    assert [c["command"] for c in line["commands"]] == ["stop"]


@needs_shared
@pytest.mark.xfail(strict=True, reason="known miss: 7 of 12 heard (since session 9's 1.2-s look "
                   "everywhere; 0 of 12 with the 2-second look, whose transcript opened with the "
                   "coach's words); the rest never reach the candidate level or stay under the "
                   "bar; the second try from the stop's onset that heard 11 of 12 also let 127 "
                   "false stops an hour through from running talk, and was taken out (README, "
                   "Known issues)")
def test_a_stop_said_just_after_other_talk_is_heard_by_the_second_look(rec: SpotterRecogniser) -> None:
    """The coach's words (its residual echo, 6 dB under the user) end 0.3 s before an unseen
    person's stop: 10 of these 12 should be heard, and the coach's words alone nothing."""
    if rec.verifier is None:
        pytest.skip("the 'verify' extra is not installed")
    talk = _coach_talk()
    coach, stops = _coach_then_stops(12)
    backward = GRAMMAR.commands_for("backward")
    heard = _verified_stops_after(rec, coach, stops, backward)
    assert sum(heard) >= 10, heard
    alone = _levelled(talk, -27.0)
    assert not hear(rec, to_int16(alone / 32768.0), backward, room=True)


def _levelled(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` from its speech's onset, its speech at ``dbfs`` RMS (float, int16 scale)."""
    from voicecoach.audio.samples import active_bounds

    a, b = active_bounds(to_float(x), -30.0)
    rms = float(np.sqrt(np.mean(x[a:b].astype(np.float64) ** 2)))
    return x[a:].astype(np.float64) * (32768.0 * 10 ** (dbfs / 20) / rms)


def _coach_talk() -> np.ndarray:
    """One of the coach's sentences in espeak-ng, cut where its last word ends."""
    from voicecoach.speaking.render import EspeakNgRenderer

    talk = np.asarray(EspeakNgRenderer().render(
        "Keep your weight on the balls of your feet and your steps short.").audio)
    return talk[:int(np.nonzero(np.abs(talk) > 300)[0][-1]) + 1]


def _verified_stops_after(rec: SpotterRecogniser, coach: np.ndarray, stops: list[np.ndarray],
                          commands: tuple[str, ...]) -> list[bool]:
    """For each stop said 0.3 s after the coach's words: heard, and every stop detection of it
    verified by the second look."""
    heard = []
    for clip in stops:
        mix = np.concatenate([coach, np.zeros(int(0.3 * 16000)), clip])
        got = [d for d in hear(rec, to_int16(mix / 32768.0), commands, room=True)
               if d.command == "stop"]
        heard.append(bool(got) and all(d.verified for d in got))
    return heard


def _coach_then_stops(n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The coach's last words (its residual echo, 6 dB under the user, cut where they end) and
    ``n`` unseen people's stops at the user's level (from their onset)."""
    coach = _levelled(_coach_talk(), -33.0)[-int(1.2 * 16000):]
    return coach, [_levelled(c, -27.0) for c in locked("stop", n)]


@needs_shared
def test_a_stop_just_after_the_coachs_words_is_heard_when_the_recogniser_knows_where_they_are(
        rec: SpotterRecogniser) -> None:
    """As above, but the recogniser is told where the coach's speech is (as the device loop
    tells it, the speech widened by the gate's 0.35 s tail): its second look reads the last
    OVER_SPEECH_LOOK_S, which opens on the user's word more often than on the coach's.
    Measured: 7 of 12 heard (2 never reach the spotter's candidate level; with the 2-second
    window 0 of 12, with 1.5 s 3 of 12). The coach's words alone, told the same, are still
    nothing, and so are they at the user's level."""
    if rec.verifier is None:
        pytest.skip("the 'verify' extra is not installed")
    coach, stops = _coach_then_stops(12)
    backward = GRAMMAR.commands_for("backward")
    room_s = 0.5  # hear(room=True) puts half a second of room tone first
    try:
        rec.hear_coach(lambda: [(room_s, room_s + coach.size / 16000 + 0.35)])
        heard = _verified_stops_after(rec, coach, stops, backward)
        assert sum(heard) >= 6, heard
        assert not hear(rec, to_int16(coach / 32768.0), backward, room=True)
        rec.hear_coach(lambda: [(room_s, room_s + 4.0)])
        talk = coach * 10 ** (6 / 20)
        assert not hear(rec, to_int16(talk / 32768.0), backward, room=True)
    finally:
        rec.hear_coach(None)


@needs_shared
def test_a_confident_stop_over_the_coach_is_looked_at_again_on_request(
        rec: SpotterRecogniser) -> None:
    """The duplex gate asks ``look_again`` before it drops a confident stop as the coach's own
    voice: the verifier reads the audio up to the stop's step as a candidate's look would (the
    last OVER_SPEECH_LOOK_S over the coach). Unseen people's stops just after the coach's words
    are heard (measured: 10 of 12); the coach's words alone, at the user's level, are not."""
    if rec.verifier is None:
        pytest.skip("the 'verify' extra is not installed")
    from voicecoach.listening.spotter.features import STEP_S

    coach, stops = _coach_then_stops(12)
    backward = GRAMMAR.commands_for("backward")

    def looked(mix: np.ndarray) -> bool:
        rec.reset()
        rec.set_commands(backward)
        pcm = to_int16(np.concatenate([mix, np.zeros(int(0.2 * 16000))]) / 32768.0).tobytes()
        for chunk in split_pcm(pcm, 0.1):
            rec.accept(chunk)
        at = int(len(pcm) / 2 / 16000 / STEP_S) * STEP_S  # the last whole step
        return rec.look_again(Detection("stop", "stop", at - 0.5, at - 0.2, at, 0.99))

    try:
        rec.hear_coach(lambda: [(0.0, coach.size / 16000 + 0.35)])
        heard = [looked(np.concatenate([coach, np.zeros(int(0.3 * 16000)), clip]))
                 for clip in stops]
        assert sum(heard) >= 8, heard
        assert not looked(coach * 10 ** (6 / 20))
    finally:
        rec.hear_coach(None)


def test_the_phrase_is_the_last_loud_run_begun_before_the_score_rose(rec: SpotterRecogniser) -> None:
    """A stop can be fired up to about half a second after its word, and a loud run after the
    word (the coach's echo) is then the last one before the detection; a run begun after the
    score rose did not raise it, so the phrase is the run before (dev trials: the gate's echo
    check read 24.69-24.71 s of the coach's echo for a stop said 24.15-24.60 s and dropped it)."""
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(int(2.0 * 16000)) * 30.0  # room tone
    for a, b in ((1.0, 1.4), (1.6, 1.7)):  # the word, then a blip of echo after it
        audio[int(a * 16000):int(b * 16000)] *= 100.0
    rec.reset()
    for chunk in split_pcm(np.clip(audio, -32768, 32767).astype("<i2").tobytes(), 0.1):
        rec.accept(chunk)
    start, end = rec.phrase_bounds(1.92, rose_s=1.4)
    assert start == pytest.approx(1.0, abs=0.02) and end == pytest.approx(1.4, abs=0.02)
    # a score that rose after the blip began: the blip, as before
    start, end = rec.phrase_bounds(1.92, rose_s=1.65)
    assert start == pytest.approx(1.6, abs=0.02) and end == pytest.approx(1.7, abs=0.02)


def test_the_words_end_is_its_last_sound_within_30_db_of_its_loudest(rec: SpotterRecogniser) -> None:
    """A clip's own background, louder than the room around it, keeps the loud run going after
    the word (dev trials: a re-look timed by the run's end came 0.52 s after the word); the
    word's end is where the project measures it everywhere else (active_bounds, -30 dB)."""
    rng = np.random.default_rng(4)
    audio = rng.standard_normal(int(2.4 * 16000)) * 30.0  # room tone
    audio[int(1.0 * 16000):int(1.3 * 16000)] *= 300.0     # the word
    audio[int(1.3 * 16000):int(1.6 * 16000)] *= 4.0       # the clip's background after it
    rec.reset()
    for chunk in split_pcm(np.clip(audio, -32768, 32767).astype("<i2").tobytes(), 0.1):
        rec.accept(chunk)
    assert rec.phrase_bounds(2.0, rose_s=1.2)[1] == pytest.approx(1.6, abs=0.02)
    assert rec.word_end(2.0, rose_s=1.2) == pytest.approx(1.3, abs=0.02)
    # a run with nothing quieter after it: the run's own end
    assert rec.word_end(1.25, rose_s=1.2) == pytest.approx(1.25, abs=0.02)
