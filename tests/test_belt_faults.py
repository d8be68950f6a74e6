"""The belt controller when the treadmill fails it: a lost link, writes that fail or are never
answered, commands refused; against a simulated treadmill with belt physics."""

from __future__ import annotations

import pytest
from belt_helpers import BeltRun, with_quirks

from voicecoach.device import sayings
from voicecoach.events import DeviceProblem, SessionEnded, TargetChanged
from voicecoach.treadmill.ftms import Op
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.machine import ACTIVE, State
from voicecoach.workout.plan import Phase, Plan


def test_link_lost_is_said_once_and_no_speed_is_sent_after_reconnecting() -> None:
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    assert started[-1] == 1.0
    run.sim.schedule(run.t + 1, "disconnect", 5.0)
    run.sim.schedule(run.t + 20, "disconnect", 5.0)
    run.at(run.t + 3)
    run.say("faster")  # announced; the belt cannot be told
    assert run.coach.speed_mph == pytest.approx(1.1)
    run.at(run.t + 30)
    assert run.said().count(sayings.LINK_LOST) == 1
    assert run.sim.connects == 3
    assert run.speeds_written_mph() == started  # nothing written that was not asked for
    # the "faster" the belt never got is not written late: the target is the belt's speed
    # again, on the coach's 0.1 mph step (1.0, not the 0.99 mph 1.6 km/h reads as), and the
    # coach says so
    assert run.coach.speed_mph == pytest.approx(1.0)
    assert [e.speed_mph for e in run.events
            if isinstance(e, TargetChanged) and e.why == "link"] == [pytest.approx(1.0)]
    assert sum(s.startswith("The belt is at 1.0 ") for s in run.said()) == 1
    run.say("faster")
    run.at(run.t + 5)
    # one step from the belt's 1.0 (before: 1.2 in one write, two steps)
    assert run.speeds_written_mph() == [*started, 1.1]
    assert run.writes()[-2][1].op is Op.REQUEST_CONTROL  # control asked for again first


def test_a_stop_during_a_lost_link_is_written_when_it_comes_back() -> None:
    run = BeltRun().walking()
    run.sim.schedule(run.t + 1, "disconnect", 4.0)
    run.at(run.t + 2)
    run.say("stop")
    assert run.writes(Op.STOP_PAUSE) == []
    # the stop cannot reach the belt now: the user hears that it may still move, and how to
    # halt it (before, nothing was said once the session had stopped)
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    run.at(run.t + 5)
    assert run.writes(Op.STOP_PAUSE)[-1][1].value == 1
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1


def test_a_stop_the_treadmill_refuses_is_said_at_once_and_written_again() -> None:
    """A stop answered "failed" with the link up (not a timeout, not a lost link): the user
    hears at once that the belt may still move and how to halt it (before, nothing was said
    while it was retried), once, and the stop is written again until it is done."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    assert run.belt_mph() > 0.5
    run.sim.schedule(run.t, "fail", 3.0)     # every write answered "failed" for 3 s
    run.say("stop")
    run.at(run.t + 1)
    assert run.belt.link_up and run.belt.halt_pending
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    run.at(run.t + 20)
    assert run.belt_mph() < 0.01, "the belt must not keep running after a stop"
    assert len(run.writes(Op.STOP_PAUSE)) >= 2 and not run.belt.halt_pending
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1


def test_a_stop_lost_in_flight_with_the_link_is_written_again_when_it_comes_back() -> None:
    run = BeltRun().walking()
    run.at(run.t + 3)
    assert run.belt_mph() > 0.5
    run.sim.schedule(run.t + 0.02, "disconnect", 5.0)   # the link drops under the stop's write
    run.say("stop")
    assert run.belt.halt_pending
    run.at(run.t + 30)
    assert run.belt_mph() < 0.01, "the belt must not keep running after a stop"
    assert len(run.writes(Op.STOP_PAUSE)) == 2 and not run.belt.halt_pending


def test_a_stop_the_treadmill_never_answers_is_said_and_written_when_the_link_is_back() -> None:
    """A stop whose write is never answered: once the write's timeout has passed the link is
    taken as lost, the coach says the belt may still be moving and how to halt it (the
    session is over, so a lost link alone said nothing), the session ends as stopped, and the
    stop is written again when the link is back."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    assert run.belt_mph() > 0.5
    run.sim.schedule(run.t, "mute", 2.0)    # the treadmill takes writes and answers nothing
    run.say("stop")
    run.at(run.t + 3.5)                     # past the write's timeout (3 s)
    assert sayings.STOP_UNCONFIRMED in run.said() and sayings.LINK_LOST not in run.said()
    assert run.belt.halt_pending and not run.belt.link_up and run.belt_mph() > 0.5
    run.at(run.t + 20)
    assert len(run.writes(Op.STOP_PAUSE)) == 2 and not run.belt.halt_pending
    assert run.belt_mph() < 0.01
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    assert run.coach.state is State.STOPPED
    assert [e.outcome for e in run.events if isinstance(e, SessionEnded)] == ["stopped"]


