"""Everything the coach says comes from one phrase file per language (grammars/phrases/), checked
against every grammar; a Korean session is coached in Korean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voicecoach.events import CueSpoken
from voicecoach.grammar import Grammar, grammar_dir, load_grammar
from voicecoach.phrases import Phrases, load_phrases, phrases_dir
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import AT_REST
from voicecoach.workout.plan import programme_week

GRAMMARS = [load_grammar(path=p) for p in sorted(grammar_dir().glob("*.json"))]
PHRASES = [load_phrases(g.language) for g in GRAMMARS]
#: Said only when the session is over ("Session ended early. No backward walking today."):
#: checked against what the coach listens for at rest, where "no" is not a command.
AT_REST_ONLY = {"SUMMARY_NO_BACKWARD"}
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _statements(words: Phrases) -> list[tuple[str, str]]:
    fixed = [(k, v) for k, v in words.texts.items() if k not in words.prompts | AT_REST_ONLY]
    cues = [(f"cue {cid}", text) for cue_set in words.cue_sets.values() for cid, text in cue_set]
    names = [(f"phase {k}", v) for k, v in words.phase_names.items()]
    return fixed + cues + names


def _prompts(words: Phrases) -> list[tuple[str, str]]:
    checks = [(f"check {i}", text) for i, pair in enumerate(words.briefing_checks + words.driven_checks)
              for text in pair]
    return [(k, words.texts[k]) for k in sorted(words.prompts)] + checks


def test_every_grammar_has_a_phrase_file_with_every_text() -> None:
    english = load_phrases("en")
    files = sorted(p.stem for p in phrases_dir().glob("*.json"))
    assert files == sorted(g.language for g in GRAMMARS)
    for words in PHRASES:
        assert set(words.texts) == set(english.texts), words.language
        assert words.prompts == english.prompts, words.language
        assert len(words.briefing_checks) == len(english.briefing_checks)
        assert len(words.driven_checks) == len(english.driven_checks)
        assert set(words.phase_names) == set(english.phase_names)
        assert {k: [cid for cid, _ in v] for k, v in words.cue_sets.items()} == \
            {k: [cid for cid, _ in v] for k, v in english.cue_sets.items()}


@pytest.mark.parametrize("words", PHRASES, ids=lambda w: w.language)
@pytest.mark.parametrize("grammar", GRAMMARS, ids=lambda g: g.language)
def test_no_statement_or_cue_contains_a_command_phrase(words: Phrases, grammar: Grammar) -> None:
    for key, text in _statements(words):
        assert grammar.command_phrases_in(text) == [], (key, text)
    at_rest = {c for state in AT_REST for c in grammar.commands_for(state.value)}
    for key in AT_REST_ONLY:
        heard = {c for c, phrases in grammar.phrases.items()
                 for p in grammar.command_phrases_in(words.texts[key]) if p in phrases}
        assert not heard & at_rest, (key, heard)


@pytest.mark.parametrize("words", PHRASES, ids=lambda w: w.language)
@pytest.mark.parametrize("grammar", GRAMMARS, ids=lambda g: g.language)
def test_no_prompt_says_a_stop_phrase(words: Phrases, grammar: Grammar) -> None:
    stop = set(grammar.phrases["stop"])
    for key, text in _prompts(words) + _statements(words):
        assert not stop & set(grammar.command_phrases_in(text)), (key, text)


def test_a_korean_coach_says_everything_in_korean() -> None:
    """A whole programme week in Korean, with help, pain and a refusal: every sentence the
    coach speaks is Korean (and one of the Korean file's texts or built from them)."""
    grammar = load_grammar("ko")
    spoken: list[CueSpoken] = []
    coach = Coach(programme_week(4), grammar=grammar,
                  listeners=[lambda e: spoken.append(e) if isinstance(e, CueSpoken) else None])
    coach.command("start", 0.0)
    t = 1.0
    for answer in ("help", "yes", "no", "yes", "yes", "yes"):
        coach.command(answer, t)
        t += 1.0
    while not coach.done and t < 4 * 3600:
        coach.tick(t)
        if coach.awaiting_turn:
            coach.command("yes", t)
        if int(t) % 400 == 0:
            coach.command("faster", t)
            coach.command("time_left", t)
        t += 1.0
    assert coach.outcome == "finished"
    texts = [e.text for e in spoken]
    assert len(texts) > 20
    for text in texts:
        assert HANGUL.search(text) and not re.search(r"[A-Za-z]", text), text
    words = load_phrases("ko")
    assert words.BRIEFING_INTRO in texts and words.ENDED_SAFE not in texts


def _vc(*args: str, stdin: str = "", home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOICECOACH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "voicecoach", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, env=env)


def test_demo_and_run_speak_korean_with_lang_ko(tmp_path: Path) -> None:
    words = load_phrases("ko")
    demo = _vc("demo", "--speed-up", "100000", "--lang", "ko", "--json-events", home=tmp_path)
    assert demo.returncode == 0, demo.stderr
    said = [e["text"] for e in map(json.loads, demo.stdout.splitlines()) if e["type"] == "cue_spoken"]
    assert words.BRIEFING_INTRO in said and words.briefing_checks[0][0] in said
    assert all(HANGUL.search(s) for s in said)
    run = _vc("run", "--lang", "ko", "--week", "1", "--speed-up", "50", "--json-events",
              stdin="네\n네\n네\n가속\n정지\n", home=tmp_path)
    assert run.returncode == 0, run.stderr
    events = list(map(json.loads, run.stdout.splitlines()))
    said = [e["text"] for e in events if e["type"] == "cue_spoken"]
    assert words.BRIEFING_INTRO in said and words.ENDED_SAFE in said
    assert all(HANGUL.search(s) for s in said)
    # planned from the history (no --week): the briefing's notes on the plan are Korean too
    planned = _vc("run", "--lang", "ko", "--speed-up", "50", "--json-events",
                  stdin="네\n네\n네\n정지\n", home=tmp_path)
    assert planned.returncode == 0, planned.stderr
    said = [e["text"] for e in map(json.loads, planned.stdout.splitlines())
            if e["type"] == "cue_spoken"]
    assert words.PLAN_FIRST in said and said.index(words.PLAN_FIRST) < said.index(
        words.BRIEFING_INTRO)
    assert all(HANGUL.search(s) and not re.search(r"[A-Za-z]", s) for s in said), said


def test_the_english_file_is_what_the_coach_said_before() -> None:
    """The English texts moved into the file unchanged (spot checks of each kind)."""
    en = load_phrases("en")
    assert en.BRIEFING_STOP == "To end at any moment, say S, T, O, P."
    assert en.phase_intro("backward", 2, 3, 90, 0.55, "kmh") == \
        "Backward walking 2 of 3: 1 minute 30 at 0.9 kilometres per hour."
    assert en.summary_text(300, 0.5, 0.8, "mph", "finished") == \
        "Session complete. 5 minutes backward, between 0.5 and 0.8 miles per hour."
    assert en.summary_text(0, 0.5, 0.5, "mph", "stopped") == \
        "Session ended early. No backward walking today."
    assert en.ENROLL_SAY.format(phrase="stop") == "Say: stop."  # the enrollment dialogue
    assert en.PLAN_TODAY.format(minutes="5 minutes", speed="0.5 mph", incline="") == \
        "Today: 5 minutes at 0.5 mph."  # the progression's notes
    raw = json.loads((phrases_dir() / "en.json").read_text(encoding="utf-8"))
    assert raw["language"] == "en"
