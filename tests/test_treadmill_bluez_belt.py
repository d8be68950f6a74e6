"""The coach's belt over bleak's real BlueZ backend against the fake treadmill on bluezoo: a
session driving it, stops never answered or refused, the safety key, a late answer to a stop,
a stray answer to another write met by a stop, a pause the treadmill does not take, a link
lost mid-session and back."""

from __future__ import annotations

import shutil
import threading
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
from fake_ftms import Checked, FakeTreadmill, checked  # noqa: E402

from voicecoach.device import sayings  # noqa: E402
from voicecoach.device.belt import BeltController  # noqa: E402
from voicecoach.events import (  # noqa: E402
    BeltReported,
    CueSpoken,
    DeviceProblem,
    Event,
    SessionEnded,
)
from voicecoach.grammar import load_grammar  # noqa: E402
from voicecoach.settings import CoachSettings, TreadmillSettings  # noqa: E402
from voicecoach.treadmill import client, ftms  # noqa: E402
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op, Result  # noqa: E402
from voicecoach.workout.coach import Coach  # noqa: E402
from voicecoach.workout.machine import State  # noqa: E402

#: Only keeps a failing run from hanging; measures nothing.
GUARD_S = 20.0
#: How late the first stop's answer comes: after the console's start and the next "stop"
LATE_S = 4.0
#: A duplicate of the answer to a request for control, come late
STRAY = ftms.Response(Op.REQUEST_CONTROL, Result.SUCCESS).encode()
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


def test_a_stop_met_by_a_stray_answer_is_held_until_its_own_answer_takes_it(
        fake: FakeTreadmill) -> None:
    """"stop" said, and the treadmill meets the stop first with a stray answer (a duplicate of
    its request for control's answer, 'success'), then answers the stop itself 'failed', not
    stopping: the stop is not confirmed by the stray answer; the coach says the belt may
    still be moving and writes the stop again until it is taken. Before, the stray answer
    was taken as the stop's: the stop confirmed, the belt running on (a missed stop)."""
    walk = Walk(fake)
    try:
        fake.stray_op, fake.stray = Op.STOP_PAUSE, STRAY
        fake.refusing, fake.refuse_op = 1, Op.STOP_PAUSE  # (the speed may still be climbing)
        walk.say("stop")
        walk.until(lambda: not walk.belt.halt_pending, "the stop was confirmed")
        assert walk.halts() == [ftms.stop(), ftms.stop()], "confirmed by the stray answer"
        walk.until(lambda: fake.model.speed_kmh < 0.01, "the belt halted")
        assert fake.model.state == "stopped", "a missed stop"
        assert walk.said().count(sayings.STOP_UNCONFIRMED) == 1
    finally:
        walk.link.close()


def test_a_stop_is_not_confirmed_by_the_late_answer_to_a_pause_before_it(
        fake: FakeTreadmill) -> None:
    """"pause" said: the treadmill pauses the belt, but BlueZ reports the write failed and
    the pause's answer ('success') comes late, just before the next write's. "stop" said
    before the pause is written again, and the treadmill refuses that stop: the pause's late
    answer is not taken as the stop's; the stop is written again until taken and the belt
    stops. Before, the late answer (the same op code) confirmed the stop: the belt left
    paused, not stopped, under a coach that took it as stopped (a stop that did not win)."""
    walk = Walk(fake)
    try:
        fake.late_op = Op.STOP_PAUSE
        walk.say("pause")
        walk.until(lambda: bool(fake.failed) and walk.belt.halt_pending
                   and not walk.belt._stop_in_flight, "the pause's write failed")
        assert fake.model.state == "paused"
        fake.refusing, fake.refuse_op = 1, Op.STOP_PAUSE
        walk.say("stop")
        assert walk.coach.state is State.STOPPED
        walk.until(lambda: not walk.belt.halt_pending, "the stop was confirmed")
        assert fake.model.state == "stopped", "the stop confirmed by the pause's late answer"
        assert walk.halts() == [ftms.pause(), ftms.stop(), ftms.stop()]
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


