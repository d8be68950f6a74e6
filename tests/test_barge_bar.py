"""The over-speech stop bar's choice (lab.bench.barge_bar) on hand-made traced trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicecoach.lab.bench import barge_bar


def look(t: float, stop: float, first: str = "stop", over: bool = True) -> dict[str, Any]:
    scores = {first: stop if first == "stop" else 0.5, "stop": stop, "faster": 0.0}
    return {"t": t, "over": over, "scores": scores}


def stop_trial(looks: list[dict[str, Any]], caught: bool = False, echo: str = "nlms",
               echo_looks: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"word": "stop", "speaker": "dev", "echo": echo, "placed": True, "caught": caught,
            "latency_s": 0.1 if caught else None, "word_s": [1.0, 1.5], "looks": looks,
            "echo_looks": list(echo_looks)}


CARD = 0.015


def test_a_lower_bar_catches_the_stops_whose_look_over_the_coach_it_clears() -> None:
    rows = [stop_trial([look(1.6, 0.006)]), stop_trial([look(1.6, 0.002)]),
            stop_trial([], caught=True),
            stop_trial([look(2.2, 0.01)]),                 # 0.7 s after the word: late
            stop_trial([look(1.6, 0.006, over=False)]),    # clear of the coach: the card's bar
            stop_trial([look(1.6, 0.006, first="faster")]),  # named from another candidate
            stop_trial([look(1.6, 0.006)], echo="none")]   # no-echo rows are not replayed
    got = {b: barge_bar.replay(rows, b, CARD) for b in (0.001, 0.005, CARD)}
    assert [got[b]["caught"] for b in (0.001, 0.005, CARD)] == [3, 2, 1]
    assert {g["stops"] for g in got.values()} == {6}


def test_the_bar_lets_no_look_at_the_coachs_voice_through_and_pays_for_other_words() -> None:
    stops = [stop_trial([look(1.6, s)]) for s in (0.0025, 0.0045, 0.008, 0.02)]
    echo = [stop_trial([], caught=True, echo_looks=(look(9.0, 0.0035),))]
    bar, table = barge_bar.choose(stops + echo, CARD)
    assert bar == pytest.approx(0.004)  # 0.002-0.003 would pass the coach's own 0.0035
    assert all(t["echo_false"] == (1 if t["bar"] <= 0.0035 else 0) for t in table)
    # another word said over the coach and looked at as stop at 0.005: a false stop from 0.005
    # down, which costs 40 x its rate against 10 x the stop it would catch
    words = [{"word": "up", "speaker": "dev", "echo": "nlms", "placed": True, "word_s": [1.0, 1.4],
              "looks": [look(1.5, 0.005)], "echo_looks": []}]
    bar, _ = barge_bar.choose(stops + echo + words, CARD)
    assert bar > 0.005


def test_locked_speakers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.lab.training.data import is_locked

    speaker = next(f"{n:08x}" for n in range(1000) if is_locked(f"{n:08x}"))
    trials = tmp_path / "t.jsonl"
    trials.write_text(json.dumps({**stop_trial([]), "speaker": speaker}) + "\n", encoding="utf-8")
    assert barge_bar.main([str(trials)]) == 2
    assert "locked speakers" in capsys.readouterr().err
    assert barge_bar.main([str(tmp_path / "missing.jsonl")]) == 2
    trials.write_text('{"placed": true, "echo": "nlms"}\n[1, 2]\n', encoding="utf-8")
    assert barge_bar.main([str(trials)]) == 2
    assert "not a traced barge-in row" in capsys.readouterr().err
