"""The coach over whole sessions on the simulated clock: phases, limits, cues, announcements."""

from __future__ import annotations

from dataclasses import replace

from workout_helpers import Run

from voicecoach.events import (
    CommandRefused,
    CueSpoken,
    PainReported,
    PhaseStarted,
    SessionEnded,
    StateChanged,
    TargetChanged,
)
from voicecoach.settings import CoachSettings
from voicecoach.workout.coach import QUESTION_TIMEOUT_S, TURN_ASKS
from voicecoach.workout.cues import CUE_SETS
from voicecoach.workout.machine import State
from voicecoach.workout.plan import programme_week


def test_full_15_minute_session_runs_the_exact_phases() -> None:
    plan = programme_week(6)
    assert plan.backward_s == 15 * 60
    run = Run(plan).finish()
    kinds = [e.kind for e in run.of(PhaseStarted)]
    assert kinds == ["warmup", "backward", "recovery", "backward", "cooldown"]
    states = [e.dest for e in run.of(StateChanged)]
    assert states == ["briefing", "warmup", "backward", "recovery", "backward", "cooldown",
                      "finished"]
    ended = run.of(SessionEnded)
    assert len(ended) == 1 and ended[0].outcome == "finished"
    assert abs(ended[0].backward_s - 900) <= 2  # 1 s steps
    assert abs(ended[0].total_s - plan.total_s) <= 5


def test_sessions_are_deterministic() -> None:
    a = [e.to_dict() for e in Run(programme_week(3)).finish().events]
    b = [e.to_dict() for e in Run(programme_week(3)).finish().events]
    assert a == b and len(a) > 50


def test_faster_stops_at_the_plans_top_speed_and_says_so() -> None:
    run = Run(programme_week(1)).into(State.BACKWARD).answer_turn()
    speeds = []
    for _ in range(6):
        run.say("faster")
        speeds.append(run.coach.speed_mph)
    assert max(speeds) == 0.8  # week 1: 0.5 to 0.8 mph
    refusal = run.of(CommandRefused)[-1]
    assert refusal.command == "faster" and refusal.reason == "That is the top speed for today."
    assert run.of(CueSpoken)[-1].text == refusal.reason


def test_settings_top_speed_caps_the_plan() -> None:
    settings = CoachSettings(top_speed_mph=1.6)
    run = Run(programme_week(6, settings), settings).into(State.BACKWARD).answer_turn()
    assert run.coach.speed_mph <= 1.6
    for _ in range(10):
        run.say("faster")
    assert run.coach.speed_mph == 1.6
    assert run.of(CommandRefused)[-1].command == "faster"


def test_slower_stops_at_the_plans_lowest_speed() -> None:
    run = Run(programme_week(2)).into(State.BACKWARD).answer_turn()
    for _ in range(5):
        run.say("slower")
    assert run.coach.speed_mph == 0.8
    assert "slowest" in run.of(CommandRefused)[-1].reason


def test_incline_stays_within_the_plan() -> None:
    run = Run(programme_week(4)).into(State.BACKWARD).answer_turn()
    assert run.say("incline_down") is False  # already flat
    assert run.say("incline_up") is True and run.coach.incline_pct == 1
    assert run.say("incline_up") is False  # week 4: 0 to 1 %
    changes = [e for e in run.of(TargetChanged) if e.why.startswith("incline")]
    assert [c.incline_pct for c in changes] == [1]


def test_pain_slows_offers_to_end_and_yes_stops() -> None:
    run = Run(programme_week(3)).into(State.BACKWARD).answer_turn()
    before = run.coach.speed_mph
    assert run.say("pain")
    assert run.of(PainReported) and run.coach.speed_mph < before
    assert run.coach.question == "pain_end"
    run.say("yes")
    assert run.coach.state is State.STOPPED and run.coach.outcome == "stopped"


