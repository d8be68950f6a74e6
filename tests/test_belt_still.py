"""A stop or pause the treadmill does not confirm on a belt known to be still: the coach says
the truth (not moving; if it moves, console or safety key), not that it may still be moving."""

from __future__ import annotations

from belt_helpers import BeltRun

from voicecoach.device import sayings
from voicecoach.treadmill.ftms import Op
from voicecoach.workout.machine import State


def _paused_and_still() -> BeltRun:
    run = BeltRun().walking()
    run.say("pause")
    run.at(run.t + 10)
    assert run.coach.state is State.PAUSED and run.belt_mph() < 0.01
    assert not run.belt.halt_pending
    return run


def test_a_stop_not_confirmed_on_a_paused_still_belt_says_it_is_not_moving() -> None:
    """"stop" said with the belt paused and still, the stop answered "failed" for 3 s: the
    coach says the treadmill did not confirm it but the belt is not moving (and what to do if
    it moves), once, and the stop is still written again until the treadmill takes it.
    Before, it said the belt "may still be moving", untrue of a belt read at 0."""
    run = _paused_and_still()
    run.sim.schedule(run.t, "fail", 3.0)
    run.say("stop")
    run.at(run.t + 1)
    assert run.belt.halt_pending and run.coach.state is State.STOPPED
    assert sayings.STOP_UNCONFIRMED not in run.said()
    assert run.said().count(sayings.STOP_UNCONFIRMED_STILL) == 1
    run.at(run.t + 10)
    assert not run.belt.halt_pending and len(run.writes(Op.STOP_PAUSE)) >= 3
    assert run.said().count(sayings.STOP_UNCONFIRMED_STILL) == 1
    assert sayings.STOP_UNCONFIRMED not in run.said()


def test_a_pause_not_confirmed_before_the_belt_ever_ran_says_it_is_not_moving() -> None:
    """"pause" said while the first phase waits for "ready" (the belt never started, read at
    0), the pause answered "failed": the still belt's line, not "may still be moving"."""
    run = BeltRun().briefed()
    run.at(run.t + 3)
    assert run.belt.link_up and run.belt.belt_kmh == 0.0
    run.sim.schedule(run.t, "fail", 2.0)
    run.say("pause")
    run.at(run.t + 1)
    assert run.belt.halt_pending and [int(c.value or 0) for _, c in run.writes(Op.STOP_PAUSE)]
    assert sayings.STOP_UNCONFIRMED not in run.said()
    assert run.said().count(sayings.STOP_UNCONFIRMED_STILL) == 1


def test_a_still_belt_that_moves_while_its_stop_is_not_confirmed_is_said_to_be_moving() -> None:
    """The stop not confirmed on the still belt, then the belt moves with no console start
    reported (a pad that does not tell of it): the coach now says it may be moving (console,
    safety key), once, and the stop, written again, halts it once the treadmill takes it."""
    run = _paused_and_still()
    run.sim.schedule(run.t, "fail", 6.0)
    run.say("stop")
    run.at(run.t + 1)
    assert run.said().count(sayings.STOP_UNCONFIRMED_STILL) == 1
    run.model.state, run.model.target_kmh = "running", 1.6  # started, nothing reported
    run.at(run.t + 2)
    assert run.belt_mph() > 0.3 and run.belt.halt_pending
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    run.at(run.t + 15)
    assert run.belt_mph() < 0.01 and not run.belt.halt_pending
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
