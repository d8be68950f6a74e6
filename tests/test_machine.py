"""The state machine: every transition, stop from every state, and refusals."""

from __future__ import annotations

import pytest
from workout_helpers import Run

from voicecoach.events import CommandRefused, StateChanged
from voicecoach.grammar import load_grammar
from voicecoach.workout.machine import ACTIVE, AT_REST, TRANSITIONS, State, mermaid


@pytest.mark.parametrize("state", list(State))
def test_every_state_is_reachable(state: State) -> None:
    assert Run().into(state).coach.state is state


@pytest.mark.parametrize("state", list(State))
def test_stop_from_every_state_ends_safe(state: State) -> None:
    run = Run().into(state)
    assert run.say("stop") is True  # accepted everywhere, never refused
    assert run.coach.state in (State.STOPPED, *AT_REST)
    if state in (*ACTIVE, State.PAUSED, State.BRIEFING):
        assert run.coach.state is State.STOPPED
        assert run.coach.outcome == "stopped"
    else:
        assert run.coach.state is state
    assert not run.of(CommandRefused)


def test_table_covers_stop_in_every_state() -> None:
    sources: set[State] = set()
    for rule in TRANSITIONS:
        if rule["trigger"] == "stop":
            src = rule["source"]
            sources.update(src if isinstance(src, list) else [src])
    assert sources == set(State)


@pytest.mark.parametrize("state", list(ACTIVE))
def test_pause_and_resume_return_to_the_same_state(state: State) -> None:
    run = Run().into(state)
    assert run.say("pause") and run.coach.state is State.PAUSED
    elapsed = run.coach.phase_elapsed
    run.at(run.t + 30)
    assert run.coach.phase_elapsed == elapsed  # paused time does not count
    assert run.say("resume") and run.coach.state is state


def test_lost_input_pauses_and_voice_resumes() -> None:
    run = Run().into(State.BACKWARD)
    run.coach.lose_input(run.t)
    assert run.coach.state is State.PAUSED
    run.coach.input_back(run.t + 5)
    assert run.say("resume") and run.coach.state is State.BACKWARD


def test_reset_returns_to_idle_after_a_session() -> None:
    run = Run().into(State.STOPPED)
    run.coach.reset()
    assert run.coach.state is State.IDLE
    assert run.say("start") and run.coach.state is State.BRIEFING


def test_briefing_no_repeats_the_fix_and_waits() -> None:
    run = Run()
    run.coach.begin(0)
    run.say("no")
    assert run.coach.state is State.BRIEFING and run.coach.briefing_step == 0
    run.at(600)  # nobody answers: the belt part never begins on its own
    assert run.coach.state is State.BRIEFING


def test_the_safety_points_are_said_after_the_checks_before_the_first_step() -> None:
    """COACHING.md's safety points spoken before the first step: end at once on sharp pain,
    dizziness or loss of balance; someone standing by for poor balance. Said once, after the
    last check, before the warm-up begins; never holding a command phrase (its echo)."""
    from voicecoach.events import CueSpoken, PhaseStarted
    from voicecoach.lab.training.texts import is_free_of_commands
    from voicecoach.phrases import load_phrases

    words = load_phrases("en")
    run = Run()
    run.coach.begin(0)
    for _ in range(2):
        run.at(run.t + 2)
        run.say("yes")
    assert not [e for e in run.of(CueSpoken) if e.text == words.BRIEFING_WHEN_TO_END]
    run.at(run.t + 2)
    run.say("yes")
    said = [e for e in run.events if isinstance(e, (CueSpoken, PhaseStarted))]
    [where] = [i for i, e in enumerate(said)
               if isinstance(e, CueSpoken) and e.text == words.BRIEFING_WHEN_TO_END]
    assert isinstance(said[where + 1], PhaseStarted) and said[where + 1].kind == "warmup"
    text = words.BRIEFING_WHEN_TO_END.lower()
    assert "dizziness" in text and "balance" in text and "someone" in text
    for lang in ("en", "ko"):
        assert is_free_of_commands(load_grammar(lang), load_phrases(lang).BRIEFING_WHEN_TO_END)


