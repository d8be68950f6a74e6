"""A stop or pause on its way when the belt is started on the console (the simulated
treadmill's "late" answers)."""

from __future__ import annotations

import pytest

from voicecoach.treadmill import ftms
from voicecoach.treadmill.ftms import Op, Result
from voicecoach.treadmill.link import WriteDone
from voicecoach.treadmill.sim import SimTreadmill


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
