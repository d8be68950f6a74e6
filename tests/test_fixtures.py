"""The English fixtures: the manifest is true to the audio, and the real recogniser hears them."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES

from voicecoach.audio.wav import read_header, read_wav_16k
from voicecoach.grammar import load_grammar

MANIFEST = FIXTURES / "manifest.json"
KINDS = {"command", "sentence", "noisy", "coach_cue", "chatter", "never_word", "noise",
         "silence", "stream"}
NEGATIVE_KINDS = {"coach_cue", "chatter", "never_word", "noise", "silence"}


@pytest.fixture(scope="module")
def manifest() -> list[dict[str, Any]]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def of_kind(manifest: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [e for e in manifest if e["kind"] in kinds]


def test_every_entry_is_a_16k_mono_file_with_consistent_truths(
        manifest: list[dict[str, Any]]) -> None:
    grammar = load_grammar("en")
    files = set()
    for entry in manifest:
        assert set(entry) >= {"file", "voice", "speed", "snr_db", "expected", "kind"}, entry
        assert entry["kind"] in KINDS
        info = read_header(FIXTURES / entry["file"])
        assert (info.rate, info.channels, info.bits) == (16000, 1, 16), entry["file"]
        assert info.seconds == pytest.approx(entry["audio_s"], abs=0.001)
        files.add(entry["file"])
        previous_end = 0.0
        for exp in entry["expected"]:
            assert exp["phrase"] in grammar.phrases[exp["command"]]
            assert previous_end <= exp["start_s"] < exp["end_s"] <= entry["audio_s"]
            previous_end = exp["end_s"]
        assert bool(entry["expected"]) == (entry["kind"] not in NEGATIVE_KINDS)
    assert len(files) == len(manifest)  # no file listed twice
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.wav")
               if p.relative_to(FIXTURES).parts[0] != "ko"}
    assert on_disk == files  # and no stray file left out of the manifest


def test_every_phrase_in_six_voices_at_three_speeds(manifest: list[dict[str, Any]]) -> None:
    grammar = load_grammar("en")
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for entry in of_kind(manifest, "command"):
        seen[entry["expected"][0]["phrase"]].add((entry["voice"], entry["speed"]))
    for phrase in grammar.all_phrases():
        voices = {v for v, _ in seen[phrase]}
        speeds = {s for _, s in seen[phrase]}
        assert len(voices) >= 6 and len(speeds) >= 3 and len(seen[phrase]) >= 18, phrase
    assert any(v == "joe" for combos in seen.values() for v, _ in combos)


def test_noise_levels_negatives_sentences_and_streams_are_there(
        manifest: list[dict[str, Any]]) -> None:
    grammar = load_grammar("en")
    for snr in (20, 10, 5):
        phrases = {e["expected"][0]["phrase"] for e in of_kind(manifest, "noisy")
                   if e["snr_db"] == snr}
        assert phrases == set(grammar.all_phrases()), snr
    cues = of_kind(manifest, "coach_cue")
    assert len({e["text"] for e in cues}) >= 5
    never = {e["text"] for e in of_kind(manifest, "never_word")}
    assert never == set(grammar.never)
    assert of_kind(manifest, "noise") and of_kind(manifest, "silence")
    assert len(of_kind(manifest, "sentence")) >= 10
    for entry in of_kind(manifest, "coach_cue", "chatter"):
        assert grammar.command_phrases_in(entry["text"]) == [], entry["text"]
    streams = of_kind(manifest, "stream")
    assert len(streams) >= 3
    for entry in streams:
        assert 30 <= entry["audio_s"] <= 90 and len(entry["expected"]) >= 5


def test_phrase_times_are_where_the_speech_is(manifest: list[dict[str, Any]]) -> None:
    """Inside [start_s, end_s] a clean clip is speech; outside it, only the -70 dBFS floor."""
    for entry in of_kind(manifest, "command")[::7]:
        audio = read_wav_16k(FIXTURES / entry["file"]).astype(np.float64) / 32768.0
        exp = entry["expected"][0]
        lo, hi = int(exp["start_s"] * 16000), int(exp["end_s"] * 16000)
        inside = np.sqrt(np.mean(audio[lo:hi] ** 2))
        outside = np.sqrt(np.mean(np.concatenate([audio[:lo - 80], audio[hi + 80:]]) ** 2))
        assert 20 * np.log10(inside) > -26.0, entry["file"]  # levelled to -20 dBFS
        assert 20 * np.log10(outside) < -60.0, entry["file"]


def test_generator_is_checked_in_with_the_data() -> None:
    text = (FIXTURES / "generate.py").read_text(encoding="utf-8")
    assert "def main" in text and "manifest.json" in text
    assert Path(FIXTURES / "README.md").is_file()


# --- through the real recognisers: the spotter (the default) and pocketsphinx ---

HIT_SLACK_S = 0.5  # a detection counts for an expected phrase if it overlaps it within this
#: Every third clean command clip (each voice and speed keeps a third of the phrases, a different
#: third each time) keeps the run short; VOICECOACH_FULL_FIXTURES=1 scores all 720.
CLEAN_STRIDE = 3
FULL_ENV = "VOICECOACH_FULL_FIXTURES"


ENGINES = ("spotter", "pocketsphinx")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def recogniser(engine: str) -> Any:
    engines = pytest.importorskip("voicecoach.listening.engines")
    from voicecoach.settings import SpeechSettings

    grammar = load_grammar("en")
    rec = engines.make_recogniser(SpeechSettings(engine=engine), grammar)
    rec.set_commands(grammar.commands)
    return rec


def detect(rec: Any, rel: str, chunk_s: float = 0.1) -> list[Any]:
    from voicecoach.audio.wav import AudioFileSource
    from voicecoach.commands.listen import listen_to

    return listen_to(rec, AudioFileSource(FIXTURES / rel, chunk_s).chunks())[0]


def score(entry: dict[str, Any], found: list[Any]) -> tuple[int, int]:
    """(expected phrases heard as their command, detections that match nothing expected)."""
    used: set[int] = set()
    hits = 0
    for exp in entry["expected"]:
        for i, d in enumerate(found):
            if (i not in used and d.command == exp["command"]
                    and d.start_s < exp["end_s"] + HIT_SLACK_S
                    and d.end_s > exp["start_s"] - HIT_SLACK_S):
                used.add(i)
                hits += 1
                break
    return hits, len(found) - len(used)


#: The files that must yield nothing: scored in the default run (a few dozen seconds).
SCORED_NEGATIVES = ("coach_cue", "silence", "noise")


@pytest.fixture(scope="module")
def results(recogniser: Any, engine: str, manifest: list[dict[str, Any]]
            ) -> dict[str, dict[str, float]]:
    """Recall and false detections per kind (noisy per SNR) over every fixture file."""
    clean = of_kind(manifest, "command")
    every = 1 if os.environ.get(FULL_ENV) else CLEAN_STRIDE
    return _score(recogniser, engine, clean[::every]
                  + [e for e in manifest if e["kind"] != "command"], every)


@pytest.fixture(scope="module")
def negatives(recogniser: Any, engine: str, manifest: list[dict[str, Any]]
              ) -> dict[str, dict[str, float]]:
    """False detections on the files that hold no command (coach cues, silence, noise)."""
    return _score(recogniser, engine, [e for e in manifest if e["kind"] in SCORED_NEGATIVES], 0)


def _score(recogniser: Any, engine: str, entries: list[dict[str, Any]], every: int
           ) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for entry in entries:
        kind = entry["kind"] if entry["kind"] != "noisy" else f"noisy{entry['snr_db']}"
        hits, extra = score(entry, detect(recogniser, entry["file"]))
        groups = [kind] + ([f"command:{entry['voice']}"] if kind == "command" else [])
        for group in groups:
            row = totals[group]
            row["files"] += 1
            row["expected"] += len(entry["expected"])
            row["hits"] += hits
            row["false"] += extra
            row["files_with_false"] += extra > 0
    for row in totals.values():
        row["recall"] = row["hits"] / row["expected"] if row["expected"] else float("nan")
    print(f"\nfixture results ({engine}, every {every} clean clip):")
    for kind, row in sorted(totals.items()):
        print(f"  {kind:<30} files {int(row['files']):4d}  recall {row['recall']:.3f}  "
              f"false detections {int(row['false'])} in {int(row['files_with_false'])} files")
    return totals


#: Floors per engine, from the whole fixture set (print them with
#: `pytest -s tests/test_fixtures.py`); what each engine reaches, set a little below, never
#: tuned per file: raise them as the engines improve.
#: pocketsphinx (2026-11-21): clean recall 0.278 overall, 0.81 for the Piper voice and 0.12 to
#: 0.24 for the espeak-ng voices; 0.375 / 0.30 / 0.175 at 20 / 10 / 5 dB; coach cues: false
#: commands in 3 of 16 files.
#: spotter (2026-12-04, the head retrained on 1,393 real speakers, with its second look):
#: clean recall 0.188 overall (espeak-ng voices 0.15 to 0.175: their speech is trained on only
#: as other speech, and Whisper hears these formant voices poorly); 0.20 / 0.20 / 0.175 at
#: 20 / 10 / 5 dB; coach cues: no false command in 16 files. Piper joe's commands are in the
#: training corpus, so joe is no test of recognition for the spotter (it has no floor here).
#: Real people are what it is for: the locked test speakers' figures are in
#: voicecoach/listening/spotter/MODEL_CARD.md.
FLOORS: dict[str, dict[str, float]] = {
    "pocketsphinx": {"clean": 0.25, "piper": 0.75, "noisy20": 0.30, "cue_false_files": 3},
    "spotter": {"clean": 0.15, "noisy20": 0.15, "cue_false_files": 0},
}


# The recall floors score some 500 files per engine (about 15 minutes of CPU on a loaded
# 2-core machine): a benchmark, run by CI's separate `pytest -m slow` step.
@pytest.mark.slow
def test_clean_command_clips_are_heard(engine: str, results: dict[str, dict[str, float]]
                                       ) -> None:
    assert results["command"]["recall"] >= FLOORS[engine]["clean"]
    if "piper" in FLOORS[engine]:       # not for a model trained on the Piper voice
        assert results["command:joe"]["recall"] >= FLOORS[engine]["piper"]


@pytest.mark.slow
def test_commands_under_treadmill_noise(engine: str, results: dict[str, dict[str, float]]
                                        ) -> None:
    assert results["noisy20"]["recall"] >= FLOORS[engine]["noisy20"]
    # more noise never helps: recall falls (or stays) as the SNR falls
    assert results["noisy20"]["recall"] >= results["noisy5"]["recall"]


def test_coach_cues_yield_nothing(engine: str, negatives: dict[str, dict[str, float]]) -> None:
    """The target is 0; the floor is what the engine reaches today (see above)."""
    assert negatives["coach_cue"]["files_with_false"] <= FLOORS[engine]["cue_false_files"]


def test_silence_and_noise_yield_nothing(negatives: dict[str, dict[str, float]]) -> None:
    assert negatives["silence"]["false"] == 0
    assert negatives["noise"]["false"] == 0


@pytest.mark.slow
def test_result_does_not_depend_on_the_chunk_size(engine: str, manifest: list[dict[str, Any]]
                                                  ) -> None:
    """10, 100 and 500 ms chunks give the same commands at the same times. Each chunk size gets
    a fresh recogniser fed the same files in the same order (the engine carries its channel
    estimate from file to file, so the history must match too)."""
    engines = pytest.importorskip("voicecoach.listening.engines")
    from voicecoach.settings import SpeechSettings

    grammar = load_grammar("en")
    entries = of_kind(manifest, "command")[::37] + of_kind(manifest, "stream")[:1]
    runs = []
    for chunk_s in (0.01, 0.1, 0.5):
        rec = engines.make_recogniser(SpeechSettings(engine=engine), grammar)
        rec.set_commands(grammar.commands)
        runs.append([[(d.command, d.phrase, d.start_s, d.end_s)
                      for d in detect(rec, entry["file"], chunk_s)] for entry in entries])
    assert any(runs[1]), "nothing was heard at all"
    assert runs[0] == runs[1] == runs[2]
