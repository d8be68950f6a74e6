"""Cue texts against every grammar, and the cue engine's rotation and spacing."""

from __future__ import annotations

import pytest
from workout_helpers import Run

from voicecoach.events import CueSpoken
from voicecoach.grammar import grammar_dir, load_grammar
from voicecoach.settings import CoachSettings
from voicecoach.workout import cues
from voicecoach.workout.cues import CUE_SETS, CueEngine
from voicecoach.workout.machine import State
from voicecoach.workout.plan import programme_week

GRAMMARS = [load_grammar(path=p) for p in sorted(grammar_dir().glob("*.json"))]
#: Fixed sentences the coach says that are not questions: they must name no command at all.
STATEMENTS = [v for k, v in vars(cues).items() if k.isupper() and isinstance(v, str)
              and "Say " not in v and k not in ("STOP_SPELLED",)]
PROMPTS = [v for k, v in vars(cues).items() if k.isupper() and isinstance(v, str) and "Say " in v]


def _all_cue_texts() -> list[str]:
    return [text for cue_set in CUE_SETS.values() for _, text in cue_set]


@pytest.mark.parametrize("grammar", GRAMMARS, ids=lambda g: g.language)
def test_no_cue_or_statement_contains_a_command_phrase(grammar) -> None:  # type: ignore[no-untyped-def]
    for text in _all_cue_texts() + STATEMENTS:
        assert grammar.command_phrases_in(text) == [], text


@pytest.mark.parametrize("grammar", GRAMMARS, ids=lambda g: g.language)
def test_the_coach_never_says_the_stop_word(grammar) -> None:  # type: ignore[no-untyped-def]
    stop_phrases = set(grammar.phrases["stop"])
    spoken = Run(programme_week(4)).finish().of(CueSpoken)
    helpful = Run().into(State.BACKWARD)
    helpful.say("help")
    texts = [e.text for e in spoken + helpful.of(CueSpoken)] + PROMPTS
    for text in texts:
        assert not stop_phrases & set(grammar.command_phrases_in(text)), text


def test_every_sentence_said_in_a_session_is_checked() -> None:
    grammar = load_grammar("en")
    for event in Run(programme_week(6)).finish().of(CueSpoken):
        if event.kind in ("cue", "announcement", "summary"):
            assert grammar.command_phrases_in(event.text) == [], event.text


def test_clash_check_can_fail() -> None:
    grammar = load_grammar("en")
    assert grammar.command_phrases_in("Now go a little faster, then stop.") == [
        "stop", "go", "faster"]


def test_cues_are_short() -> None:
    for text in _all_cue_texts():
        assert len(text.split()) <= 12, text


def test_rotation_never_repeats_within_the_window() -> None:
    settings = CoachSettings(cue_no_repeat=4)
    engine = CueEngine(settings)
    seen = [engine.next(float(i), "technique") for i in range(30)]
    ids = [c.cue_id for c in seen if c]
    assert len(ids) == 30
    for i, cue_id in enumerate(ids):
        assert cue_id not in ids[max(0, i - 4):i]
    assert set(ids) == {cid for cid, _ in CUE_SETS["technique"]}


def test_engine_waits_for_quiet_and_interval() -> None:
    settings = CoachSettings(min_gap_s=15, cue_interval_s=45)
    engine = CueEngine(settings)
    assert not engine.due(now=10, quiet_since=0, cue_set="technique")
    assert engine.due(now=15, quiet_since=0, cue_set="technique")
    engine.next(15, "technique")
    assert not engine.due(now=50, quiet_since=0, cue_set="technique")
    assert engine.due(now=60, quiet_since=0, cue_set="technique")
    assert not engine.due(now=60, quiet_since=50, cue_set="technique")
    assert not engine.due(now=1000, quiet_since=0, cue_set="none")


def test_durations_and_speeds_are_spoken_naturally() -> None:
    assert cues.duration_text(300) == "5 minutes"
    assert cues.duration_text(90) == "1 minute 30"
    assert cues.duration_text(40) == "40 seconds"
    assert cues.speed_text(0.5, "mph") == "0.5 miles per hour"
    assert cues.speed_text(0.5, "kmh") == "0.8 kilometres per hour"