def test_a_speed_write_the_treadmill_never_answers_is_a_lost_link_and_never_sent_late() -> None:
    """A "faster" whose write is never answered is taken as a lost link (said once); what
    the coach asks meanwhile is not written late, and nothing is written when the link is
    back until the user asks again: never a speed the user did not ask for then."""
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    run.sim.schedule(run.t, "mute", 2.0)
    run.say("faster")
    run.at(run.t + 3.5)
    assert run.said().count(sayings.LINK_LOST) == 1 and not run.belt.link_up
    run.say("faster")                       # asked while the link is away: announced only
    run.at(run.t + 20)
    assert run.belt.link_up
    assert run.speeds_written_mph() == [*started, 1.1]
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)   # the lost write never landed
    # the belt's real speed is the target now: the coach asked 1.2 of a belt at 1.0
    assert run.coach.speed_mph == pytest.approx(1.0, abs=0.05)
    run.say("faster")
    run.at(run.t + 5)
    # one step from where the belt is (before: 1.3 in one write, three steps from 1.0)
    assert run.speeds_written_mph() == [*started, 1.1, 1.1]
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)


def test_writes_failing_at_once_for_the_write_timeout_are_a_lost_link() -> None:
    """Writes that fail at once with a Bluetooth error (the radio link gone while BlueZ still
    holds it), not a timeout: the failures going on for the write timeout (3 s) are a lost
    link, as a hung write is: said once, a "faster" meanwhile is announced and not taken as
    written, and when the link is back the belt's speed is the target (said), so the next
    "faster" climbs one step from it. Before, each write failed and the coach carried on as
    though the belt followed it."""
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    run.sim.schedule(run.t, "error", 4.0)   # every write (and check) fails at once for 4 s
    run.say("faster")
    run.at(run.t + 2.0)
    assert run.belt.link_up and sayings.LINK_LOST not in run.said()  # not yet: 3 s
    run.at(run.t + 1.5)
    assert not run.belt.link_up and run.said().count(sayings.LINK_LOST) == 1
    assert len(run.sim.checks) >= 5         # checked itself every 0.5 s: nothing written
    run.say("faster")                       # asked while the link is away: announced only
    run.at(run.t + 10)
    assert run.belt.link_up and run.sim.connects == 2
    assert run.speeds_written_mph() == [*started, 1.1]  # the one that failed, nothing late
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)
    assert run.coach.speed_mph == pytest.approx(1.0, abs=0.05)
    assert sum(s.startswith("The belt is at 1.0 ") for s in run.said()) == 1
    run.say("faster")
    run.at(run.t + 5)
    assert run.speeds_written_mph() == [*started, 1.1, 1.1]
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)


def test_one_write_failing_at_once_then_answered_is_not_a_lost_link() -> None:
    """A single Bluetooth error that the treadmill answers after (the link's check, then the
    next write) is not a lost link: nothing is said, the link is not dropped."""
    run = BeltRun().walking()
    run.sim.schedule(run.t, "error", 0.3)   # one write refused, then all is well
    run.say("faster")
    run.at(run.t + 12)
    assert any(isinstance(e, DeviceProblem) and e.problem == "write " + SimTreadmill.BLUETOOTH_ERROR
               for e in run.events)
    assert run.sim.checks and run.sim.connects == 1 and run.belt.link_up
    assert sayings.LINK_LOST not in run.said()
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 0
    run.say("stop")
    run.at(run.t + 10)
    assert not run.belt.halt_pending and run.belt_mph() < 0.01


