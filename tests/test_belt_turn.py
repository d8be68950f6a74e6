"""The belt at a turn: the coach slows it to very slow while the user turns round and waits
for "ready", then climbs to the phase's speed; a slow-down the treadmill does not take."""

from __future__ import annotations

import pytest
from belt_helpers import BeltRun

from voicecoach.device import sayings
from voicecoach.events import PhaseStarted
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op
from voicecoach.workout.machine import State
from voicecoach.workout.plan import Phase, Plan


def test_a_turn_is_made_over_a_very_slow_belt_then_it_climbs_after_ready() -> None:
    """The coach says "side rails, slow belt" at a turn and waits for "ready": the belt goes
    down to very slow (0.5 mph, COACHING.md) at once, stays there while the turn waits, and
    climbs to the phase's speed one step at a time after "ready". Week 6's turn into a 1.5 mph
    block was made over the warm-up's 1.2 mph (the speed held, not raised, while waiting)."""
    from voicecoach.lab.bench.treadmill import unasked_writes

    plan = Plan("week 6 turn", (Phase("warmup", 30.0, 1.2, 1.0, 1.5, cues="warmup"),
                                Phase("backward", 120.0, 1.5, 1.5, 2.0, 0.0, 0.0, "technique"),
                                Phase("cooldown", 30.0, 1.2, 0.8, 1.5, cues="cooldown")))

    run = BeltRun(plan=plan).walking().at(40)
    assert run.coach.state is State.BACKWARD and run.coach.awaiting_turn
    [turn] = [e.t for e in run.events if isinstance(e, PhaseStarted) and e.kind == "backward"]
    run.at(run.t + 10)  # the turn waits: the belt very slow, nothing raised
    assert run.belt_mph() == pytest.approx(0.5, abs=0.06)
    waiting = [round(float(c.value or 0) / KMH_PER_MPH, 1)
               for t, c in run.writes(Op.SET_TARGET_SPEED) if t >= turn]
    assert waiting == [0.5], waiting  # down at once, in one write
    ready_at = run.t
    run.ready().at(run.t + 20)
    climb = [round(float(c.value or 0) / KMH_PER_MPH, 1)
             for t, c in run.writes(Op.SET_TARGET_SPEED) if t >= ready_at]
    assert climb == sorted(climb) and len(climb) >= 5, climb  # small steps after "ready"
    assert climb[-1] == pytest.approx(1.5, abs=0.06) and climb[0] <= 0.7
    assert run.belt_mph() == pytest.approx(1.5, abs=0.06)
    assert unasked_writes(run.sim.log.writes, run.events, run.sim.up_times[1:]) == []


#: A warm-up at 1.2 mph turning into a backward block at 1.5 (week 6's turn)
TURN_PLAN = Plan("turn", (Phase("warmup", 30.0, 1.2, 1.0, 1.5, cues="warmup"),
                          Phase("backward", 120.0, 1.5, 1.5, 2.0, 0.0, 0.0, "technique"),
                          Phase("cooldown", 30.0, 1.2, 0.8, 1.5, cues="cooldown")))


def _up_to_the_turn(run: BeltRun) -> float:
    """Walking at the warm-up's 1.2 mph, stepped to 1 s before the turn: returns the turn's
    workout time (the warm-up's clock runs from "ready")."""
    run.at(run.t + 10)
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05) and run.coach.phase is not None
    turn = run.t + run.coach.phase.duration_s - run.coach.phase_elapsed
    run.at(turn - 1.0)
    assert run.coach.state is State.WARMUP
    return turn


@pytest.mark.parametrize("action", ["fail", "error"])
def test_a_slow_down_for_a_turn_not_taken_is_said_and_written_again_until_it_is(
        action: str) -> None:
    """The turn's slow-down (1.2 -> 0.5 mph, the coach saying "side rails, slow belt") fails
    with the link up: answered "failed", or refused by Bluetooth and answered after. The coach
    says at once that the belt did not slow (slow it on the console, or hold the rails and
    wait), and writes the slow-down again 0.5 s later, then 1 s later, until taken (a few
    times: the next test) while the turn waits: the belt is very
    slow before "ready", and nothing written is faster than the belt. The coach's target is
    still the phase's (the slow belt is the turn's, not a change the user asked for). Before,
    the failure was a log line: the turn waited on a belt still at 1.2 mph, nothing said."""
    run = BeltRun(plan=TURN_PLAN).walking()
    turn = _up_to_the_turn(run)
    run.sim.schedule(turn - 0.5, action, 1.6)   # the slow-down and two retries fail
    before = len(run.writes(Op.SET_TARGET_SPEED))
    run.at(turn + 0.5)
    assert run.coach.state is State.BACKWARD and run.coach.awaiting_turn
    assert run.said().count(sayings.TURN_NOT_SLOWED) == 1   # at once, not at the next reminder
    assert run.belt_mph() > 1.0                              # it did not slow
    run.at(turn + 12)                                        # the turn still waits
    assert run.coach.awaiting_turn and run.belt.link_up and run.sim.connects == 1
    during = run.writes(Op.SET_TARGET_SPEED)[before:]
    assert {round(float(c.value or 0) / KMH_PER_MPH, 1) for _, c in during} == {0.5}
    assert 2 <= len(during) <= 5                             # again, backing off, until taken
    assert all(b - a >= 0.5 - 1e-6 for (a, _), (b, _) in zip(during, during[1:], strict=False))
    assert run.belt_mph() == pytest.approx(0.5, abs=0.06), "the turn over a walking-speed belt"
    assert run.said().count(sayings.TURN_NOT_SLOWED) == 1
    assert sayings.BELT_NOT_TAKEN not in run.said() and sayings.LINK_LOST not in run.said()
    assert run.coach.speed_mph == pytest.approx(1.5)         # the phase's target, kept
    run.ready().at(run.t + 20)                               # then the usual climb
    climb = run.speeds_written_mph()[before + len(during):]
    assert climb == sorted(climb) and climb[-1] == pytest.approx(1.5, abs=0.06)
    assert run.belt_mph() == pytest.approx(1.5, abs=0.06)


