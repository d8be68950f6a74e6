"""The held-out-voices benchmark: what it samples, and its one line for a missing corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicecoach.lab.bench import voices


def _corpus(folder: Path) -> Path:
    rows = [{"family": fam, "kind": kind, "command": "faster", "path": f"{fam}/{kind}/{n}.wav"}
            for fam in ("flite-rms", "espeak-en-us", "festival-ked_diphone")
            for kind in ("positive", "sentence") for n in range(5)]
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_only_command_clips_of_held_out_families_are_sampled_seeded(tmp_path: Path) -> None:
    synth = _corpus(tmp_path)
    clips = voices.held_out_clips(synth, ["flite-rms", "festival-ked_diphone"], per_family=3)
    assert len(clips) == 6
    assert {c["family"] for c in clips} == {"flite-rms", "festival-ked_diphone"}
    assert {c["kind"] for c in clips} == {"positive"}
    assert clips == voices.held_out_clips(synth, ["flite-rms", "festival-ked_diphone"], 3)


def test_a_corpus_without_held_out_voices_or_no_corpus_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert voices.main(["--synth", str(tmp_path / "absent")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no synthetic corpus" in err[0] and "Traceback" not in err[0]
    synth = tmp_path / "c"
    synth.mkdir()
    (synth / "manifest.jsonl").write_text(json.dumps(
        {"family": "espeak-en-us", "kind": "positive", "command": "faster", "path": "x.wav"}) + "\n")
    assert voices.main(["--synth", str(synth)]) != 0
    assert "no command clips of the held-out voices" in capsys.readouterr().err
