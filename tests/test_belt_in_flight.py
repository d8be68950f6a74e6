"""A stop or pause on its way when the belt is started on the console: its answer, arriving
after that start, confirms nothing said later (the simulated treadmill's "late" answers)."""

from __future__ import annotations

import pytest
from belt_helpers import BeltRun

from voicecoach.device import sayings
from voicecoach.treadmill import ftms
from voicecoach.treadmill.ftms import Op, Result
from voicecoach.treadmill.link import WriteDone
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.machine import ACTIVE, State

#: How late the first stop's (or pause's) answer comes: after the console's start and the
#: user's next "stop"
LATE_S = 4.0


def _stops(run: BeltRun) -> list[tuple[float, int]]:
    """The stop/pause writes: (workout time, 1 stop / 2 pause)."""
    return [(t, int(c.value or 0)) for t, c in run.writes(Op.STOP_PAUSE)]


def test_the_sim_acts_on_a_late_write_at_once_and_answers_it_and_the_next_in_order() -> None:
    """The "late" action: the next write is acted on as usual, its answer comes ``value``
    seconds later, and a write sent meanwhile waits for it (FTMS writes go one at a time)."""
    sim = SimTreadmill()
    sim.poll(0.1)
    sim.send(ftms.start_resume(), 0.1)
    sim.poll(1.0)
    sim.schedule(1.0, "late", 2.0)
    sim.send(ftms.stop(), 1.0)
    sim.poll(1.2)
    assert sim.model.state == "stopped"                  # acted on at once
    sim.send(ftms.target_speed(2.0), 1.2)
    early = [u for u in sim.poll(2.9) if isinstance(u, WriteDone)]
    assert early == [] and sim.model.target_kmh == 0.0    # neither answered; the speed waits
    done = [u for u in sim.poll(3.5) if isinstance(u, WriteDone)]
    assert [(u.command.op, u.response.result if u.response else None) for u in done] == [
        (Op.STOP_PAUSE, Result.SUCCESS), (Op.SET_TARGET_SPEED, Result.SUCCESS)]
    assert done[0].t == pytest.approx(3.05) and done[1].t > done[0].t
    sim.schedule(3.5, "late", 5.0)                      # a late answer lost with the link
    sim.schedule(4.0, "disconnect", 1.0)
    sim.send(ftms.stop(), 3.5)
    lost = [u for u in sim.poll(4.5) if isinstance(u, WriteDone)]
    assert [(u.command, u.error) for u in lost] == [(ftms.stop(), "link lost")]


def _stop_then_console_start(run: BeltRun) -> float:
    """Walking; "stop" said with its answer held back LATE_S; the belt started on the console
    before that answer. Returns when the first stop was written."""
    run.at(run.t + 3)
    run.sim.schedule(run.t, "late", LATE_S)
    first = run.t
    run.say("stop")
    assert run.coach.state is State.STOPPED
    run.at(run.t + 1)
    assert run.model.state == "stopped"                   # the stop was done, not answered
    run.sim.schedule(run.t, "start")                      # the user starts it on the console
    run.at(run.t + 1.5)
    assert run.model.state == "running" and run.belt_mph() > 0.3
    return first


def test_a_stop_said_after_a_console_start_is_written_though_the_last_is_unanswered() -> None:
    """The belt stopped by a stop whose answer is late, started on the console meanwhile, and
    "stop" said again: that stop is written at once and held until its own answer; the late
    answer to the first stop is not taken as confirming it. Before, the second stop was not
    written (a stop was "on its way"), the first one's answer was taken as confirming it, and
    the belt ran on: a missed stop."""
    run = BeltRun().walking()
    first = _stop_then_console_start(run)
    run.say("stop")
    assert _stops(run) == [(first, 1), (run.t, 1)]        # written at the moment it is heard
    assert run.belt.halt_pending
    run.at(first + LATE_S + 0.5)                          # the first stop's answer is in
    run.at(run.t + 15)
    assert run.belt_mph() < 0.01 and run.model.state == "stopped", "a missed stop"
    assert not run.belt.halt_pending
    assert len(_stops(run)) == 2                          # nothing written the user did not ask
    assert sayings.STOP_UNCONFIRMED not in run.said()