def test_a_stop_whose_writes_fail_at_once_is_said_retried_and_written_when_the_link_is_back(
        ) -> None:
    """A stop whose writes fail at once with a Bluetooth error: said at once (the belt may
    still be moving; console, safety key), written again every 0.5 s, the failures going on
    for 3 s are a lost link, and the stop is written when the link is back: the belt halts.
    Never dropped in silence."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    assert run.belt_mph() > 0.5
    run.sim.schedule(run.t, "error", 4.0)
    run.say("stop")
    run.at(run.t + 1)
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1 and run.belt.halt_pending
    assert len(run.writes(Op.STOP_PAUSE)) >= 2          # written again, 0.5 s apart
    run.at(run.t + 2.5)
    assert not run.belt.link_up and run.belt.halt_pending and run.belt_mph() > 0.5
    run.at(run.t + 10)
    assert run.sim.connects == 2 and not run.belt.halt_pending
    assert run.belt_mph() < 0.01, "the belt must not keep running after a stop"
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1 and sayings.LINK_LOST not in run.said()
    assert run.coach.state is State.STOPPED
    assert [e.outcome for e in run.events if isinstance(e, SessionEnded)] == ["stopped"]


@pytest.mark.parametrize("action", ["fail", "error"])
def test_a_faster_the_treadmill_does_not_take_is_said_and_the_next_steps_from_the_belt(
        action: str) -> None:
    """One "faster" (1.0 -> 1.1 mph) whose write fails with the link up: answered "failed"
    by the pad, or refused at once by Bluetooth and then answered (not a lost link). The
    coach's target goes back to the treadmill's last confirmed one (1.0), said once, the
    write is not sent again on its own, and the next "faster" steps one from 1.0. Before,
    1.1 was taken as written and the next "faster" wrote 1.2 to a belt at 1.0."""
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    assert started[-1] == 1.0
    run.sim.schedule(run.t, action, 0.3)    # the next write fails, then all is well
    run.say("faster")
    run.at(run.t + 12)                      # past a step's timeout: nothing is retried
    assert run.belt.link_up and run.sim.connects == 1 and sayings.LINK_LOST not in run.said()
    assert run.speeds_written_mph() == [*started, 1.1]
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)
    assert run.coach.speed_mph == pytest.approx(1.0)
    assert run.said().count(sayings.BELT_NOT_TAKEN) == 1
    assert any(isinstance(e, TargetChanged) and e.why == "not_taken" for e in run.events)
    run.say("faster")
    run.at(run.t + 6)
    assert run.speeds_written_mph() == [*started, 1.1, 1.1]   # one step from the belt's 1.0
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)
    assert run.coach.speed_mph == pytest.approx(1.1)
    assert run.said().count(sayings.BELT_NOT_TAKEN) == 1


def test_a_failed_step_of_a_climb_goes_back_to_the_last_step_the_treadmill_took() -> None:
    """Three "faster"s at once (1.0 -> 1.3): 1.1 is taken, 1.2 fails. The target is 1.1,
    the treadmill's last confirmed target, not 1.3 nor a step the belt never got."""
    run = BeltRun().walking()
    started = run.speeds_written_mph()
    for _ in range(3):
        run.say("faster")
    run.at(run.t + 0.3)
    assert run.speeds_written_mph() == [*started, 1.1]
    run.sim.schedule(run.t, "fail", 3.0)    # the next step (1.2) is answered "failed"
    run.at(run.t + 15)
    assert run.speeds_written_mph() == [*started, 1.1, 1.2]
    assert run.coach.speed_mph == pytest.approx(1.1)
    assert run.belt_mph() == pytest.approx(1.1, abs=0.05)
    assert run.said().count(sayings.BELT_NOT_TAKEN) == 1
    run.say("faster")
    run.at(run.t + 6)
    assert run.speeds_written_mph() == [*started, 1.1, 1.2, 1.2]
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05)


def test_an_incline_the_treadmill_does_not_take_is_said_and_the_next_steps_from_the_belt(
        ) -> None:
    """"incline up" (0 -> 1 %) answered "failed": the target incline is the belt's 0 % again
    (said), not written again, and the next "incline up" writes 1 %, not 2 %."""
    plan = Plan("incline", (Phase("warmup", 600.0, 1.0, 0.8, 1.5, 0.0, 3.0, cues="warmup"),))
    run = BeltRun(plan=plan).walking()
    run.sim.schedule(run.t, "fail", 0.3)
    run.say("incline_up")
    run.at(run.t + 12)
    inclines = [float(c.value or 0) for _, c in run.writes(Op.SET_TARGET_INCLINE)]
    assert inclines == [1.0]
    assert run.coach.incline_pct == pytest.approx(0.0)
    assert run.said().count(sayings.BELT_NOT_TAKEN) == 1
    run.say("incline_up")
    run.at(run.t + 5)
    inclines = [float(c.value or 0) for _, c in run.writes(Op.SET_TARGET_INCLINE)]
    assert inclines == [1.0, 1.0]
    assert run.model.incline_pct == pytest.approx(1.0)