def _session(fake: FakeTreadmill, seconds: float, script: dict[float, str],
             **link_options: float) -> tuple[Coach, list[Event], Checked]:
    forget()
    events: list[Event] = []
    link = checked(client.BleakTreadmill(PERIPHERAL[1], adapter=CENTRAL[0],
                                         **{"reconnect_s": 0.5, **link_options}))
    coach = Coach(BELT_PLAN, CoachSettings(), load_grammar("en"), [events.append],
                  followers=[BeltController.follow(link, TreadmillSettings(control="drive"))])
    belt = coach.followers[0]
    assert isinstance(belt, BeltController)
    waited = time.monotonic()
    while not belt.link_up and time.monotonic() - waited < 20:
        coach.tick(0.0)
        time.sleep(0.05)
    assert belt.link_up, "the link did not come up"
    began = time.monotonic()
    pending = sorted(script.items())
    coach.begin(0.0)
    while time.monotonic() - began < seconds:
        now = time.monotonic() - began
        while pending and pending[0][0] <= now:
            _, command = pending.pop(0)
            coach.command(command, now, phrase="ready" if command == "yes" else command)
        coach.tick(now)
        time.sleep(0.05)
    return coach, events, link


def test_a_session_drives_the_fake_belt_over_bleak(fake: FakeTreadmill) -> None:
    fake.writes.clear()
    script = {1.0: "yes", 1.5: "yes", 2.0: "yes", 3.0: "yes", 5.5: "faster", 8.0: "stop"}
    coach, events, link = _session(fake, 10.0, script)
    try:
        ops = [ftms.decode_command(w) for w in fake.writes]
        assert ops, [e for e in events if e.type.value in ("device_problem", "state_changed")]
        assert [c.op for c in ops][:3] == [Op.REQUEST_CONTROL, Op.START_RESUME,
                                           Op.SET_TARGET_SPEED]
        speeds = [round(float(c.value or 0) / KMH_PER_MPH, 1) for c in ops
                  if c.op is Op.SET_TARGET_SPEED]
        # very slowly first, one step at a time up to the warm-up's speed, then "faster"
        assert speeds[0] == 0.5 and speeds[-2:] == [1.0, 1.1] and speeds == sorted(speeds)
        assert ops[-1] == ftms.stop()
        assert coach.state is State.STOPPED
        reported = [e.speed_mph for e in events if isinstance(e, BeltReported)]
        assert 1.1 in reported  # the speed notification came back through bleak
        assert fake.model.speed_kmh < 0.5
    finally:
        link.close()


def test_a_stop_queued_as_the_link_closes_is_written_first(fake: FakeTreadmill) -> None:
    """The device loop ending under a session halts the belt and closes the link at once:
    the stop must reach the treadmill before the link goes."""
    fake.writes.clear()
    coach, _events, link = _session(fake, 6.0, {1.0: "yes", 1.5: "yes", 2.0: "yes", 3.0: "yes"})
    belt = coach.followers[0]
    assert isinstance(belt, BeltController) and coach.state is not State.STOPPED
    assert fake.model.state == "running"
    fake.answer_delay_s = 0.4                  # a slow pad: a speed write is still on its way
    link.send(ftms.target_speed(1.5), 6.0)
    belt.halt()
    link.close()
    assert ftms.decode_command(fake.writes[-1]) == ftms.stop()
    assert fake.model.state == "stopped"