def test_a_late_failure_to_a_stop_before_the_console_start_does_not_delay_the_next() -> None:
    """The first stop fails (answered late), the belt is started on the console, "stop" is
    said: written at once, not after the old failure's answer and a retry (before: seconds
    later, the belt running meanwhile); the old failure says nothing about the new stop."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    run.sim.schedule(run.t, "fail", 0.3)                  # the first stop is not taken...
    run.sim.schedule(run.t, "late", LATE_S)               # ...and that is answered late
    first = run.t
    run.say("stop")
    run.at(run.t + 1)
    assert run.model.state == "running"
    run.sim.schedule(run.t, "start")                      # the console's start: the user wins
    run.at(run.t + 1.5)
    run.say("stop")
    assert _stops(run) == [(first, 1), (run.t, 1)]
    run.at(first + LATE_S + 0.5)
    assert run.model.state == "stopped" and not run.belt.halt_pending  # its own answer
    assert sayings.STOP_UNCONFIRMED not in run.said()      # the new stop was not refused
    run.at(run.t + 15)
    assert run.belt_mph() < 0.01 and not run.belt.halt_pending and len(_stops(run)) == 2


def test_a_stop_after_a_console_start_is_written_at_once_when_the_last_is_lost_with_the_link(
        ) -> None:
    """The first stop's answer never comes and the link is lost: the stop said after the
    console start was written at once (not only once the link was back), and it is written
    again when the link is back, until confirmed."""
    run = BeltRun().walking()
    first = _stop_then_console_start(run)
    run.sim.schedule(run.t + 0.5, "disconnect", 3.0)     # before the late answer
    run.say("stop")
    heard = run.t
    assert _stops(run) == [(first, 1), (heard, 1)]
    run.at(run.t + 20)
    assert run.belt_mph() < 0.01 and not run.belt.halt_pending
    assert [v for _, v in _stops(run)] == [1, 1, 1]      # written again once the link was back
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1


def test_a_pause_said_after_a_console_start_is_held_until_its_own_answer() -> None:
    """A pause whose answer is late, the belt started on the console (the coach resumes), and
    "pause" said again: the late answer to the first pause is not taken as confirming the
    second, so when the treadmill does not take the second it is said and written again.
    Before, the old answer confirmed it, the failure was ignored and the belt ran on under a
    paused coach, nothing said."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    run.sim.schedule(run.t, "late", LATE_S)
    first = run.t
    run.say("pause")
    run.at(run.t + 1)
    assert run.model.state == "paused"
    run.sim.schedule(run.t, "start")
    run.at(run.t + 1.5)
    assert run.coach.state in ACTIVE and run.model.state == "running"
    # the second pause waits behind the late answer and is then answered "failed"
    run.sim.schedule(first + LATE_S - 0.1, "fail", 0.3)
    run.say("pause")
    assert run.coach.state is State.PAUSED
    assert _stops(run) == [(first, 2), (run.t, 2)]
    run.at(first + LATE_S + 0.5)
    assert run.belt.halt_pending                          # not confirmed by the first's answer
    assert run.said().count(sayings.STOP_UNCONFIRMED) == 1
    run.at(run.t + 10)
    assert run.model.state == "paused" and run.belt_mph() < 0.01, "a missed pause"
    assert not run.belt.halt_pending and run.coach.state is State.PAUSED
    assert {v for _, v in _stops(run)} == {2}             # pauses only, never a stop


def test_a_start_waiting_for_a_stop_is_done_by_the_console_and_not_written_later() -> None:
    """"ready" said in a new session while the last stop is still on its way (the start waits
    for it), then the belt started on the console: that start is the user's, so nothing is
    written when the old stop's answer comes, nor after a reconnect. Before, the old answer
    started the coach's climb 30 s after the console's start (three speed writes)."""
    run = BeltRun().walking()
    run.at(run.t + 3)
    run.sim.schedule(run.t, "late", 30.0)
    first = run.t
    run.say("stop")
    run.started_again()
    assert run.belt.start_pending and run.coach.state in ACTIVE
    written = len(run.writes())
    run.sim.schedule(run.t + 0.5, "start")
    run.at(first + 32)                                    # the old stop's answer is in
    run.sim.schedule(run.t + 0.5, "disconnect", 2.0)
    run.at(run.t + 10)
    assert [c.op for _, c in run.writes()[written:]] in ([], [Op.REQUEST_CONTROL])
    assert run.model.state == "running" and run.belt_mph() > 0.3
    assert not run.belt.start_pending and not run.belt.halt_pending
