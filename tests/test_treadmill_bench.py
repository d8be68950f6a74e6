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
