"""The spotter's training texts: clean negatives, positives for every phrase, and a quick synth run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import wave
from pathlib import Path

import pytest

from voicecoach.grammar import load_grammar, parse_grammar
from voicecoach.lab.training import synth
from voicecoach.lab.training import texts as T
from voicecoach.lab.training.speak import kokoro_phonemes
from voicecoach.lab.training.voices import VoiceConfig

_LOGGER = logging.getLogger(__name__)
GRAMMAR = load_grammar("en")
FIELDS = {"path", "text", "label", "kind", "voice", "engine", "family"}


def test_no_negative_text_holds_a_command_phrase() -> None:
    items = T.all_texts(GRAMMAR)
    assert T.negative_violations(GRAMMAR, items) == []
    assert {t.kind for t in items} == set(T.KINDS)
    assert all(t.label == T.OTHER for t in items if t.kind != "positive")


def test_the_check_catches_a_command_phrase() -> None:
    bad = [T.Text("Please stop the car.", T.OTHER, "sentence"), T.Text("top", T.OTHER, "negative"),
           T.Text("we say again and again", T.OTHER, "coach")]
    found = T.negative_violations(GRAMMAR, bad)
    assert [text for text, _ in found] == ["Please stop the car.", "we say again and again"]
    assert "stop" in found[0][1] and "say again" in found[1][1]
    assert not T.is_free_of_commands(GRAMMAR, "Slow down, please!")
    assert T.is_free_of_commands(GRAMMAR, "stopping is hard")


def test_negative_words_are_not_phrases_and_leave_homophones_out() -> None:
    words = {t.text for t in T.negative_words(GRAMMAR)}
    phrases = set(GRAMMAR.all_phrases())
    assert not words & phrases
    assert set(GRAMMAR.never) <= words
    assert {"know", "paws", "soar", "pane", "stopped", "stopping", "nope"}.isdisjoint(words)
    assert {"top", "goal", "now", "workout", "incline"} <= words
    assert len(words) >= 100


def test_a_word_that_is_a_phrase_is_never_a_negative() -> None:
    assert GRAMMAR.path is not None
    data = json.loads(GRAMMAR.path.read_text(encoding="utf-8"))
    data["commands"]["good"]["phrases"].append("now")
    gram = parse_grammar(data, Path("x.json"))
    assert "now" not in {t.text for t in T.negative_words(gram)}


def test_every_phrase_has_positives_and_variants_map_to_real_phrases() -> None:
    pos = T.positives(GRAMMAR)
    phrase_map = GRAMMAR.phrase_map()
    labels = {t.label for t in pos}
    assert labels == set(GRAMMAR.all_phrases())
    for item in pos:
        assert phrase_map[item.label] == item.command
        T.check_positive(GRAMMAR, item)
    texts = {t.text: t.label for t in pos}
    assert texts["stop!"] == "stop" and texts["stop, stop, stop!"] == "stop"
    assert texts["okay stop"] == "stop" and texts["yes please"] == "yes"
    assert texts["no thanks"] == "no"
    assert sum(t.text != t.label for t in pos) > len(labels)


def test_check_positive_refuses_a_variant_with_another_command() -> None:
    with pytest.raises(ValueError):
        T.check_positive(GRAMMAR, T.Text("stop, go on", "stop", "positive", "stop"))
    with pytest.raises(ValueError):
        T.check_positive(GRAMMAR, T.Text("please halt", "stop", "positive", "stop"))


def test_coach_texts_come_from_the_coach_and_are_clean() -> None:
    speech = T.coach_speech()
    coach = [t.text for t in T.coach_texts(GRAMMAR)]
    assert "Relax your shoulders and breathe." in coach
    assert "Halfway through this block." in coach  # a literal in coach.py
    assert "Say yes or no." in speech and "Say yes or no." not in coach
    assert len(coach) >= 50


def test_sentences_are_many_distinct_and_deterministic() -> None:
    first = T.everyday_sentences(GRAMMAR, seed=3)
    assert len({t.text for t in first}) == 300
    assert first == T.everyday_sentences(GRAMMAR, seed=3)
    assert first != T.everyday_sentences(GRAMMAR, seed=4)


def test_plan_is_deterministic_and_covers_every_voice_for_a_phrase() -> None:
    configs = [VoiceConfig(f"v{i}", "espeak", f"f{i % 3}") for i in range(30)]
    items = T.positives(GRAMMAR)[:6] + T.negative_words(GRAMMAR)[:3]
    plan = synth.plan_clips(items, configs, seed=1)
    assert [c.path for c in plan] == [c.path for c in synth.plan_clips(items, configs, seed=1)]
    stop_voices = {c.voice.voice for c in plan if c.text.text == "stop"}
    assert len(stop_voices) == 30
    variant = [c for c in plan if c.text.text == "stop!"]
    assert len(variant) == synth.PER_VARIANT


def _wav_ok(path: Path) -> None:
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 16000
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getnframes() > 1600


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed "
                    "(apt-get install espeak-ng): the quick synth run needs it")
def test_quick_synth_run_writes_wavs_and_a_manifest(tmp_path: Path) -> None:
    assert synth.main(["--out", str(tmp_path), "--quick", "--jobs", "1", "--ready"]) == 0
    lines = (tmp_path / synth.MANIFEST).read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) >= 10
    assert [e["path"] for e in entries] == sorted({e["path"] for e in entries})
    for entry in entries:
        assert FIELDS <= set(entry)
        assert entry["kind"] in T.KINDS
        assert entry["label"] == T.OTHER or entry["label"] in GRAMMAR.all_phrases()
        assert entry["engine"] == "espeak" and entry["family"].startswith("espeak-en")
        _wav_ok(tmp_path / entry["path"])
    assert {e["label"] for e in entries} >= {"stop", T.OTHER}
    assert (tmp_path / "READY").read_text().strip() == str(len(entries))
    # A second run skips what exists and leaves the same manifest.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    synth.main(["--out", str(tmp_path), "--quick", "--jobs", "1"])
    assert (tmp_path / synth.MANIFEST).read_text(encoding="utf-8").splitlines() == lines
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")} == before


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed "
                    "(apt-get install espeak-ng): Kokoro's phonemes come from it")
def test_kokoro_phonemes_use_kokoro_symbols() -> None:
    assert kokoro_phonemes("Stop!", "us") == "stˈɑp!"
    assert kokoro_phonemes("go on", "gb") == "ɡˌQ ˈɒn"
    assert kokoro_phonemes("no thanks", "us") == "nˈO θˈæŋks"
    for item in T.positives(GRAMMAR)[:40]:
        phonemes = kokoro_phonemes(item.text, "us")
        assert "^" not in phonemes and "ː" not in phonemes, (item.text, phonemes)


def test_tasks_put_neural_voices_first_with_every_kind_early() -> None:
    configs = [VoiceConfig("piper-a", "piper", "piper-joe"), VoiceConfig("e-a", "espeak", "e")]
    items = T.all_texts(GRAMMAR)
    tasks = synth.group_tasks(Path("/nonexistent"), synth.plan_clips(items, configs), 0)
    engines = [t[2][0].voice.engine for t in tasks]
    assert engines == sorted(engines, key=lambda e: e != "piper")
    early = {t[2][0].text.kind for t in tasks[:20]}
    assert early == set(T.KINDS)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed "
                    "(apt-get install espeak-ng): the quick synth run needs it")
def test_a_killed_run_loses_no_clip(tmp_path: Path) -> None:
    synth.main(["--out", str(tmp_path), "--quick", "--jobs", "1"])
    manifest = tmp_path / synth.MANIFEST
    lines = manifest.read_text(encoding="utf-8").splitlines()
    # A kill mid-append: one entry missing, one cut short, a worker's temporary file left.
    manifest.write_text("\n".join(lines[1:]) + "\n" + lines[0][:30], encoding="utf-8")
    stale = tmp_path / Path(json.loads(lines[0])["path"]).parent / ".x.wav.1.tmp"
    stale.write_bytes(b"")
    os.utime(stale, (0, 0))
    assert len(synth.read_manifest(tmp_path)) == len(lines) - 1
    synth.main(["--out", str(tmp_path), "--quick", "--jobs", "1"])
    assert manifest.read_text(encoding="utf-8").splitlines() == lines
    assert not stale.exists()
