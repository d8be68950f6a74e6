"""The coach's belt over bleak's real BlueZ backend against the fake treadmill on bluezoo: a
late answer to a stop, a pause the treadmill does not take, a link lost mid-session and back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

pytest.importorskip("bluezoo", reason="bluezoo is in the test extra")
if shutil.which("dbus-daemon") is None:
    pytest.skip("dbus-daemon is not installed (Debian package dbus)", allow_module_level=True)

# bleak keeps one BlueZ manager (a D-Bus connection) per event loop and never closes it; the
# loops here end with the test, so its socket is reported unclosed when collected.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

from belt_helpers import BELT_PLAN  # noqa: E402
from bluez_bus import CENTRAL, PERIPHERAL, forget  # noqa: E402
from fake_ftms import FakeTreadmill, checked  # noqa: E402

from voicecoach.device import sayings  # noqa: E402
from voicecoach.device.belt import BeltController  # noqa: E402
from voicecoach.events import CueSpoken, Event  # noqa: E402
from voicecoach.grammar import load_grammar  # noqa: E402
from voicecoach.settings import CoachSettings, TreadmillSettings  # noqa: E402
from voicecoach.treadmill import client, ftms  # noqa: E402
from voicecoach.treadmill.ftms import Op, Result  # noqa: E402
from voicecoach.workout.coach import Coach  # noqa: E402
from voicecoach.workout.machine import State  # noqa: E402

#: Only keeps a failing run from hanging; measures nothing.
GUARD_S = 20.0
#: How late the first stop's answer comes: after the console's start and the next "stop"
LATE_S = 4.0
#: The coach's steps: "ready" and on until the belt walks.
WALKING = ("yes", "yes", "yes", "yes")


class Walk:
    """A coach driving the fake's belt over bleak (a link checked for one answer per write),
    on a clock that keeps pace with the wall (the fake's belt runs on wall time)."""

    def __init__(self, fake: FakeTreadmill, **link_options: float) -> None:
        forget()
        self.fake = fake
        self.events: list[Event] = []
        self.link = checked(client.BleakTreadmill(PERIPHERAL[1], adapter=CENTRAL[0],
                                                  **{"reconnect_s": 0.5, **link_options}))
        self.coach = Coach(BELT_PLAN, CoachSettings(), load_grammar("en"), [self.events.append],
                           followers=[BeltController.follow(self.link,
                                                            TreadmillSettings(control="drive"))])
        belt = self.coach.followers[0]
        assert isinstance(belt, BeltController)
        self.belt = belt
        self.now = 0.0
        self.until(lambda: belt.link_up, "the link came up")
        self.coach.begin(self.now)
        for command in WALKING:
            self.say(command)
            self.until(lambda: False, seconds=0.5)
        self.until(lambda: fake.model.speed_kmh > 0.3, "the belt walks")

    def say(self, command: str) -> None:
        self.coach.command(command, self.now, phrase="ready" if command == "yes" else command)

    def until(self, done: Callable[[], bool], what: str = "", seconds: float = GUARD_S) -> None:
        """Tick every 0.05 s until ``done()``; fail naming ``what`` if the guard ends it."""
        began = time.monotonic()
        while not done() and time.monotonic() - began < seconds:
            time.sleep(0.05)
            self.now += 0.05
            self.coach.tick(self.now)
        assert not what or done(), f"never: {what}"

    def said(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, CueSpoken)]

    def halts(self) -> list[ftms.Command]:
        """The stop and pause writes the treadmill took in (answered or not)."""
        return [c for c in map(ftms.decode_command, self.fake.writes) if c.op is Op.STOP_PAUSE]


def test_a_stop_said_after_a_console_start_is_not_confirmed_by_the_late_answer_before(
        fake: FakeTreadmill) -> None:
    """The belt halted by a stop whose answer comes late, started on the console meanwhile,
    and "stop" said again: over bleak that stop is written (behind the late answer: one write
    at a time) and held until its own answer, and the belt halts. Before, the second stop was
    not written and the late answer to the first was taken as confirming it: a missed stop."""
    walk = Walk(fake, write_timeout=LATE_S + 2.0)
    try:
        fake.answer_delay_s = LATE_S                   # the first stop's answer comes late
        walk.say("stop")
        walk.until(lambda: fake.model.state == "stopped", "the first stop was done")
        fake.answer_delay_s = 0.0
        walk.until(lambda: (walk.belt.belt_kmh or 1.0) < 0.3, "the belt slowed")
        fake.console("start")                          # the user starts it on the console
        walk.until(lambda: (walk.belt.belt_kmh or 0.0) > 0.3, "the console's start was read")
        assert walk.coach.state is State.STOPPED and not walk.belt.halt_pending
        assert len(walk.halts()) == 1                  # its answer is still on its way
        walk.say("stop")
        walk.until(lambda: not walk.belt.halt_pending, "the second stop was confirmed")
        walk.until(lambda: fake.model.speed_kmh < 0.01, "the belt halted")
        assert fake.model.state == "stopped", "a missed stop"
        assert walk.halts() == [ftms.stop(), ftms.stop()]
        assert sayings.STOP_UNCONFIRMED not in walk.said()
    finally:
        walk.link.close()


@pytest.mark.parametrize("refusal", [Result.FAILED, Result.NOT_PERMITTED])
def test_a_pause_the_treadmill_does_not_take_is_said_and_written_until_taken(
        fake: FakeTreadmill, refusal: Result) -> None:
    """"pause" said and the treadmill answers the pause (and the first retry) 'failed' or
    'control not permitted', not pausing: the coach says the belt may still be moving and
    writes the pause again until it is taken, never a stop. Before, a pause not taken was a
    line in the log: the belt ran on under a paused coach."""
    walk = Walk(fake)
    try:
        fake.refusing, fake.refusal = 2, refusal
        walk.say("pause")
        assert walk.coach.state is State.PAUSED
        walk.until(lambda: fake.refusing == 0 and not walk.belt.halt_pending,
                   "the pause was taken")
        assert fake.model.state == "paused", "a missed pause"
        assert walk.said().count(sayings.STOP_UNCONFIRMED) == 1
        assert walk.halts()[-1] == ftms.pause() and ftms.stop() not in walk.halts()
        assert walk.coach.state is State.PAUSED
    finally:
        walk.link.close()


def test_a_stop_said_while_the_link_is_lost_is_written_when_it_is_back(
        fake: FakeTreadmill) -> None:
    """The radio link goes mid-session (bleak sees the device disconnected) and "stop" is
    said meanwhile: the coach says the belt may still be moving; bleak connects again by
    itself and the stop is written then, and taken. The coach's own retry is what writes it:
    nothing is written late by the link."""
    walk = Walk(fake)
    try:
        fake.drop_link()
        walk.until(lambda: not walk.belt.link_up, "the link was lost")
        assert fake.model.state == "running"
        walk.say("stop")
        assert sayings.STOP_UNCONFIRMED in walk.said()
        walk.until(lambda: walk.belt.link_up, "the link came back")
        walk.until(lambda: not walk.belt.halt_pending, "the stop was confirmed")
        walk.until(lambda: fake.model.speed_kmh < 0.01, "the belt halted")
        assert fake.model.state == "stopped", "a missed stop"
        assert walk.halts() == [ftms.stop()]
        assert walk.coach.state is State.STOPPED
    finally:
        walk.link.close()