def test_a_resume_the_treadmill_does_not_start_is_said_and_nothing_climbs_on_a_still_belt(
        ) -> None:
    """"resume" whose start/resume write fails with the link up (and the very slow speed
    with it): the coach says the belt did not start and to start it on the console; it is not
    started again on its own and no speed step climbs on the still belt. Before, nothing was
    said and the coach wrote step after step to a belt that never moved."""
    run = BeltRun().walking()
    run.say("pause")
    run.at(run.t + 6)
    assert run.belt_mph() < 0.01
    run.sim.schedule(run.t, "fail", 0.3)
    run.say("resume")
    written = len(run.writes())
    run.at(run.t + 30)
    assert [c.op for _, c in run.writes()[written - 2:]] == [Op.START_RESUME, Op.SET_TARGET_SPEED]
    assert len(run.writes()) == written      # nothing written since: no retry, no climb
    assert run.belt_mph() < 0.01 and run.coach.state in ACTIVE
    assert run.said().count(sayings.BELT_NOT_STARTED) == 1
    assert sayings.BELT_NOT_TAKEN not in run.said()    # one line for the one "resume"
    run.sim.schedule(run.t, "start")         # the user starts it on the console
    run.at(run.t + 6)
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05)


def _pauses(run: BeltRun) -> list[int]:
    """The stop/pause writes, as their values (1 stop, 2 pause)."""
    return [int(c.value or 0) for _, c in run.writes(Op.STOP_PAUSE)]


