"""The benchmark's check for unasked belt writes, on a simulated session (it must see one)."""

from __future__ import annotations

from belt_helpers import BeltRun

from voicecoach.lab.bench.treadmill import unasked_writes
from voicecoach.treadmill import ftms


def test_a_session_with_drops_and_commands_has_no_unasked_write() -> None:
    run = BeltRun().walking()
    run.sim.schedule(run.t + 5, "disconnect", 4.0)
    run.say("faster")
    run.at(run.t + 15)
    run.say("faster")
    run.at(run.t + 10)
    run.say("slower")
    run.at(run.t + 10)
    assert len(run.sim.log.moving()) >= 4
    assert unasked_writes(run.sim.log.writes, run.events, run.sim.up_times[1:]) == []


def test_a_write_after_a_reconnect_that_nobody_asked_for_is_counted() -> None:
    run = BeltRun().walking()
    run.say("faster")
    run.at(run.t + 5)
    run.sim.schedule(run.t + 1, "disconnect", 3.0)
    run.at(run.t + 8)
    run.sim.send(ftms.target_speed(1.77), run.t)  # what a careless link would re-send
    run.sim.send(ftms.target_speed(3.5), run.t)
    bad = unasked_writes(run.sim.log.writes, run.events, run.sim.up_times[1:])
    assert [what for _, what in bad] == ["target speed 1.77 km/h", "target speed 3.50 km/h"]


def test_a_slow_start_is_asked_for_and_a_write_past_the_target_is_not() -> None:
    """The belt starts still: its slow start (0.5 mph, then a step at a time) climbs towards the
    phase's speed and is explained by "ready"; a write above the target is still counted."""
    run = BeltRun().walking()
    speeds = [float(c.value or 0.0) for _, c in run.sim.log.writes
              if c.op is ftms.Op.SET_TARGET_SPEED]
    assert len(speeds) >= 2 and speeds == sorted(speeds), speeds  # a climb, not a jump
    assert unasked_writes(run.sim.log.writes, run.events, run.sim.up_times[1:]) == []
    run.sim.send(ftms.target_speed(speeds[-1] + 1.0), run.t + 0.5)
    bad = unasked_writes(run.sim.log.writes, run.events, run.sim.up_times[1:])
    assert [what for _, what in bad] == [f"target speed {speeds[-1] + 1.0:.2f} km/h"]
