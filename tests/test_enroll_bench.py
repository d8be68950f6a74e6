"""The enrollment benchmark on a few real speakers: it runs and its counts add up."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_enroll import uniform_model

from voicecoach.lab.bench import enroll as bench
from voicecoach.listening.spotter.model import MODEL_ENV


def test_bench_on_a_few_speakers(speech_commands_dir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the test head never fires by itself: every detection counted here is enrollment's
    monkeypatch.setenv(MODEL_ENV, str(uniform_model(tmp_path / "model")))
    result = bench.run(speech_commands_dir, tmp_path / "work", max_speakers=2, per_folder=10)
    rows = result["speakers"]
    assert 1 <= len(rows) <= 2
    for row in rows:
        for counts in row["recall"].values():
            assert counts["generic"] == 0 and 0 <= counts["enrolled"] <= counts["clips"]
        for key in ("own_fa", "other_fa", "noise_fa"):
            clips, before, after = row[key]
            assert before == 0 and after <= clips
        assert row["noise_fa"][2] == 0, "enrollment must fire nothing on noise"
        assert row["bytes"] < 200_000
    assert sum(c["enrolled"] for r in rows for c in r["recall"].values()) > 0
    line = bench.summary(result)
    assert line.startswith(f"enrolled speakers {len(rows)}:") and "FA noise" in line


def test_through_the_second_look_no_rule_adds_false_accepts_or_loses_a_stop(
        speech_commands_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    monkeypatch.setenv(MODEL_ENV, str(uniform_model(
        tmp_path / "model", {"verify": {"default": 0.35, "stop": 0.02, "resume": 0.3}})))
    result = bench.run(speech_commands_dir, tmp_path / "work", max_speakers=2, per_folder=10,
                       verify=True)
    rows = result["speakers"]
    looked, unverified = (result["verified"][k] for k in ("looked", "unverified"))
    for part in (looked, unverified):
        assert [r["speaker"] for r in part["speakers"]] == [r["speaker"] for r in rows]
        assert part["not_enrolled_stop"]["before"] == 0        # the head never fires
    for new, old, spotter_alone in zip(looked["speakers"], unverified["speakers"], rows,
                                       strict=True):
        # the rule before session 17 acts on enrollment's hits exactly as the spotter alone
        # does (this head never raises a candidate of its own)
        assert old["recall"] == spotter_alone["recall"]
        assert old["other_fa"] == spotter_alone["other_fa"]
        for key in ("own_fa", "other_fa", "noise_fa"):
            assert new[key][0] == old[key][0] and new[key][2] <= old[key][2]
        for word, counts in new["recall"].items():
            assert counts["enrolled"] <= old["recall"][word]["enrolled"]
            if word == "stop":
                assert counts == old["recall"][word]          # never held back
    line = bench.summary(looked)
    assert line.startswith(f"enrolled speakers {len(rows)}:")


def test_a_missing_second_set_is_said_in_one_line(speech_commands_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(MODEL_ENV, str(uniform_model(tmp_path / "model")))
    code = bench.main(["--speech-commands", str(speech_commands_dir), "--speech-commands-train",
                       str(tmp_path / "absent"), "--speakers", "1", "--per-folder", "10",
                       "--work", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("\n") == 1 and "no second set of clips" in err \
        and "--speech-commands-train" in err
    # too few clips to enroll anyone: one line, not a traceback
    code = bench.main(["--speech-commands", str(speech_commands_dir), "--speech-commands-train",
                       str(tmp_path / "absent"), "--per-folder", "2",
                       "--work", str(tmp_path / "work")])
    err = capsys.readouterr().err.splitlines()
    assert code != 0 and err[-1].startswith("voicecoach: error: no locked speaker") \
        and "Traceback" not in "".join(err)


def test_the_benchs_cached_front_end_gives_the_recogniser_the_same_numbers(
        tmp_path: Path) -> None:
    """--verify runs the real recogniser on each clip's cached embeddings: what it emits must be
    what the real front end makes it emit, step for step."""
    import numpy as np

    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.audio.wav import read_wav_16k
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.features import EmbeddingFrontEnd

    grammar = load_grammar("en")
    fixtures = Path(__file__).resolve().parent.parent / "audio_fixtures" / "commands"
    wavs = sorted(fixtures.glob("*/normal/stop__stop.wav")) + sorted(
        fixtures.glob("*/normal/faster__faster.wav"))
    assert len(wavs) >= 4
    with EmbeddingFrontEnd() as fe:
        silence = fe.warm_embeddings()
        real = SpotterRecogniser(grammar, front_end=fe, data_dir=tmp_path)
        cached_fe = bench.CachedFrontEnd(silence)
        cached = SpotterRecogniser(grammar, front_end=cached_fe,  # type: ignore[arg-type]
                                   data_dir=tmp_path)
        heard = 0
        for wav in wavs:
            samples = read_wav_16k(wav)
            audio = np.concatenate([samples, np.zeros(int(bench.TAIL_S * 16000), np.int16)])
            clip = {"emb": fe.embed(audio), "samples": samples, "state": "backward"}
            real.reset()
            real.set_commands(grammar.commands_for("backward"))
            want = [(d.command, d.emitted_s) for d in
                    real.accept(AudioChunk(audio.astype("<i2").tobytes(), 0.0))]
            assert bench.heard_by(cached, cached_fe, clip, grammar) == [c for c, _ in want], wav
            cached.reset()
            cached.set_commands(grammar.commands_for("backward"))
            got = [(d.command, d.emitted_s) for d in
                   cached.accept(AudioChunk(audio.astype("<i2").tobytes(), 0.0))]
            assert got == want, wav
            heard += bool(want)
        assert heard >= 2, "the shipped head must hear some of these"
