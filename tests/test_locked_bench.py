"""The locked-speaker benchmark: its scoring, and a tiny run end to end through listen."""

from __future__ import annotations

import os

import pytest
from conftest import FIXTURES

from voicecoach.lab.bench import locked

SHARED = FIXTURES.parent.parent / "shared"


def test_scoring_counts_hits_misses_false_accepts_and_latency() -> None:
    truth = {
        "a.wav": {"word": "stop", "speaker": "s1", "command": "stop", "end_s": 1.2, "audio_s": 2.0},
        "b.wav": {"word": "stop", "speaker": "s2", "command": "stop", "end_s": 1.1, "audio_s": 2.0},
        "c.wav": {"word": "up", "speaker": "s3", "command": "", "end_s": 1.0, "audio_s": 2.0},
        "d.wav": {"word": "_silence_", "speaker": "noise-x", "command": "", "end_s": 0.0, "audio_s": 2.0},
        "e.wav": {"word": "go", "speaker": "s1", "command": "resume", "end_s": 1.0, "audio_s": 2.0},
    }
    results = [
        {"file": "a.wav", "commands": [{"command": "stop", "emitted_s": 1.3}]},
        {"file": "b.wav", "commands": [{"command": "faster", "emitted_s": 1.2}]},
        {"file": "c.wav", "commands": [{"command": "stop", "emitted_s": 1.1}]},
        {"file": "d.wav", "commands": []},
        {"file": "e.wav", "commands": [{"command": "resume", "emitted_s": 1.05}]},
    ]
    figs = locked.score(results, truth)
    assert figs["recall"]["stop"] == {"rate": 0.5, "heard": 1, "clips": 2}
    assert figs["recall"]["go"]["heard"] == 1
    assert figs["false_accepts_words"] == {"rate": 1.0, "accepts": 1, "clips": 1}
    assert figs["false_accepts_noise"] == {"accepts": 0, "clips": 1}
    assert figs["stop_latency_s"]["median"] == pytest.approx(0.1)
    assert figs["speakers"] == 3


@pytest.mark.skipif(not (SHARED / "speech_commands").is_dir(),
                    reason="../shared/speech_commands is not beside this checkout")
def test_every_locked_clip_is_a_locked_speaker_and_a_tiny_run_prints_its_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.lab.training.data import is_locked

    dev = str(SHARED / "speech_commands")
    clips = locked.locked_clips([SHARED / "speech_commands"])
    assert clips and all(is_locked(spk) for _, _, spk in clips)
    before = dict(os.environ)
    code = locked.main(["--limit", "1", "--verify", "off", "--speech-commands-train", dev,
                        "--speech-commands", dev])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("locked speakers (") and "through listen" in out
    # the children's home and config are theirs: this process's environment is untouched
    assert os.environ.get("VOICECOACH_CONFIG") == before.get("VOICECOACH_CONFIG")
    assert os.environ.get("VOICECOACH_HOME") == before.get("VOICECOACH_HOME")