@pytest.mark.parametrize("action,failing_s", [("fail", 3.0), ("error", 1.2)])
def test_a_pause_the_treadmill_does_not_take_is_said_at_once_and_written_again(
        action: str, failing_s: float) -> None:
    """A pause whose write fails with the link up (answered "failed", or refused by
    Bluetooth and answered after: not a lost link) is held as a stop is: the user hears at
    once that the belt may still be moving (console, safety key), once, and the pause is
    written again every 0.5 s until the treadmill takes it; the coach stays paused. Before,
    nothing was said or written again and the belt ran on under a paused coach."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    assert run.belt_mph() > 0.5
    run.sim.schedule(run.t, action, failing_s)
    run.say("pause")
    run.at(run.t + 1)
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    assert run.belt.link_up and run.belt.halt_pending and run.belt_mph() > 0.5
    assert _pauses(run).count(2) >= 2                    # written again, 0.5 s apart
    assert any(isinstance(e, DeviceProblem) and e.extra.get("command") == "pause"
               for e in run.events)
    run.at(run.t + 15)
    assert run.belt_mph() < 0.01, "the belt must not keep running after a pause"
    assert not run.belt.halt_pending and run.sim.connects == 1
    assert set(_pauses(run)) == {2}                      # a pause, never turned into a stop
    assert run.coach.state is State.PAUSED
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    assert sayings.LINK_LOST not in run.said()
    run.say("resume")                                    # and the session goes on
    run.at(run.t + 10)
    assert run.belt_mph() == pytest.approx(1.0, abs=0.05) and run.coach.state in ACTIVE


def test_resume_over_a_pause_never_taken_writes_it_no_more_and_the_belt_runs_on() -> None:
    """"resume" while a pause is still not taken: the user wants to walk, so the pause is not
    written again (it would halt the belt under them by surprise), nor a start to a belt that
    runs; the belt keeps the target it had."""
    run = BeltRun().walking()
    run.sim.schedule(run.t, "fail", 60.0)
    run.say("pause")
    run.at(run.t + 2)
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1 and run.belt.halt_pending
    run.say("resume")
    written = len(run.writes())
    run.at(run.t + 10)
    assert len(run.writes()) == written and not run.belt.halt_pending
    assert run.coach.state in ACTIVE and run.belt_mph() == pytest.approx(1.0, abs=0.05)


def test_a_stop_said_while_a_pause_is_not_taken_is_written_at_once_and_held() -> None:
    """A stop overtakes a pause not taken: written at the moment it is heard (not after the
    pause's next retry), held until confirmed, and the line is not said twice."""
    run = BeltRun().walking()
    run.sim.schedule(run.t, "fail", 2.0)
    run.say("pause")
    run.at(run.t + 0.7)
    run.say("stop")
    assert run.writes(Op.STOP_PAUSE)[-1] == (run.t, run.writes(Op.STOP_PAUSE)[-1][1])
    assert _pauses(run)[-1] == 1
    run.at(run.t + 15)
    assert not run.belt.halt_pending and run.belt_mph() < 0.01
    assert _pauses(run)[-1] == 1 and run.coach.state is State.STOPPED
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1


def test_a_pause_not_taken_ends_when_the_belt_is_halted_on_the_console() -> None:
    """The console takes over: a pause on it (or a stop, the safety key) halts the belt, so
    the pause the treadmill did not take is not written again."""
    run = BeltRun().walking()
    run.sim.schedule(run.t, "fail", 60.0)
    run.say("pause")
    run.at(run.t + 2)
    assert run.belt.halt_pending
    run.sim.schedule(run.t, "pause")
    run.at(run.t + 0.5)
    written = len(run.writes())
    assert not run.belt.halt_pending
    run.at(run.t + 10)
    assert len(run.writes()) == written and run.belt_mph() < 0.01
    assert run.coach.state is State.PAUSED


@pytest.mark.parametrize("how", ["said", "microphone lost"])
def test_a_pause_while_the_link_is_away_is_said_and_written_when_it_comes_back(how: str) -> None:
    """A pause (said, or the microphone lost) while the link is away cannot reach the belt:
    the user hears it may still be moving, and the pause is written when the link is back.
    Before, it was dropped ("not connected") and the belt ran on under a paused coach."""
    run = BeltRun().walking()
    run.sim.schedule(run.t + 1, "disconnect", 4.0)
    run.at(run.t + 2)
    if how == "said":
        run.say("pause")
    else:
        run.coach.lose_input(run.t)
    assert run.coach.state is State.PAUSED
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    run.at(run.t + 10)
    assert _pauses(run) == [2] and not run.belt.halt_pending
    assert run.belt_mph() < 0.01 and run.coach.state is State.PAUSED


def test_a_stop_waiting_for_the_link_outlives_its_session_and_holds_the_next_start() -> None:
    run = BeltRun().walking()
    run.at(run.t + 3)
    run.sim.schedule(run.t + 0.1, "disconnect", 10.0)
    run.at(run.t + 0.5)
    run.say("stop")
    run.coach.reset()
    run.say("start")                          # a new session, before the link is back
    assert run.belt.halt_pending
    run.at(run.t + 16)                        # the link is back: the stop goes first
    stops = run.writes(Op.STOP_PAUSE)
    assert len(stops) == 1 and stops[0][1].value == 1
    assert run.belt_mph() < 0.01
    assert run.writes(Op.SET_TARGET_SPEED)[-1][0] < stops[0][0]   # nothing written since


def test_stop_said_with_nothing_running_still_stops_a_moving_belt() -> None:
    run = BeltRun()
    run.at(1.0)
    run.sim.schedule(run.t + 0.1, "start")     # started on the console; the coach is idle
    run.at(run.t + 6)
    assert run.belt_mph() > 0.3 and run.coach.state is State.IDLE
    run.say("stop")
    assert run.writes(Op.STOP_PAUSE)[-1][0] == run.t
    run.at(run.t + 20)
    assert run.belt_mph() < 0.01


def test_stop_during_the_wind_down_is_written_at_once() -> None:
    run = BeltRun().walking()
    while not run.coach.done:
        run.at(run.t + 1)
        if run.coach.awaiting_turn and run.t - run.coach.question_t >= 2:
            run.say("yes", "ready")
    assert run.belt.winding_down
    n = len(run.writes(Op.STOP_PAUSE))
    run.say("stop")
    assert len(run.writes(Op.STOP_PAUSE)) == n + 1 and run.writes(Op.STOP_PAUSE)[-1][0] == run.t


def test_a_stop_the_treadmill_refuses_is_written_again_and_nothing_else_is() -> None:
    run = BeltRun(with_quirks(fails_stop=True)).walking()
    run.at(run.t + 3)
    run.say("stop")
    run.at(run.t + 3)
    assert len(run.writes(Op.STOP_PAUSE)) >= 4 and run.belt.halt_pending
    run.started_again()
    written = len(run.writes(Op.SET_TARGET_SPEED))
    run.at(run.t + 5)
    assert len(run.writes(Op.SET_TARGET_SPEED)) == written, "no speed before a confirmed stop"
