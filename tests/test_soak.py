"""A few minutes of the soak benchmark: the real device loop, engine and history, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicecoach.lab.bench.soak import soak
from voicecoach.lab.bench.soak_user import SoakSpeaker


@pytest.mark.slow  # minutes of audio: CI runs it in its `pytest -m slow` step
def test_a_short_soak_runs_sessions_and_reports_every_figure(tmp_path: Path) -> None:
    # The device loop's plumbing is under test, so the engine is pinned: the retrained spotter
    # rarely hears the fixture voice's "start" (README, Known issues), and without a session
    # nothing here would run. The soak figures in the README come from the default engine.
    result = soak(0.05, session_every_min=5.0, data_dir=tmp_path, sample_every_s=30.0,
                  log=tmp_path / "soak.jsonl", engine="pocketsphinx")
    summary = result.summary()
    assert summary["audio_h"] == 0.05
    assert result.sessions_started >= 1 and result.starts_said >= 1
    assert result.sessions_ended == result.history_rows == sum(result.outcomes.values())
    assert len(result.rss_mb) >= 6 and all(mb > 0 for _, mb in result.rss_mb)
    assert len(result.fds) == len(result.rss_mb) and all(n > 0 for _, n in result.fds)
    lines = [json.loads(line) for line in (tmp_path / "soak.jsonl").read_text().splitlines()]
    assert len(lines) == len(result.rss_mb) - 2 and lines[-1]["sessions"] >= 1
    assert {"audio_s", "rss_mb", "fds", "cpu_s"} <= set(lines[0])
    assert 0 < summary["cpu_s_per_audio_s"]
    assert summary["false_commands"] == len(result.false_commands) <= result.commands_heard
    assert set(summary) >= {"rss_growth_mb_after_10min", "rss_slope_mb_per_h_after_10min",
                            "sessions_started", "sessions_ended", "false_by_command", "open_fds_end"}


def test_the_harness_forgets_old_speech_but_keeps_what_is_in_use() -> None:
    speaker = SoakSpeaker(None)
    for i in range(10):
        speaker.say(f"cue number {i}", t=i * 10.0)
        speaker.finish()
    assert len(speaker.speaking_intervals()) == 10
    speaker.forget_before(1000.0)
    assert len(speaker.speaking_intervals()) == 2
