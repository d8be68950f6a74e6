"""The simulated treadmill keeps the link's rule: one answer per write, in write order."""

from __future__ import annotations

import pytest

from voicecoach.treadmill import ftms
from voicecoach.treadmill.link import AnswerOrder, AnswerOrderError, WriteDone
from voicecoach.treadmill.sim import SimTreadmill


def test_the_answer_order_check_takes_one_answer_per_write_in_order() -> None:
    order = AnswerOrder()
    order.sent(ftms.stop())
    order.sent(ftms.target_speed(1.0))
    with pytest.raises(AnswerOrderError, match="'target speed 1.00 km/h' before the one to 'stop'"):
        order.answered(WriteDone(0.0, ftms.target_speed(1.0), error="link lost"))
    order.check([WriteDone(0.0, ftms.stop(), error="link lost"),
                 WriteDone(0.0, ftms.target_speed(1.0), error="link lost")])
    with pytest.raises(AnswerOrderError, match="'stop', which is not waiting for one"):
        order.answered(WriteDone(0.0, ftms.stop(), error="link lost"))


def test_the_writes_after_one_never_answered_wait_for_its_timeout_as_over_bleak() -> None:
    """A write taken and never answered ("mute"): a write sent after the treadmill answers
    again waits for the first one's timeout (FTMS writes go one at a time) and is lost with
    the link. Before, the sim answered it first, before the first write had its answer."""
    sim = SimTreadmill(write_timeout=3.0)
    sim.poll(0.1)
    sim.schedule(0.5, "mute", 1.0)
    sim.send(ftms.start_resume(), 0.6)             # control asked for first: both muted
    sim.poll(1.7)
    sim.send(ftms.target_speed(2.0), 1.7)          # the treadmill would answer it now
    done = [u for t in range(18, 60) for u in sim.poll(t / 10) if isinstance(u, WriteDone)]
    assert [(u.command, u.error) for u in done] == [
        (ftms.request_control(), "timed out"), (ftms.start_resume(), "link lost"),
        (ftms.target_speed(2.0), "link lost")]
    assert not sim.answers.waiting and sim.model.target_kmh == 0.0
