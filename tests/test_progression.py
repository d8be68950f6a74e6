"""Progression over simulated weeks of history recorded in a real database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from history_helpers import Device

from voicecoach.events import (
    CueSpoken,
    DeviceProblem,
    PainReported,
    PhaseStarted,
    SessionEnded,
)
from voicecoach.history import HistoryDB, SessionRecorder, plan_next_session
from voicecoach.phrases import load_phrases
from voicecoach.settings import CoachSettings
from voicecoach.workout.plan import Plan

MONDAY = dt.date(2026, 1, 5)
DEFAULT = CoachSettings()
#: The ladder worked out by hand from COACHING.md and the programme table: (week, backward
#: minutes, speed mph, incline %). Minutes first (1 a session, up to the week's minutes), then
#: speed (0.1 up to the week's top), then incline, then the next week; after week 6, speed on
#: to the 2.5 mph top speed, then hold.
LADDER = [
    (1, 5, 0.5, 0), (1, 5, 0.6, 0), (1, 5, 0.7, 0), (1, 5, 0.8, 0),
    (2, 6, 0.8, 0), (2, 7, 0.8, 0), (2, 7, 0.9, 0), (2, 7, 1.0, 0),
    (3, 8, 1.0, 0), (3, 9, 1.0, 0), (3, 10, 1.0, 0), (3, 10, 1.1, 0), (3, 10, 1.2, 0),
    (3, 10, 1.3, 0),
    (4, 11, 1.3, 0), (4, 12, 1.3, 0), (4, 12, 1.4, 0), (4, 12, 1.5, 0), (4, 12, 1.5, 1),
    (5, 13, 1.5, 1), (5, 14, 1.5, 1), (5, 15, 1.5, 1), (5, 15, 1.6, 1), (5, 15, 1.7, 1),
    (5, 15, 1.7, 2),
    (6, 15, 1.8, 2), (6, 15, 1.9, 2), (6, 15, 2.0, 2),
    (6, 15, 2.1, 2), (6, 15, 2.2, 2), (6, 15, 2.3, 2), (6, 15, 2.4, 2), (6, 15, 2.5, 2),
    (6, 15, 2.5, 2),
]


def dose(plan: Plan) -> tuple[int | None, float, float, float]:
    """(week, backward minutes, speed, incline) of a plan, checking its blocks agree."""
    backward = [p for p in plan.phases if p.kind == "backward"]
    assert len({(p.speed_mph, p.incline_pct) for p in backward}) == 1
    return plan.week, plan.backward_s / 60, backward[0].speed_mph, backward[0].incline_pct


def walk(db: HistoryDB, plan: Plan, day: dt.date | None, *, done: float = 1.0,
         pain: bool = False, outcome: str = "finished", source: str = "run",
         fault: str = "", fault_in: str = "") -> None:
    """Record a session of ``plan`` on ``day`` (None: started now by the device's clocks, as
    `run` and `serve` start one): phase by phase, walking ``done`` of the backward time, with
    a pain report early on if asked, ending as ``outcome``; or, with ``fault`` (the part:
    "coach", "recogniser"), ended by a fault inside voicecoach as the device loop records
    one (voicecoach/device/loop_faults.py: the DeviceProblem, the sentence said, the record
    ended as stopped without a SessionEnded): where the walking stopped, or with ``fault_in``
    (a phase kind) 30 s into the first phase of that kind begun after it."""
    started = None if day is None else dt.datetime.combine(day, dt.time(7, 30))
    rec = SessionRecorder.open(db, plan, source, started_at=started)
    budget, walked, t, state = done * plan.backward_s, 0.0, 0.0, "briefing"
    for index, phase in enumerate(plan.phases):
        rec.on_event(PhaseStarted(t=t, state=phase.kind, index=index, kind=phase.kind,
                                  duration_s=phase.duration_s, speed_mph=phase.speed_mph,
                                  min_speed_mph=phase.min_speed_mph,
                                  max_speed_mph=phase.max_speed_mph,
                                  incline_pct=phase.incline_pct))
        state = phase.kind
        if fault_in == phase.kind and walked >= budget - 1e-9:
            t += 30.0
            break
        if phase.kind != "backward":
            t += phase.duration_s
            continue
        if pain and walked == 0:
            rec.on_event(PainReported(t=t + 30, state="backward", phrase="my knee hurts"))
        length = min(phase.duration_s, budget - walked)
        walked, t = walked + length, t + length
        rec.on_event(CueSpoken(t=t, state="backward", text="Nice and upright.", kind="cue"))
        if walked >= budget - 1e-9 and (done < 1 or fault) and not fault_in:
            break
    if fault:
        rec.on_event(DeviceProblem(t=t, state=state, device=fault,
                                   problem="internal fault while ticking the workout: "
                                           "RuntimeError: a bug", extra={"at": "coach.py:1"}))
        rec.on_event(CueSpoken(t=t, state=state, kind="warning",
                               text="Something went wrong, so I halted the belt."))
        rec.end("stopped")
        rec.close()
        return
    if outcome == "interrupted":
        rec.close("interrupted")
        return
    speed = max(p.speed_mph for p in plan.phases if p.kind == "backward")
    rec.on_event(SessionEnded(t=t, state="done", outcome=outcome, backward_s=walked, total_s=t,
                              min_speed_mph=speed, max_speed_mph=speed, summary=""))


def session_days(weeks: int) -> list[dt.date]:
    """Five sessions a week: Monday, Tuesday, Wednesday, Friday, Saturday."""
    return [MONDAY + dt.timedelta(days=7 * w + d) for w in range(weeks) for d in (0, 1, 2, 4, 5)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[HistoryDB]:
    with HistoryDB.open(tmp_path) as opened:
        yield opened


def test_six_weeks_of_steady_progress_climb_the_ladder(db: HistoryDB) -> None:
    days = session_days(7)[: len(LADDER)]
    plans = []
    for day in days:
        plan = plan_next_session(db, DEFAULT, day)
        plans.append(plan)
        walk(db, plan, day)
    assert [dose(p) for p in plans] == [(w, float(m), s, float(i)) for w, m, s, i in LADDER]
    assert plans[0].notes == ("This is your first session, so we ease in gently.",
                              "Today: 5 minutes at 0.5 mph.")
    assert plans[1].notes == ("Last time you did 5 minutes at 0.5 mph; today we aim for "
                              "0.6 mph.",)
    assert plans[4].notes == ("Last time you did 5 minutes at 0.8 mph; today we aim for 6.",
                              "Welcome to week 2 of the programme.")
    assert plans[18].notes == ("Last time you did 12 minutes at 1.5 mph; today we add incline: "
                               "1 percent.",)
    assert plans[-1].notes == ("Last time you did 15 minutes at 2.5 mph. You are at the top of "
                               "the programme, so we keep this dose.",)
    for plan in plans:  # a whole session: warm-up first, cool-down last, blocks of <= 10 min
        assert plan.phases[0].kind == "warmup" and plan.phases[-1].kind == "cooldown"
        assert all(p.duration_s <= 600 for p in plan.phases if p.kind == "backward")
        assert all(p.speed_mph <= DEFAULT.top_speed_mph for p in plan.phases)


def test_missed_weeks_step_back_then_restart(db: HistoryDB) -> None:
    days = session_days(2)
    for day in days:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    assert dose(plan_next_session(db, DEFAULT, days[-1] + dt.timedelta(days=7))) == (
        3, 10, 1.0, 0)  # a week off is not a break: progress as usual
    back_day = days[-1] + dt.timedelta(days=10)
    back = plan_next_session(db, DEFAULT, back_day)
    assert dose(back) == (2, 7.0, 0.8, 0.0)
    assert back.notes == ("It has been 10 days, so we step back a little.",
                          "Today: 7 minutes at 0.8 mph.")
    walk(db, back, back_day)
    after = plan_next_session(db, DEFAULT, back_day + dt.timedelta(days=2))
    assert dose(after) == (2, 7.0, 0.9, 0.0)  # and climbs again from there
    walk(db, after, back_day + dt.timedelta(days=2))
    restart = plan_next_session(db, DEFAULT, back_day + dt.timedelta(days=27))
    assert dose(restart) == (1, 5.0, 0.5, 0.0)
    assert restart.notes[0] == "It has been 25 days, so we return to week 1."


def test_pain_holds_then_eases_off(db: HistoryDB) -> None:
    days = session_days(3)
    for day in days[:12]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    sore = plan_next_session(db, DEFAULT, days[12])
    assert dose(sore) == (3, 10.0, 1.2, 0.0)
    walk(db, sore, days[12], pain=True)
    held = plan_next_session(db, DEFAULT, days[13])
    assert dose(held) == dose(sore)
    assert held.notes == ("Your knees bothered you last time, so we hold the same dose.",
                          "Today: 10 minutes at 1.2 mph.")
    walk(db, held, days[13], pain=True)
    eased = plan_next_session(db, DEFAULT, days[14])
    assert dose(eased) == (3, 10.0, 1.1, 0.0)
    assert eased.notes[0] == ("Your knees bothered you last time, and the time before, so we "
                              "ease off a little.")
    walk(db, eased, days[14])
    assert dose(plan_next_session(db, DEFAULT, days[14] + dt.timedelta(days=1))) == (
        3, 10.0, 1.2, 0.0)


def test_early_stops_hold_and_cut_off_sessions_repeat(db: HistoryDB) -> None:
    days = session_days(2)
    for day in days[:5]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    plan = plan_next_session(db, DEFAULT, days[5])
    assert dose(plan) == (2, 7.0, 0.8, 0.0)
    walk(db, plan, days[5], done=3 / 7, outcome="stopped")
    again = plan_next_session(db, DEFAULT, days[6])
    assert dose(again) == dose(plan)
    assert again.notes[0] == "You ended after 3 of 7 minutes last time, so we hold the same dose."
    walk(db, again, days[6], done=0.9, outcome="stopped")  # 90 %: close enough, progress
    nearly = plan_next_session(db, DEFAULT, days[7])
    assert dose(nearly) == (2, 7.0, 0.9, 0.0)
    walk(db, nearly, days[7], done=0.5, outcome="interrupted")
    [last] = db.sessions()[-1:]
    assert (last.status, last.backward_s) == ("interrupted", pytest.approx(210.0))
    repeat = plan_next_session(db, DEFAULT, days[8])
    assert dose(repeat) == dose(nearly)
    assert repeat.notes[0] == "Your last session was cut off after 4 minutes, so we do it again."


#: What the coach says first after a session a fault of its own ended.
FAULT_NOTE = "A fault of mine ended your last session, so we plan without it."


def test_a_session_ended_by_a_fault_of_voicecoach_is_planned_as_if_it_had_not_happened(
        db: HistoryDB) -> None:
    """A fault inside voicecoach (the workout or the listening, loop_faults.py) ends the
    session as stopped: it is no evidence of what the user can take. It was read as the user
    ending early ("You ended after 3 of 7 minutes"), holding the dose, and a second one in a
    row eased it off. The next plan is the one the history without it gives, said after one
    sentence that owns the fault; the sessions stay in the history."""
    days = session_days(2)
    for day in days[:5]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    planned = plan_next_session(db, DEFAULT, days[5])
    assert dose(planned) == (2, 7.0, 0.8, 0.0)
    walk(db, planned, days[5], done=3 / 7, fault="coach")
    retry = plan_next_session(db, DEFAULT, days[5])
    walk(db, retry, days[5], done=2 / 7, fault="recogniser")
    after = plan_next_session(db, DEFAULT, days[6])

    sessions = db.sessions()
    assert [round(s.backward_s) for s in sessions[-2:]] == [180, 120]  # over IGNORE_BELOW_S
    for plan, day, history in ((retry, days[5], sessions[:-2]), (after, days[6], sessions[:-2])):
        without = plan_next_session(history, DEFAULT, day)
        assert plan.phases == without.phases and plan.week == without.week
        assert plan.notes == (FAULT_NOTE, *without.notes)
    assert dose(retry) == dose(planned) and dose(after) == (2, 7.0, 0.8, 0.0)
    assert after.notes == (FAULT_NOTE, "Last time you did 6 minutes at 0.8 mph; today we aim "
                                       "for 7.")
    for plan in (retry, after):
        assert not any(note.startswith("You ended") for note in plan.notes), plan.notes
    # kept in the history, stopped, read as ended by the device
    assert [(s.status, s.fault, s.ended_on_fault) for s in sessions[-2:]] == [
        ("stopped", "coach", True), ("stopped", "recogniser", True)]
    # a good walk after it: planned from that walk, and nothing said of the fault any more
    walk(db, after, days[6])
    assert plan_next_session(db, DEFAULT, days[7]).notes[0].startswith("Last time you did 7")


def test_pain_in_a_session_a_fault_ended_still_counts(db: HistoryDB) -> None:
    """Pain is about the user, not the device: a pain report in a session that a fault of
    voicecoach ended holds the dose as any pain does (safety first). The fault session before
    it counts for nothing: not as an early stop that, with the pain, eased the dose off."""
    days = session_days(2)
    for day in days[:5]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    planned = plan_next_session(db, DEFAULT, days[5])
    walk(db, planned, days[5], done=3 / 7, fault="coach")
    sore = plan_next_session(db, DEFAULT, days[6])
    assert dose(sore) == dose(planned) == (2, 7.0, 0.8, 0.0)
    walk(db, sore, days[6], done=2 / 7, pain=True, fault="coach")
    held = plan_next_session(db, DEFAULT, days[7])
    assert dose(held) == dose(sore)  # neither a step up (pain ignored) nor eased off
    assert held.notes == ("Your knees bothered you last time, so we hold the same dose.",
                          "Today: 7 minutes at 0.8 mph.")
    [last] = db.sessions()[-1:]
    assert (last.ended_on_fault, last.pain_reports) == (True, 1)
    # and it is the time before for the next session that goes badly: twice, eased off
    walk(db, held, days[7], done=0.5, outcome="stopped")
    eased = plan_next_session(db, DEFAULT, days[8])
    assert dose(eased) == (2, 7.0, 0.7, 0.0)
    assert eased.notes[0] == ("You ended after 4 of 7 minutes last time, and the time before, "
                              "so we ease off a little.")


def test_the_coach_s_first_words_after_a_fault_do_not_blame_the_user(db: HistoryDB) -> None:
    """What the coach says as the next session begins (the plan's notes, in the briefing)
    owns the fault and does not say the user ended early."""
    from workout_helpers import Run

    from voicecoach.workout.machine import State

    days = session_days(2)
    for day in days[:3]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    walk(db, plan_next_session(db, DEFAULT, days[3]), days[3], done=0.5, fault="coach")
    run = Run(plan_next_session(db, DEFAULT, days[4]))
    run.coach.begin(0.0)
    assert run.coach.state is State.BRIEFING
    said = [e.text for e in run.events if isinstance(e, CueSpoken)]
    first = said[:said.index(load_phrases("en").BRIEFING_INTRO)]
    assert first == [FAULT_NOTE, "Last time you did 5 minutes at 0.7 mph; today we aim for "
                                 "0.8 mph."]


#: What the coach says first after a session a fault of its own ended in the cool-down.
COOLDOWN_NOTE = "A fault of mine cut your last cool-down short; your walk still counts."


def test_a_fault_in_the_cool_down_counts_as_the_dose_walked(db: HistoryDB) -> None:
    """A fault in the cool-down came after every backward block was walked: the next session
    is planned from it as from the same walk finished (it was left out, so the user walked
    that dose again), said after one sentence that owns the fault; its pain counts as always,
    and the history still shows that the device faulted."""
    days = session_days(2)
    for day in days[:5]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    planned = plan_next_session(db, DEFAULT, days[5])
    assert dose(planned) == (2, 7.0, 0.8, 0.0)
    walk(db, planned, days[5], fault="coach", fault_in="cooldown")
    after = plan_next_session(db, DEFAULT, days[6])

    *before, last = db.sessions()
    finished = plan_next_session([*before, replace(last, status="finished", fault="")],
                                 DEFAULT, days[6])
    assert dose(after) == dose(finished) == (2, 7.0, 0.9, 0.0)  # on the old code: 0.8 again
    assert after.notes == (COOLDOWN_NOTE, *finished.notes)
    assert after.notes[1] == "Last time you did 7 minutes at 0.8 mph; today we aim for 0.9 mph."
    assert (last.status, last.outcome, last.fault, round(last.backward_s)) == (
        "stopped", "device fault", "coach", 420)
    assert last.fault_phase == "cooldown"
    # pain in such a session counts as any pain: the dose held, the fault still owned
    walk(db, after, days[6], pain=True, fault="recogniser", fault_in="cooldown")
    held = plan_next_session(db, DEFAULT, days[7])
    assert dose(held) == dose(after)
    assert held.notes == (COOLDOWN_NOTE,
                          "Your knees bothered you last time, so we hold the same dose.",
                          "Today: 7 minutes at 0.9 mph.")
    # a good walk after it: nothing said of the fault any more
    walk(db, held, days[7])
    assert plan_next_session(db, DEFAULT, days[8]).notes[0].startswith("Last time you did 7")


@pytest.mark.parametrize(("done", "fault_in"), [
    (1.0, ""),            # every block walked, but the cool-down had not begun: before it
    (6 / 11, "recovery"),  # in the easy walk between the two backward blocks
])
def test_a_fault_before_the_cool_down_still_leaves_the_session_out(
        db: HistoryDB, done: float, fault_in: str) -> None:
    """Only a cool-down begun (its phase_started recorded before the fault) counts: a fault
    as the last block ends, or between two blocks, leaves the session out as before."""
    days = session_days(4)
    for day in days[:14]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    planned = plan_next_session(db, DEFAULT, days[14])
    assert dose(planned) == (4, 11.0, 1.3, 0.0)
    assert [p.kind for p in planned.phases] == [
        "warmup", "backward", "recovery", "backward", "cooldown"]
    walk(db, planned, days[14], done=done, fault="coach", fault_in=fault_in)
    again = plan_next_session(db, DEFAULT, days[15])
    *before, last = db.sessions()
    assert (last.outcome, last.fault_phase) == ("device fault", fault_in or "backward")
    without = plan_next_session(before, DEFAULT, days[15])
    assert dose(again) == dose(without) == dose(planned)
    assert again.notes == (FAULT_NOTE, *without.notes)


def test_a_fault_in_the_only_session_is_no_first_session_said_twice(db: HistoryDB) -> None:
    """A fault in the very first session: week 1 again, its notes not calling the next one
    the first, after the sentence that says the last one ended on a fault."""
    walk(db, plan_next_session(db, DEFAULT, MONDAY), MONDAY, done=0.5, fault="recogniser")
    again = plan_next_session(db, DEFAULT, MONDAY)
    assert dose(again) == (1, 5.0, 0.5, 0.0)
    assert again.notes == (FAULT_NOTE, "Today: 5 minutes at 0.5 mph.")


def test_top_speed_is_never_exceeded(db: HistoryDB) -> None:
    slow = CoachSettings(top_speed_mph=0.7, units="kmh")
    plans = []
    for day in session_days(2)[:6]:
        plan = plan_next_session(db, slow, day)
        plans.append(plan)
        walk(db, plan, day)
    assert [dose(p) for p in plans] == [(1, 5, 0.5, 0), (1, 5, 0.6, 0), (1, 5, 0.7, 0),
                                        (2, 6, 0.7, 0), (2, 7, 0.7, 0), (3, 8, 0.7, 0)]
    assert all(p.max_speed_mph <= 0.7 for plan in plans for p in plan.phases)
    assert plans[3].notes == ("Last time you did 5 minutes at 1.1 km/h; today we aim for 6.",
                              "Welcome to week 2 of the programme.",
                              "You are at your top speed of 1.1 km/h.")


def test_demo_and_replay_sessions_do_not_count(db: HistoryDB) -> None:
    day = MONDAY
    walk(db, plan_next_session(db, DEFAULT, day), day, source="demo")
    walk(db, plan_next_session(db, DEFAULT, day), day, source="replay")
    assert dose(plan_next_session(db, DEFAULT, day)) == (1, 5.0, 0.5, 0.0)
    tomorrow = day + dt.timedelta(days=1)  # (the ladder steps up at most once a day)
    assert dose(plan_next_session(db, DEFAULT, tomorrow, sources=("demo",))) == (1, 5.0, 0.6, 0.0)


def test_a_second_session_on_the_same_day_repeats_the_dose(db: HistoryDB) -> None:
    """COACHING.md: three or four sessions a week, up to daily. Two good sessions on one day
    step the ladder up once, not twice; the next day it goes on from there."""
    walk(db, plan_next_session(db, DEFAULT, MONDAY), MONDAY)
    tuesday = MONDAY + dt.timedelta(days=1)
    first = plan_next_session(db, DEFAULT, tuesday)
    walk(db, first, tuesday)
    again = plan_next_session(db, DEFAULT, tuesday)
    assert dose(again) == dose(first) == (1, 5.0, 0.6, 0.0)
    assert again.notes == ("You already walked today, so we keep the same dose.",
                           "Today: 5 minutes at 0.6 mph.")
    walk(db, again, tuesday)
    assert dose(plan_next_session(db, DEFAULT, tuesday + dt.timedelta(days=1))) == \
        (1, 5.0, 0.7, 0.0)
    # a same-day session that went badly is still held or eased off by its own rule
    walk(db, plan_next_session(db, DEFAULT, MONDAY + dt.timedelta(days=3)),
         MONDAY + dt.timedelta(days=3), pain=True)
    hard = plan_next_session(db, DEFAULT, MONDAY + dt.timedelta(days=3))
    assert hard.notes[0].startswith("Your knees bothered you last time")


def test_a_list_of_sessions_works_like_the_database(db: HistoryDB) -> None:
    for day in session_days(1):
        walk(db, plan_next_session(db, DEFAULT, day), day)
    later = MONDAY + dt.timedelta(days=8)
    from_db = plan_next_session(db, DEFAULT, later)
    from_list = plan_next_session(db.sessions(), DEFAULT, later)
    assert from_db == from_list and dose(from_db) == (2, 7.0, 0.8, 0.0)


@pytest.fixture(autouse=True)
def _notes_never_name_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every note the briefing would speak, in every scenario here, names no command of any
    grammar (the coach must not trigger itself, nor say the stop word)."""
    from voicecoach.grammar import grammar_dir, load_grammar
    from voicecoach.history import progression

    grammars = [load_grammar(path=p) for p in sorted(grammar_dir().glob("*.json"))]
    real = progression.plan_for

    def checked(d, s, notes):  # type: ignore[no-untyped-def]
        for note in notes:
            for grammar in grammars:
                assert grammar.command_phrases_in(note) == [], note
            assert "stop" not in note.lower(), note
        return real(d, s, notes)

    monkeypatch.setattr(progression, "plan_for", checked)


def test_the_notes_are_said_in_the_coach_s_language(db: HistoryDB) -> None:
    """Every rule's notes come from the phrase file: planned for a Korean coach, the same
    history gives the same doses, explained in Korean only."""
    import re

    from voicecoach.phrases import load_phrases

    ko = load_phrases("ko")
    notes: list[str] = []

    def plan(day: dt.date) -> Plan:
        english, korean = (plan_next_session(db, DEFAULT, day, language=lang) for lang in ("en", "ko"))
        assert dose(korean) == dose(english) and len(korean.notes) == len(english.notes)
        notes.extend(korean.notes)
        return korean

    days = session_days(7)
    for day in days[:len(LADDER)]:  # first session, minutes, speed, incline, new weeks, the top
        walk(db, plan(day), day)
    later = days[len(LADDER) - 1]
    for gap, kwargs in ((1, {"pain": True}), (1, {"pain": True}), (1, {"done": 0.3, "outcome": "stopped"}),
                        (1, {"done": 0.5, "outcome": "interrupted"}),
                        (1, {"done": 0.5, "fault": "coach"}),
                        (1, {"fault": "coach", "fault_in": "cooldown"}), (1, {}), (10, {}),
                        (25, {})):
        later += dt.timedelta(days=gap)
        walk(db, plan(later), later, **kwargs)
    assert ko.PLAN_FIRST in notes and ko.PLAN_NEW_WEEK.format(week=2) in notes
    assert ko.PLAN_RESTART.format(days=25) in notes and ko.PLAN_STEP_BACK.format(days=10) in notes
    for key in ("PLAN_HARD_ONCE", "PLAN_HARD_TWICE", "PLAN_CUT_OFF", "PLAN_FAULT",
                "PLAN_FAULT_COOLDOWN", "PLAN_AT_TOP", "PLAN_MORE_MINUTES", "PLAN_MORE_SPEED",
                "PLAN_MORE_INCLINE"):
        head = ko.texts[key].split("{")[0] or ko.texts[key].split("}")[-1]
        assert any(head in note for note in notes), key
    for note in notes:
        assert re.search(r"[\uac00-\ud7a3]", note) and not re.search(r"[A-Za-z]", note), note



#: A Raspberry Pi's clock before NTP sets it, with no time saved at shutdown.
UNSET_DAY = dt.date(1970, 1, 1)


def test_a_session_stamped_before_the_clock_was_set_is_still_the_last_one(db: HistoryDB) -> None:
    """A Pi has no real-time clock: a session recorded before NTP set it is stamped 1970. It
    sorted as the oldest, so its knee pain was passed over and the ladder stepped up from
    the session before it. It is the last session walked, by the order it was recorded."""
    days = session_days(1)
    for day in days[:4]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    sore = plan_next_session(db, DEFAULT, days[4])
    walk(db, sore, UNSET_DAY, pain=True)
    held = plan_next_session(db, DEFAULT, days[4] + dt.timedelta(days=1))
    assert dose(held) == dose(sore)
    assert held.notes[0] == "Your knees bothered you last time, so we hold the same dose."


@pytest.mark.parametrize("clock", ["unset", "a day behind"])
def test_a_clock_behind_the_last_session_keeps_the_dose(db: HistoryDB, clock: str) -> None:
    """Just after boot the clock may be 1970 (nothing saved) or the last shutdown's time
    (fake-hwclock): "today" is before the last session. Every session after "today" was
    skipped: a 1970 clock sent the user back to week 1, a day-behind one a step back. They
    count by their order; with no date to say a day has passed, the dose is kept."""
    days = session_days(2)
    for day in days[:8]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    today = UNSET_DAY if clock == "unset" else days[6]
    plan = plan_next_session(db, DEFAULT, today)
    assert dose(plan) == (2, 7.0, 1.0, 0.0)  # the last session's dose (LADDER[7])
    assert plan.notes == ("I cannot tell the date yet, so we keep the same dose.",
                          "Today: 7 minutes at 1.0 mph.")


def test_after_an_unknown_date_the_ladder_goes_on_from_the_next_dated_session(
        db: HistoryDB) -> None:
    """The held session (stamped 1970) counts like any other: once a session has a date
    again, the ladder climbs from there, one step a day."""
    days = session_days(2)
    for day in days[:3]:
        walk(db, plan_next_session(db, DEFAULT, day), day)
    held = plan_next_session(db, DEFAULT, UNSET_DAY)
    walk(db, held, UNSET_DAY)
    assert dose(held) == (1, 5.0, 0.7, 0.0)
    again = plan_next_session(db, DEFAULT, days[3])
    assert dose(again) == dose(held)  # the 1970 session's own date is unknown: held once more
    walk(db, again, days[3])
    assert dose(plan_next_session(db, DEFAULT, days[4])) == (1, 5.0, 0.8, 0.0)


# ---------------------------------------------------------------- a clock never set: the boot clock
HOUR = 3600.0
#: A Pi with no network and nothing saved at shutdown: its clock starts at 1970 every boot
#: and is never set, so every session it records is "date unknown".
NEVER_SET = dt.datetime(1970, 1, 1, 0, 0, 30).astimezone()


def plan_now(db: HistoryDB, device: Device, language: str = "en") -> Plan:
    """The next session as `run` and `serve`'s "start" plan it: today is the wall clock's
    date, this boot's clock is read (dating.boot_now, the device's)."""
    return plan_next_session(db, DEFAULT, device.wall.date(), language=language)


@pytest.mark.parametrize("hours", [19, 20, 23, 25])
def test_a_pi_whose_clock_is_never_set_steps_up_once_a_day_has_passed_by_the_boot_clock(
        db: HistoryDB, monkeypatch: pytest.MonkeyPatch, hours: int) -> None:
    """Every date was unknown, so the dose was held for ever and the programme never moved.
    The device stays on between walks: the seconds since boot stored at the last start tell
    how long ago it was. From 20 h on it is another day (a daily walk started half an hour
    earlier than the day before, 23 h, counts), and the notes name no day; before, it is the
    same day, said without claiming the calendar's "today"."""
    device = Device(monkeypatch, NEVER_SET)
    walk(db, plan_now(db, device), None)
    assert [s.date_known for s in db.sessions()] == [False]
    device.wait(hours * HOUR)
    plan = plan_now(db, device)
    if hours < 20:
        assert dose(plan) == (1, 5.0, 0.5, 0.0)
        assert plan.notes == ("You walked less than a day ago, so we keep the same dose.",
                              "Today: 5 minutes at 0.5 mph.")
        assert plan_now(db, device, "ko").notes[0] == "걸으신 지 아직 하루가 안 됐으니 같은 양을 유지합니다."
    else:
        assert dose(plan) == (1, 5.0, 0.6, 0.0)
        assert plan.notes == ("Last time you did 5 minutes at 0.5 mph; today we aim for 0.6 mph.",)


def test_a_pi_whose_clock_is_never_set_climbs_one_step_a_day_morning_and_evening(
        db: HistoryDB, monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk each morning and evening, the device on throughout and its clock never set: the
    ladder climbs once a day, as with dates. The evening walk (12 h on) repeats the dose; the
    next morning is only 12 h after it, but 24 h after the walk that began the day, so the
    ladder steps up; a morning walk started two hours earlier (22 h) still does."""
    device = Device(monkeypatch, NEVER_SET)
    doses, notes = [], []
    for gap_h in (12, 12, 12, 10, 14, 12):  # am, pm, am, pm, am (2 h earlier), pm, am
        plan = plan_now(db, device)
        doses.append(dose(plan))
        notes.append(plan.notes[0])
        walk(db, plan, None)
        device.wait(gap_h * HOUR)
    doses.append(dose(plan_now(db, device)))
    held = "You walked less than a day ago, so we keep the same dose."
    assert doses == [(1, 5.0, 0.5, 0.0), (1, 5.0, 0.5, 0.0), (1, 5.0, 0.6, 0.0), (1, 5.0, 0.6, 0.0),
                     (1, 5.0, 0.7, 0.0), (1, 5.0, 0.7, 0.0), (1, 5.0, 0.8, 0.0)]
    assert notes[1] == notes[3] == notes[5] == held and held not in (notes[2], notes[4])


def test_across_a_reboot_an_unknown_date_keeps_the_dose_then_the_new_boot_counts(
        db: HistoryDB, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seconds since one boot say nothing about another: after a reboot (the Pi has been
    up 30 h again before the next walk), with no date, the dose is held as before. The walk
    in the new boot is then where its clock counts from: a day later, the ladder climbs."""
    device = Device(monkeypatch, NEVER_SET, boot_id="boot-0")
    walk(db, plan_now(db, device), None)
    device.boot_id, device.since_boot, device.wall = "boot-1", 30 * HOUR, NEVER_SET
    held = plan_now(db, device)
    assert dose(held) == (1, 5.0, 0.5, 0.0)
    assert held.notes[0] == "I cannot tell the date yet, so we keep the same dose."
    walk(db, held, None)
    device.wait(25 * HOUR)
    assert dose(plan_now(db, device)) == (1, 5.0, 0.6, 0.0)
    device.boot_id = ""  # a kernel that gives no boot id: no boot clock to count by
    assert plan_now(db, device).notes[0] == "I cannot tell the date yet, so we keep the same dose."


@pytest.mark.parametrize(("days", "expected", "note"), [
    (8, (2, 7.0, 0.8, 0.0), "It has been 8 days, so we step back a little."),
    (22, (1, 5.0, 0.5, 0.0), "It has been 22 days, so we return to week 1."),
])
def test_a_long_break_measured_by_the_boot_clock_is_a_break(
        db: HistoryDB, monkeypatch: pytest.MonkeyPatch, days: int,
        expected: tuple[int, float, float, float], note: str) -> None:
    """A week and more off, the device on but its clock never set since the network went:
    the days off are real, counted in whole 24 h by the boot clock, and ease the dose off as
    dated ones do (COACHING.md: build up again after time off), never held as if it were the
    next day."""
    for day in session_days(2)[:10]:  # dated sessions, then the clock is lost: in week 3
        walk(db, plan_next_session(db, DEFAULT, day), day)
    device = Device(monkeypatch, NEVER_SET)
    walk(db, plan_now(db, device), None)  # held: the clock is behind the last date
    device.wait(days * 24 * HOUR + HOUR)
    plan = plan_now(db, device)
    assert dose(plan) == expected and plan.notes[0] == note