def test_pain_offer_expires_and_walking_goes_on() -> None:
    run = Run(programme_week(3)).into(State.BACKWARD).answer_turn()
    run.say("pain")
    run.at(run.t + QUESTION_TIMEOUT_S + 2)
    assert run.coach.question is None and run.coach.state is State.BACKWARD


def test_phase_clock_waits_for_the_turn_then_starts_anyway() -> None:
    run = Run().into(State.BACKWARD)
    assert run.coach.awaiting_turn
    run.at(run.t + QUESTION_TIMEOUT_S * (TURN_ASKS - 1) - 1)
    assert run.coach.phase_elapsed == 0 and run.coach.awaiting_turn
    run.at(run.t + QUESTION_TIMEOUT_S + 1)
    assert not run.coach.awaiting_turn


def test_cues_are_spaced_rotated_and_present() -> None:
    settings = CoachSettings()
    run = Run(programme_week(6), settings).finish()
    spoken = run.of(CueSpoken)
    cue_ids = [e.cue_id for e in spoken if e.kind == "cue"]
    assert len(cue_ids) >= 15  # coached, not silent
    technique = [c for c in cue_ids if c in dict(CUE_SETS["technique"])]
    window = settings.cue_no_repeat
    for i, cue in enumerate(technique):
        assert cue not in technique[max(0, i - window):i], f"{cue} repeated too soon"
    # a cue never follows other speech within the quiet gap (the user is not talked at)
    wpm = run.coach.words_per_minute
    busy_until = 0.0
    for e in spoken:
        if e.kind == "cue":
            assert e.t - busy_until >= settings.min_gap_s - 1e-6, e
        busy_until = max(busy_until, e.t) + len(e.text.split()) * 60 / wpm + 0.3


def test_time_announcements_for_each_block() -> None:
    run = Run(programme_week(4)).finish()
    texts = [e.text for e in run.of(CueSpoken)]
    assert texts.count("Halfway through this block.") == 2
    assert texts.count("One minute left in this block.") == 2
    assert "Block done." in texts and "That is all the backward walking for today." in texts
    assert any(t.startswith("Backward walking 1 of 2: 6 minutes") for t in texts)
    summary = run.of(SessionEnded)[0].summary
    assert summary == "Session complete. 12 minutes backward, at 1.2 miles per hour."


def test_summary_reports_the_speed_range_in_kmh() -> None:
    settings = CoachSettings(units="kmh")
    run = Run(programme_week(2, settings), settings).into(State.BACKWARD).answer_turn()
    run.say("faster")
    run.say("faster")
    run.finish()
    assert run.of(SessionEnded)[0].summary == (
        "Session complete. 7 minutes backward, between 1.3 and 1.6 kilometres per hour.")


def test_pausing_moves_the_end_by_the_pause() -> None:
    plain = Run(programme_week(1)).finish()
    paused = Run(programme_week(1)).into(State.BACKWARD).answer_turn()
    paused.say("pause")
    paused.at(paused.t + 90)
    paused.say("resume")
    paused.finish()
    end_plain = plain.of(SessionEnded)[0].t
    end_paused = paused.of(SessionEnded)[0].t
    assert 88 <= end_paused - end_plain <= 92


def test_check_ins_are_asked_and_good_is_thanked() -> None:
    settings = replace(CoachSettings(), checkin_interval_s=120)
    run = Run(programme_week(3), settings).into(State.BACKWARD).answer_turn()
    while run.coach.question != "checkin":
        run.at(run.t + 1)
    run.say("good")
    assert run.coach.question is None
    assert run.of(CueSpoken)[-1].text == "Glad to hear it."


def test_a_broken_listener_does_not_stop_the_workout() -> None:
    run = Run(programme_week(1))

    def broken(event: object) -> None:
        raise OSError("disk gone")

    run.coach.listeners.insert(0, broken)
    run.finish()
    assert run.coach.outcome == "finished" and run.of(SessionEnded)