def test_a_slow_down_for_a_turn_is_not_written_again_once_ready_is_said() -> None:
    """The turn's slow-down keeps failing and the user says "ready" (turned already): the
    turn's slow belt is not written any more (the retries end with the turn), and the line
    was said once."""
    run = BeltRun(plan=TURN_PLAN).walking()
    turn = _up_to_the_turn(run)
    run.sim.schedule(turn - 0.5, "fail", 60.0)
    run.at(turn + 3)
    assert run.said().count(sayings.TURN_NOT_SLOWED) == 1
    run.say("yes", "ready")
    written = len(run.writes(Op.SET_TARGET_SPEED))
    run.at(run.t + 10)
    slow = [c for _, c in run.writes(Op.SET_TARGET_SPEED)[written:]
            if round(float(c.value or 0) / KMH_PER_MPH, 1) == 0.5]
    assert slow == [] and not run.coach.awaiting_turn
    assert run.said().count(sayings.TURN_NOT_SLOWED) == 1


def _after(run: BeltRun, t0: float) -> list[float]:
    """The speeds written (mph) from workout time ``t0`` on."""
    return [round(float(c.value or 0) / KMH_PER_MPH, 2)
            for t, c in run.writes(Op.SET_TARGET_SPEED) if t >= t0]


@pytest.mark.parametrize("slow_down", ["taken", "refused"])
def test_a_speed_set_on_the_console_during_a_turn_is_the_users_and_never_written_over(
        slow_down: str) -> None:
    """At the turn the coach slows the belt (taken, or refused and retried) and the user sets
    1.3 km/h (0.81 mph) on the console while the turn waits: the console wins. Nothing is
    written over it during the turn (no turn's slow-down again, no retry), the coach's target
    is the console's, and after "ready" the coach does not climb past it to the phase's
    1.5 mph (the user did not ask). Before, the turn's 0.5 mph was written over it at once
    (taken) or on the next retry (refused), and the belt was taken down under the user."""
    run = BeltRun(plan=TURN_PLAN).walking()
    turn = _up_to_the_turn(run)
    if slow_down == "refused":
        run.sim.schedule(turn - 0.5, "fail", 60.0)  # every write refused, the console's fine
    run.at(turn + 4)
    assert run.coach.awaiting_turn
    console_at = run.t + 0.05
    run.sim.schedule(console_at, "speed", 1.3)
    run.at(run.t + 10)                                       # the turn still waits
    assert run.coach.awaiting_turn
    assert _after(run, console_at) == [], "the console's speed written over during the turn"
    assert run.coach.speed_mph == pytest.approx(1.3 / KMH_PER_MPH, abs=0.01)
    assert run.model.target_kmh == pytest.approx(1.3)
    run.ready().at(run.t + 20)
    assert all(mph <= 1.3 / KMH_PER_MPH + 0.01 for mph in _after(run, console_at))
    assert run.model.target_kmh == pytest.approx(1.3)        # never pushed back up to 1.5 mph
    assert run.belt_mph() == pytest.approx(1.3 / KMH_PER_MPH, abs=0.05)


def test_a_slow_down_for_a_turn_always_refused_is_retried_a_few_times_then_given_up() -> None:
    """A treadmill that refuses every speed write through a whole turn: the turn's slow-down
    is written again a few times, each wait twice the last (0.5, 1, 2, 4 s), then the coach
    says once that it has stopped asking (slow it at the console before turning) and writes
    nothing more while the turn waits. Before, it was written every 0.5 s for as long as the
    turn lasted (up to a minute: about 120 writes on a link that refuses them)."""
    from voicecoach.device.belt_answers import SLOW_RETRIES

    run = BeltRun(plan=TURN_PLAN).walking()
    turn = _up_to_the_turn(run)
    run.sim.schedule(turn - 0.5, "fail", 120.0)
    run.at(turn + 19)                                        # before the first reminder
    assert run.coach.awaiting_turn and run.belt.link_up
    during = [t for t, c in run.writes(Op.SET_TARGET_SPEED) if t >= turn - 0.5]
    assert len(during) == 1 + SLOW_RETRIES, during          # the slow-down, then the retries
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert all(later > 1.5 * earlier for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert run.said().count(sayings.TURN_NOT_SLOWED) == 1
    assert run.said().count(sayings.TURN_SLOW_GIVEN_UP) == 1
    given_up = [e.t for e in run.events if getattr(e, "text", None) == sayings.TURN_SLOW_GIVEN_UP]
    assert given_up[0] >= during[-1]                         # said once the last is refused
    run.at(turn + 50)                                        # two reminders later: still quiet
    assert [t for t, _ in run.writes(Op.SET_TARGET_SPEED) if t >= turn - 0.5] == during
    assert run.said().count(sayings.TURN_SLOW_GIVEN_UP) == 1
    assert run.belt_mph() == pytest.approx(1.2, abs=0.05)   # it never slowed: it was said