def test_a_stop_bluez_never_answers_is_said_and_kept_pending(fake: FakeTreadmill) -> None:
    """A stop that is never answered: the link is taken as lost at once (the write's own
    timeout), the coach says the belt may still be moving and how to halt it, the session
    ends as stopped, the stop stays pending (written again when the link is back). Before,
    the stop's write hung and the coach said nothing."""
    fake.writes.clear()
    coach, events, link = _session(fake, 6.0, {1.0: "yes", 1.5: "yes", 2.0: "yes",
                                                3.0: "yes"},
                                   write_timeout=0.3, disconnect_timeout=1.0, reconnect_s=60.0)
    belt = coach.followers[0]
    assert isinstance(belt, BeltController)
    try:
        assert fake.model.state == "running" and fake.model.speed_kmh > 0.3
        fake.hang_writes = True
        now = 6.0
        coach.command("stop", now, phrase="stop")
        said: list[str] = []
        began = time.monotonic()
        while sayings.STOP_UNCONFIRMED not in said and time.monotonic() - began < GUARD_S:
            now += 0.05
            coach.tick(now)
            said = [e.text for e in events if isinstance(e, CueSpoken)]
            time.sleep(0.05)
        assert sayings.STOP_UNCONFIRMED in said
        assert belt.halt_pending and not belt.link_up
        assert [ftms.decode_command(w) for w in fake.hung] == [ftms.stop()]
        assert fake.model.state == "running"  # that stop never reached the belt
        assert coach.state is State.STOPPED
        assert [e.outcome for e in events if isinstance(e, SessionEnded)] == ["stopped"]
        # a stop pending over a lost link is written when it is back:
        # test_a_stop_said_while_the_link_is_lost_is_written_when_it_is_back
    finally:
        fake.release()
        link.close()


def test_a_stop_bluetooth_says_is_not_connected_is_said_and_the_link_taken_as_lost(
        fake: FakeTreadmill) -> None:
    """The belt runs and the link goes in a way BlueZ reports at once: every write fails
    with org.bluez.Error.Failed "Not connected" (bleak still holds the device). The stop's
    write fails: the coach says the belt may still be moving and how to halt it, the link is
    taken as lost at once (reconnecting; the stop kept pending, written when it is back).
    Before, the failure was a line in the log and the link stayed 'up'."""
    fake.writes.clear()
    coach, events, link = _session(fake, 6.0, {1.0: "yes", 1.5: "yes", 2.0: "yes",
                                                3.0: "yes"},
                                   disconnect_timeout=1.0, reconnect_s=60.0)
    belt = coach.followers[0]
    assert isinstance(belt, BeltController)
    try:
        assert fake.model.state == "running" and fake.model.speed_kmh > 0.3
        fake.bluetooth_error, fake.failing_writes = "Not connected", 1000
        now = 6.0
        coach.command("stop", now, phrase="stop")
        began = time.monotonic()
        while belt.link_up and time.monotonic() - began < GUARD_S:
            now += 0.05
            coach.tick(now)
            time.sleep(0.05)
        said = [e.text for e in events if isinstance(e, CueSpoken)]
        assert said.count(sayings.STOP_UNCONFIRMED) == 1
        assert belt.halt_pending and not belt.link_up
        [lost] = [e for e in events if isinstance(e, DeviceProblem) and e.problem == "link lost"]
        assert lost.extra["reason"] == ("'stop' failed: Bluetooth: [org.bluez.Error.Failed] Not "
                                        "connected; the link is dropped and tried again")
        assert [ftms.decode_command(w) for w in fake.failed] == [ftms.stop()]
        assert fake.model.state == "running"  # that stop never reached the belt
        assert coach.state is State.STOPPED
    finally:
        link.close()


def test_the_safety_key_on_the_fake_stops_the_coach(fake: FakeTreadmill) -> None:
    fake.model.controlled = False
    script = {1.0: "yes", 1.5: "yes", 2.0: "yes", 3.0: "yes"}
    threading.Timer(6.0, fake.console, args=("safety_key",)).start()
    coach, events, link = _session(fake, 8.0, script)
    try:
        assert coach.state is State.STOPPED
        assert any("safety key" in getattr(e, "text", "") for e in events)
    finally:
        link.close()
