"""The belt controller's safety rules against a simulated treadmill with belt physics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from belt_helpers import BELT_PLAN, DRIVE, BeltRun, with_quirks

from voicecoach.device import sayings
from voicecoach.events import DeviceProblem, StateChanged, TargetChanged
from voicecoach.phrases import load_phrases
from voicecoach.settings import CoachSettings, TreadmillSettings
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op
from voicecoach.treadmill.ftms_data import Range
from voicecoach.treadmill.sim import BeltModel, SimTreadmill
from voicecoach.workout.machine import State
from voicecoach.workout.plan import Plan


def test_belt_starts_only_after_three_yeses_and_ready() -> None:
    run = BeltRun().briefed()
    assert run.coach.state is State.WARMUP and run.coach.awaiting_turn
    run.at(run.t + 10)
    assert run.writes() == []  # briefed, but no "ready" yet: nothing moves
    run.say("yes", "ready")
    run.at(run.t + 8)
    ops = [c.op for _, c in run.writes()]
    assert ops[:3] == [Op.REQUEST_CONTROL, Op.START_RESUME, Op.SET_TARGET_SPEED]
    speeds = run.speeds_written_mph()  # very slowly first, then up to the warm-up's speed
    assert speeds[0] == pytest.approx(0.5, abs=0.01) and speeds[-1] == pytest.approx(1.0, abs=0.01)
    assert speeds == sorted(speeds) and len(speeds) > 2
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)


def test_no_write_when_ready_was_never_said() -> None:
    run = BeltRun().briefed()
    run.at(run.t + 90)  # three reminders, then the clock runs anyway
    assert not run.coach.awaiting_turn
    assert run.writes() == []


def test_faster_moves_one_step_and_the_next_waits_for_the_belt() -> None:
    run = BeltRun().walking()
    started = len(run.writes(Op.SET_TARGET_SPEED))
    run.say("faster")
    run.say("faster")  # at once: the second step waits until the belt shows the first
    first = run.writes(Op.SET_TARGET_SPEED)[started:]
    assert [round(float(c.value or 0) / KMH_PER_MPH, 1) for _, c in first] == [1.1]
    run.at(run.t + 6)
    speeds = run.speeds_written_mph()[started - 1:]
    assert speeds == [1.0, 1.1, 1.2]
    t_first, t_second = (t for t, _ in run.writes(Op.SET_TARGET_SPEED)[started:])
    assert t_second - t_first >= 0.3  # 0.16 km/h at 0.5 km/h/s, confirmed by a reading
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05)


def test_targets_stay_under_the_treadmill_settings_top_speed() -> None:
    run = BeltRun(settings=TreadmillSettings(control="drive", top_speed_mph=1.1)).walking()
    for _ in range(4):
        run.say("faster")
        run.at(run.t + 5)
    assert max(run.speeds_written_mph()) <= 1.1 + 1e-6
    assert run.belt_mph() <= 1.1 + 0.01


def test_speed_below_the_treadmill_range_is_its_slowest_and_said() -> None:
    model = BeltModel(speed_range=Range(2.0, 10.0, 0.1))  # 1.24 mph: above the warm-up's 1.0
    run = BeltRun(model).walking()
    assert [c.value for _, c in run.writes(Op.SET_TARGET_SPEED)] == [2.0]
    assert sayings.BELOW_RANGE in run.said()
    slow = BeltRun(BeltModel(speed_range=Range(2.5, 10.0, 0.1))).walking()  # above 1.5 mph
    assert slow.writes() == [] and sayings.TOO_FAST_FOR_PLAN in slow.said()


def test_stop_is_written_at_the_moment_stop_is_heard() -> None:
    run = BeltRun().walking()
    run.at(run.t + 3.3)
    heard = run.t
    run.say("stop")
    assert run.coach.state is State.STOPPED
    assert run.writes(Op.STOP_PAUSE)[-1] == (heard, run.writes(Op.STOP_PAUSE)[-1][1])
    assert run.writes(Op.STOP_PAUSE)[-1][1].value == 1
    run.at(run.t + 10)
    assert run.model.speed_kmh == 0.0


def test_pause_and_resume_map_to_ftms_pause_and_start() -> None:
    run = BeltRun().walking()
    run.say("pause")
    assert run.writes()[-1][1].value == 2
    run.at(run.t + 5)
    assert run.model.state == "paused" and run.model.speed_kmh == 0.0
    before = len(run.writes())
    run.say("resume")
    assert run.writes()[before][1].op is Op.START_RESUME
    run.at(run.t + 6)
    assert run.model.state == "running"
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)


def test_resume_restarts_the_belt_very_slowly_then_steps_back_up() -> None:
    # COACHING.md: start the belt at a very slow speed (0.5 mph), then small steps, no jumps
    run = BeltRun().walking()
    for _ in range(2):
        run.say("faster")
        run.at(run.t + 5)
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05)
    run.say("pause")
    run.at(run.t + 5)
    assert run.model.speed_kmh == 0.0
    before = len(run.writes())
    run.say("resume")
    after = run.writes()[before:]
    assert after[0][1].op is Op.START_RESUME
    run.at(run.t + 1.0)
    assert run.belt_mph() <= 0.5 + 0.05  # not on its way back to 1.2 at once
    run.at(run.t + 10)
    after = run.writes()[before:]
    kmh = [float(c.value or 0) for _, c in after if c.op is Op.SET_TARGET_SPEED]
    assert kmh and kmh[0] <= 0.5 * KMH_PER_MPH + 0.01
    assert all(b - a <= 0.2 + 1e-6 for a, b in zip(kmh, kmh[1:], strict=False))  # 0.2 km/h
    assert kmh[-1] / KMH_PER_MPH == pytest.approx(1.2, abs=0.05)
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05)
    # the belt restarts itself: the coach does not ask the user to (that is for a belt set by
    # hand, tests/test_machine.py)
    words = load_phrases("en")
    assert words.RESUMED in run.said() and words.RESUMED_BY_HAND not in run.said()


def test_a_phase_that_starts_on_an_incline_raises_it_one_percent_at_a_time() -> None:
    # COACHING.md: incline in small steps (1 %); week 6's blocks start at 2 % after a flat
    # warm-up
    plan = Plan("incline", (BELT_PLAN.phases[0],
                            replace(BELT_PLAN.phases[1], incline_pct=2.0, max_incline_pct=2.0)))
    run = BeltRun(plan=plan).walking().at(70)
    run.ready().at(run.t + 30)
    assert run.coach.state is State.BACKWARD and run.coach.incline_pct == 2.0
    inclines = [float(c.value or 0) for _, c in run.writes(Op.SET_TARGET_INCLINE)]
    assert inclines and inclines[-1] == 2.0
    steps = [b - a for a, b in zip([0.0, *inclines], inclines, strict=False)]
    assert all(step <= 1.0 + 1e-6 for step in steps)
    assert run.model.incline_pct == pytest.approx(2.0, abs=0.1)


def test_a_toggle_pad_is_not_paused_by_a_second_start() -> None:
    run = BeltRun(with_quirks(toggle_start=True)).walking()
    assert [c.op for _, c in run.writes()].count(Op.START_RESUME) == 1
    run.say("pause")
    run.at(run.t + 4)
    run.say("resume")
    run.at(run.t + 6)
    assert run.model.state == "running"
    assert [c.op for _, c in run.writes()].count(Op.START_RESUME) == 2


def test_the_session_ends_with_the_belt_slowed_to_a_halt() -> None:
    run = BeltRun().walking().finish()
    assert run.coach.state is State.FINISHED
    assert run.writes()[-1][1].op is Op.STOP_PAUSE
    assert run.model.speed_kmh == 0.0
    assert run.reported()[-1] == 0.0
    assert max(run.speeds_written_mph()) <= 1.5 + 1e-6


def test_the_safety_key_stops_the_coach_and_it_says_so() -> None:
    run = BeltRun().walking().at(70)
    run.ready().at(run.t + 20)  # turned round, walking backward
    assert run.coach.state is State.BACKWARD and run.belt_mph() == pytest.approx(0.6, abs=0.05)
    run.sim.schedule(run.t + 2, "safety_key")
    run.at(run.t + 4)
    assert run.coach.state is State.STOPPED
    assert sayings.SAFETY_KEY in run.said()
    assert run.writes(Op.STOP_PAUSE) == []  # the console won; nothing written over it


def test_console_stop_and_pause_win() -> None:
    run = BeltRun().walking()
    run.sim.schedule(run.t + 1, "pause")
    run.at(run.t + 2)
    assert run.coach.state is State.PAUSED and sayings.CONSOLE_PAUSED in run.said()
    run.sim.schedule(run.t + 1, "start")
    run.at(run.t + 2)
    assert run.coach.state is State.WARMUP
    run.sim.schedule(run.t + 1, "stop")
    run.at(run.t + 2)
    assert run.coach.state is State.STOPPED and sayings.CONSOLE_HALTED in run.said()
    assert [c.op for _, c in run.writes()].count(Op.START_RESUME) == 1


def test_a_console_speed_becomes_the_target_and_above_the_plan_is_said() -> None:
    run = BeltRun().walking()
    written = len(run.writes())
    run.sim.schedule(run.t + 1, "speed", 1.3 * KMH_PER_MPH)
    run.at(run.t + 3)
    assert run.coach.speed_mph == pytest.approx(1.3, abs=0.01)
    assert not any("above today's plan" in s for s in run.said())
    run.sim.schedule(run.t + 1, "speed", 2.0 * KMH_PER_MPH)  # the warm-up's top is 1.5
    run.at(run.t + 6)
    assert run.coach.speed_mph == pytest.approx(2.0, abs=0.01)
    assert any("above today's plan" in s for s in run.said())
    assert len(run.writes()) == written  # the coach did not fight the console
    assert not run.say("faster")  # and will not go higher


def test_a_pad_that_reads_mph_with_the_units_setting() -> None:
    settings = TreadmillSettings(control="drive", target_units="mph")
    run = BeltRun(with_quirks(reads_mph=True), settings=settings).walking()
    run.say("faster")
    run.at(run.t + 6)
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)
    raw = [float(c.value or 0) for _, c in run.writes(Op.SET_TARGET_SPEED)]
    assert raw[0] == pytest.approx(0.5, abs=0.03)  # the very slow start, read as mph
    assert raw[-2:] == [pytest.approx(1.0, abs=0.03), pytest.approx(1.1, abs=0.03)]


def test_a_pad_that_refuses_speed_control() -> None:
    run = BeltRun(with_quirks(refuses_speed=True)).walking()
    run.say("faster")
    run.say("incline_up") if run.coach.phase and run.coach.phase.max_incline_pct else None
    run.at(run.t + 5)
    assert run.said().count(sayings.NO_SPEED_CONTROL) == 1
    assert len(run.writes(Op.SET_TARGET_SPEED)) == 1  # tried once, then left to the console
    assert run.coach.speed_mph == pytest.approx(1.1)  # the coach still announces targets
    assert run.model.state == "running"
    run.say("stop")
    assert run.writes()[-1][1].op is Op.STOP_PAUSE


def test_control_not_permitted_is_said_once_and_the_session_goes_on() -> None:
    run = BeltRun(with_quirks(denies_control=True)).walking()
    run.say("faster")
    run.at(run.t + 5)
    assert run.said().count(sayings.NOT_PERMITTED) == 1
    assert sayings.BELT_NOT_STARTED not in run.said()   # the refusal's line says what to do
    assert run.coach.state is State.WARMUP
    assert any(isinstance(e, DeviceProblem) and "not permitted" in e.problem for e in run.events)


def test_nonsense_readings_are_ignored() -> None:
    run = BeltRun().walking()
    run.sim.schedule(run.t + 0.5, "nonsense", 25.0)
    run.sim.schedule(run.t + 1.5, "nonsense", -3.0)
    run.at(run.t + 3)
    assert max(run.reported()) < 2.0
    assert run.coach.state is State.WARMUP
    problems = [e for e in run.events if isinstance(e, DeviceProblem)]
    assert len(problems) == 1 and "implausible" in problems[0].problem


def test_announce_mode_never_writes_and_still_reports_the_belt() -> None:
    sim = SimTreadmill()
    run = BeltRun(sim=sim, settings=TreadmillSettings(control="announce"))
    run.briefed().at(run.t + 2)
    assert not run.coach.awaiting_turn  # no "ready" step: the coach does not start the belt
    sim.schedule(run.t + 1, "start")
    sim.schedule(run.t + 2, "speed", 1.2 * KMH_PER_MPH)
    run.at(run.t + 10)
    run.say("faster")
    run.at(run.t + 5)
    assert run.writes() == []
    assert run.reported()[-1] == pytest.approx(1.2)


def test_stop_from_every_belt_state_writes_stop_and_a_stopped_session_stays_quiet() -> None:
    for setup in ("walking", "paused"):
        run = BeltRun().walking()
        if setup == "paused":
            run.say("pause")
        run.say("stop")
        assert run.writes()[-1][1].op is Op.STOP_PAUSE and run.writes()[-1][1].value == 1
        count = len(run.writes())
        run.at(run.t + 30)
        assert len(run.writes()) == count
        assert [e.dest for e in run.events if isinstance(e, StateChanged)][-1] == "stopped"


def test_coach_top_speed_also_caps_the_belt() -> None:
    run = BeltRun(coach=CoachSettings(top_speed_mph=1.0), settings=DRIVE).walking()
    assert not run.say("faster")
    assert max(run.speeds_written_mph()) <= 1.0 + 1e-6


def test_nothing_the_coach_says_about_the_belt_names_a_command() -> None:
    from voicecoach.grammar import grammar_dir, load_grammar

    texts = [v for k, v in vars(sayings).items() if k.isupper() and isinstance(v, str)]
    texts += [q for pair in sayings.DRIVEN_CHECKS for q in pair]
    for path in sorted(grammar_dir().glob("*.json")):
        grammar = load_grammar(path=path)
        for text in texts:
            if "say " in text.lower():  # a prompt names its answers, never stop
                assert not set(grammar.command_phrases_in(text)) & {"stop"}, text
            else:
                assert grammar.command_phrases_in(text) == [], text


def test_ready_before_the_link_is_up_starts_the_belt_when_it_comes_up() -> None:
    sim = SimTreadmill(connect_at=20.0)
    run = BeltRun(sim=sim).briefed().ready()
    assert run.writes() == [] and sayings.NOT_CONNECTED in run.said()
    run.at(25)
    assert [c.op for _, c in run.writes()][:3] == [Op.REQUEST_CONTROL, Op.START_RESUME,
                                                   Op.SET_TARGET_SPEED]


def test_pain_slows_the_belt_even_below_the_phase_window() -> None:
    run = BeltRun(BeltModel(speed_range=Range(0.5, 16.0, 0.1))).walking().at(70)
    run.ready().at(run.t + 10)
    assert run.coach.state is State.BACKWARD  # window 0.5 - 1.0, at 0.6
    run.say("pain")
    run.at(run.t + 5)
    assert run.coach.speed_mph == pytest.approx(0.4)
    assert run.speeds_written_mph()[-1] == pytest.approx(0.4)  # 0.6 km/h, the range's step
    assert run.belt_mph() == pytest.approx(0.4, abs=0.06)


def test_the_belt_hears_a_stop_before_any_other_listener() -> None:
    """The history (which may wait for a locked database) and the printed output hear the
    coach's events after the belt: a stop is written first."""
    from voicecoach.events import Event
    from voicecoach.grammar import load_grammar
    from voicecoach.workout.coach import Coach

    sim = SimTreadmill()
    seen: list[int] = []

    def history_like(event: Event) -> None:
        if isinstance(event, StateChanged) and event.dest == State.STOPPED.value:
            seen.append(len(sim.log.of(Op.STOP_PAUSE)))

    from belt_helpers import BELT_PLAN

    from voicecoach.device.belt import BeltController

    coach = Coach(BELT_PLAN, CoachSettings(), load_grammar("en"), [history_like],
                  followers=[BeltController.follow(sim, DRIVE)])
    run = BeltRun(sim=sim)
    run.coach, run.belt = coach, coach.followers[0]  # type: ignore[assignment]
    run.walking()
    run.say("stop")
    assert seen == [1], "the stop must be written before the history hears of it"