def test_a_phase_that_changes_the_incline_says_so() -> None:
    """The plan's incline is said where it changes (a user who sets the belt by hand is told;
    COACHING.md: incline in small steps), and not where it stays."""
    from voicecoach.events import CueSpoken, PhaseStarted
    from voicecoach.workout.plan import Phase, Plan

    plan = Plan("inclined", (Phase("warmup", 60.0, 1.2, 1.0, 2.0, cues="warmup"),
                             Phase("backward", 60.0, 1.5, 1.3, 1.7, 2.0, 2.0, "technique"),
                             Phase("recovery", 60.0, 1.2, 0.8, 1.8, cues="cooldown"),
                             Phase("cooldown", 60.0, 1.2, 0.8, 1.8, cues="cooldown")))
    run = Run(plan).through_briefing()
    while run.coach.state not in (State.FINISHED, State.STOPPED) and run.t < 2000:
        run.at(run.t + 5)
        if run.coach.awaiting_turn:
            run.say("yes")
    said = [e for e in run.events if isinstance(e, (CueSpoken, PhaseStarted))]
    inclines = []
    for i, e in enumerate(said):
        if isinstance(e, CueSpoken) and e.text.startswith("Incline now"):
            phase = next(x for x in reversed(said[:i]) if isinstance(x, PhaseStarted))
            inclines.append((phase.kind, e.text))
    assert inclines == [("backward", "Incline now 2 percent."),
                        ("recovery", "Incline now 0 percent.")], inclines


def test_resume_reminds_a_user_who_sets_the_belt_to_restart_it_very_slowly() -> None:
    """COACHING.md: start the belt at a very slow speed, then step on. Without a driven belt
    the user restarts it by hand, so "resume" says so; a driven belt restarts slowly by itself
    (tests/test_belt.py) and the coach just says "Back to it."."""
    from voicecoach.events import CueSpoken
    from voicecoach.phrases import load_phrases

    words = load_phrases("en")
    run = Run().into(State.BACKWARD)
    assert run.say("pause") and run.say("resume")
    said = [e.text for e in run.of(CueSpoken)]
    assert said[-1] == words.RESUMED_BY_HAND and "very slow" in said[-1]
    from voicecoach.lab.training.texts import is_free_of_commands

    for lang in ("en", "ko"):
        assert is_free_of_commands(load_grammar(lang), load_phrases(lang).RESUMED_BY_HAND)


@pytest.mark.parametrize(("state", "command"), [
    (State.IDLE, "faster"), (State.IDLE, "pause"), (State.IDLE, "resume"), (State.IDLE, "yes"),
    (State.BRIEFING, "faster"), (State.BRIEFING, "pause"), (State.BRIEFING, "start"),
    (State.WARMUP, "start"), (State.WARMUP, "resume"), (State.BACKWARD, "resume"),
    (State.PAUSED, "faster"), (State.PAUSED, "pause"), (State.PAUSED, "incline_up"),
    (State.FINISHED, "pause"), (State.STOPPED, "faster"), (State.BACKWARD, "dance"),
    (State.BACKWARD, "advance"),
])
def test_commands_that_make_no_sense_are_refused_aloud(state: State, command: str) -> None:
    run = Run().into(state)
    before = run.coach.state
    assert run.say(command) is False
    assert run.coach.state is before
    refused = run.of(CommandRefused)
    assert refused and refused[-1].command == command and refused[-1].reason


def test_yes_when_nothing_was_asked_is_refused() -> None:
    run = Run().into(State.WARMUP)
    assert run.say("yes") is False


def test_state_changes_are_reported_before_anything_is_said() -> None:
    run = Run()
    run.coach.begin(0)
    assert isinstance(run.events[1], StateChanged) and run.events[1].dest == "briefing"


def test_mermaid_shows_every_state_and_transition() -> None:
    text = mermaid()
    assert text.splitlines()[3].strip() == "stateDiagram-v2"
    for state in State:
        assert f'state "{state.name}"' in text
    for rule in TRANSITIONS:
        if rule["dest"] is None:
            continue
        sources = rule["source"] if isinstance(rule["source"], list) else [rule["source"]]
        for src in sources:
            assert any(line.strip().startswith(f"{src.name} --> {rule['dest'].name}:")
                       and rule["trigger"] in line for line in text.splitlines())
    assert "[internal]" not in text and "[internal]" in mermaid(include_internal=True)


def test_readme_shows_the_real_diagram() -> None:
    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == mermaid()
