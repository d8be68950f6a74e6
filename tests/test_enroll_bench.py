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