def test_a_stray_stop_with_the_belt_still_writes_nothing() -> None:
    run = BeltRun()
    run.at(2.0)
    run.say("stop")                   # idle, the belt still: nothing to stop
    run.at(3.0)
    assert run.writes() == []


def test_a_faster_refused_as_control_not_permitted_puts_the_target_back() -> None:
    """The pad answers "control not permitted" to a "faster" (1.0 -> 1.1 mph) mid-walk:
    said once (NOT_PERMITTED), and the coach's target goes back to the treadmill's last
    confirmed 1.0, as for any write not taken, with no second line; the next "faster" (the
    pad's control back) writes 1.1, not 1.2. Before, the target stayed at the refused 1.1."""
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    run.sim.schedule(run.t, "deny", 0.3)
    run.say("faster")
    run.at(run.t + 12)
    assert run.speeds_written_mph() == [*started, 1.1]
    assert run.coach.speed_mph == pytest.approx(1.0)
    assert any(isinstance(e, TargetChanged) and e.why == "not_taken" for e in run.events)
    assert run.said().count(sayings.NOT_PERMITTED) == 1
    assert sayings.BELT_NOT_TAKEN not in run.said()        # the refusal's line says enough
    run.say("faster")
    run.at(run.t + 6)
    assert run.speeds_written_mph() == [*started, 1.1, 1.1]
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)
    assert run.coach.speed_mph == pytest.approx(1.1)
