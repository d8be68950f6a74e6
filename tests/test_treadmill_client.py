"""BleakTreadmill's background link without Bluetooth: connect() replaced by a fake."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from belt_helpers import BeltRun
from bleak.exc import BleakDBusError, BleakError

from voicecoach.device import sayings
from voicecoach.treadmill import client, ftms
from voicecoach.treadmill.ftms_data import Features, TreadmillData
from voicecoach.treadmill.link import (
    DEFAULT_INCLINE_RANGE,
    DEFAULT_SPEED_RANGE,
    FailingWrites,
    LinkDown,
    LinkUp,
    TreadmillInfo,
    WriteDone,
)
from voicecoach.workout.plan import Phase, Plan

#: Only keeps a failing run from hanging; the bounds under test are the injected ones.
GUARD_S = 20.0


def test_a_bleak_error_while_setting_up_does_not_end_the_reconnecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The link dropping while the treadmill is being set up (bleak raises its own error, not
    a TreadmillError) is one line and the link is tried again; it ended the reconnecting for
    the rest of the process, so no later stop was ever written."""
    calls: list[int] = []
    again = threading.Event()

    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise BleakError("Not connected")
        again.set()
        raise client.TreadmillError("no Bluetooth device 'x' in range", "switch it on")

    monkeypatch.setattr(client, "connect", connect)
    link = client.BleakTreadmill("AA:BB:CC:DD:EE:FF", reconnect_s=0.01)
    try:
        assert again.wait(5.0), "the link was never tried again after bleak's error"
    finally:
        link.close()
    downs = [u for u in link.poll(0.0) if isinstance(u, LinkDown)]
    assert downs and "Not connected" in downs[0].reason and "\n" not in downs[0].reason


class _StuckClient:
    """A BleakClient whose disconnect BlueZ never answers."""

    address = "AA:BB:CC:DD:EE:FF"

    def __init__(self) -> None:
        self.disconnects = 0

    async def disconnect(self) -> None:
        self.disconnects += 1
        await asyncio.Event().wait()


def _info() -> TreadmillInfo:
    return TreadmillInfo("Pad", _StuckClient.address, Features(frozenset(), frozenset()),
                         DEFAULT_SPEED_RANGE, DEFAULT_INCLINE_RANGE)


def test_a_disconnect_that_never_ends_after_a_loss_does_not_stop_the_reconnecting(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The link drops and BlueZ never answers the disconnect that follows: it is given up
    (one line in the log) and the link is tried again. It waited for ever, so a stop to be
    written again when the link came back never was."""
    stuck = _StuckClient()
    calls: list[int] = []
    again = threading.Event()

    async def connect(_address: str, _on_update: Any, on_disconnect: Any, *_args: Any,
                      **_kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            asyncio.get_running_loop().call_later(0.05, on_disconnect)  # the link drops
            return stuck, SimpleNamespace(device=None), _info()
        again.set()
        raise client.TreadmillError("no Bluetooth device 'x' in range", "switch it on")

    monkeypatch.setattr(client, "connect", connect)
    caplog.set_level(logging.WARNING, logger="voicecoach.treadmill")
    link = client.BleakTreadmill(_StuckClient.address, reconnect_s=0.01, disconnect_timeout=0.2)
    try:
        assert again.wait(GUARD_S), "the link was never tried again after the stuck disconnect"
    finally:
        link.close()
    assert stuck.disconnects == 1
    given_up = [r.getMessage() for r in caplog.records if "disconnecting" in r.getMessage()]
    assert given_up == ["treadmill: Bluetooth did not finish disconnecting within 0.2 s; "
                        "given up"]
    updates = link.poll(0.0)
    assert [type(u) for u in updates][:2] == [LinkUp, LinkDown]


def test_close_gives_up_a_disconnect_that_never_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The program ends (a session's end to write, the process to exit) and BlueZ never
    answers the disconnect: close gives it up with one line and its thread ends."""
    stuck = _StuckClient()
    up = threading.Event()

    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        up.set()
        return stuck, SimpleNamespace(device=None), _info()

    monkeypatch.setattr(client, "connect", connect)
    caplog.set_level(logging.WARNING, logger="voicecoach.treadmill")
    link = client.BleakTreadmill(_StuckClient.address, disconnect_timeout=0.2)
    assert up.wait(GUARD_S)
    link.close()
    assert not link._thread.is_alive()
    assert stuck.disconnects == 1
    given_up = [r.getMessage() for r in caplog.records if "disconnecting" in r.getMessage()]
    assert given_up == ["treadmill: Bluetooth did not finish disconnecting within 0.2 s; "
                        "given up"]


# ---------------------------------------------------------------- writes that fail at once
def test_failing_writes_are_a_lost_link_by_the_rule_of_a_hung_write() -> None:
    """The rule on its own clock: "not connected" at once; any other Bluetooth error once
    failures have gone on for the window (a hung write's bound) with nothing answered between;
    an answer ends the run."""
    other = "Bluetooth: [org.bluez.Error.Failed] Operation failed"
    rule = FailingWrites(3.0)
    assert not rule.failed(10.0, other) and not rule.failed(12.9, other)
    rule.answered()                          # a write (or check) answered: a new run
    assert not rule.failed(13.0, other) and not rule.failed(15.9, other)
    assert rule.failed(16.0, other)
    for gone in ("Bluetooth: Not connected", "Bluetooth: [org.bluez.Error.Failed] Not connected",
                 "Bluetooth: [org.bluez.Error.NotConnected] "):
        assert FailingWrites(3.0).failed(0.0, gone), gone


class _FailingController:
    """A connected treadmill whose writes and checks fail (or not) as the test says."""

    def __init__(self) -> None:
        self.device = None
        self.error: BaseException | None = None  # what writes and checks raise now
        self.fail_next = 0                       # ... or only the next few writes
        self.writes: list[ftms.Command] = []
        self.checks = 0
        self.checked = threading.Event()

    async def write(self, command: ftms.Command) -> ftms.Response:
        self.writes.append(command)
        if self.fail_next:
            self.fail_next -= 1
            raise BleakDBusError("org.bluez.Error.Failed", ["Operation failed"])
        if self.error is not None:
            raise self.error
        return ftms.Response(command.op, ftms.Result.SUCCESS)

    async def check(self) -> None:
        self.checks += 1
        self.checked.set()
        if self.error is not None:
            raise self.error


class _Client:
    address = "AA:BB:CC:DD:EE:FF"

    async def disconnect(self) -> None:
        pass


def _failing_link(monkeypatch: pytest.MonkeyPatch, controller: _FailingController,
                  ) -> tuple[client.BleakTreadmill, Callable[[Callable[[list[Any]], bool]], list[Any]]]:
    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        return _Client(), controller, _info()

    monkeypatch.setattr(client, "connect", connect)
    # reconnect_s: one connection only; check_s and write_timeout are the injected bounds
    link = client.BleakTreadmill(_Client.address, reconnect_s=60.0, write_timeout=0.3,
                                 check_s=0.02, disconnect_timeout=0.2)
    seen: list[Any] = []

    def until(done: Callable[[list[Any]], bool]) -> list[Any]:
        guard = threading.Event()
        for _ in range(int(GUARD_S / 0.01)):
            seen.extend(link.poll(0.0))
            if done(seen):
                break
            guard.wait(0.01)
        return seen

    until(lambda s: any(isinstance(u, LinkUp) for u in s))
    return link, until


def _lost_after_writing(link: client.BleakTreadmill,
                       until: Callable[[Callable[[list[Any]], bool]], list[Any]],
                       command: ftms.Command) -> tuple[list[Any], str]:
    """Write ``command``, poll until the link is lost and close it: the updates seen and the
    reason of the one LinkDown."""
    try:
        link.send(command, 0.0)
        seen = until(lambda s: any(isinstance(u, LinkDown) for u in s))
    finally:
        link.close()
    [down] = [u.reason for u in seen if isinstance(u, LinkDown)]
    return seen, down


def test_a_write_bluetooth_says_is_not_connected_is_a_lost_link_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The write fails at once and Bluetooth says the treadmill is not connected (bleak's own
    "Not connected", BlueZ's with the radio link gone): the link is lost at once, as a hung
    write is, without a check. Before, the failure was one line and the link stayed 'up'."""
    controller = _FailingController()
    controller.error = BleakError("Not connected")
    link, until = _failing_link(monkeypatch, controller)
    seen, down = _lost_after_writing(link, until, ftms.target_speed(1.6))
    assert down == ("'target speed 1.60 km/h' failed: Bluetooth: Not connected; the link is "
                    "dropped and tried again")
    assert controller.writes == [ftms.target_speed(1.6)] and controller.checks == 0
    [done] = [u for u in seen if isinstance(u, WriteDone)]
    assert done.error == "Bluetooth: Not connected"


def test_one_failed_write_then_an_answer_is_not_a_lost_link_but_failures_that_go_on_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A write failing at once with another Bluetooth error: the link checks itself (a read,
    nothing moves) while no write comes; the check answered, the next write goes out and
    nothing is lost. Writes and checks failing for the write timeout (0.3 s here) are a lost
    link. Before, neither was: the coach carried on as though the belt followed it."""
    controller = _FailingController()
    controller.fail_next = 1
    link, until = _failing_link(monkeypatch, controller)
    try:
        link.send(ftms.target_speed(1.6), 0.0)
        assert controller.checked.wait(GUARD_S), "the link never checked itself"
        link.send(ftms.target_speed(1.7), 0.0)
        seen = until(lambda s: sum(isinstance(u, WriteDone) for u in s) >= 2)
        assert [(u.command, u.error) for u in seen if isinstance(u, WriteDone)] == [
            (ftms.target_speed(1.6), "Bluetooth: [org.bluez.Error.Failed] Operation failed"),
            (ftms.target_speed(1.7), "")]
        assert not any(isinstance(u, LinkDown) for u in seen)
        checks = controller.checks
        controller.error = BleakDBusError("org.bluez.Error.Failed", ["Operation failed"])
        _seen, down = _lost_after_writing(link, until, ftms.target_speed(1.8))
    finally:
        link.close()
    assert down == ("writes to the treadmill failed for 0.3 s (Bluetooth: "
                    "[org.bluez.Error.Failed] Operation failed); the link is dropped and tried "
                    "again")
    assert controller.checks > checks            # found by checking: nothing more was written
    assert controller.writes[-1] == ftms.target_speed(1.8)


def test_a_speed_bluetooth_refuses_once_is_not_taken_and_the_next_faster_steps_from_the_belt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real link and belt controller, a fake treadmill behind bleak's seam: one "faster"
    (0.5 -> 0.6 mph) whose write Bluetooth refuses at once, the link's check then answered
    (not a lost link). The coach's target goes back to the treadmill's last confirmed 0.5 mph,
    said once; nothing is written again on its own; the next "faster" writes 0.6 mph again,
    one step from the belt. Before, 0.6 was taken as written and the next wrote 0.7."""
    controller = _FailingController()
    notify: list[Callable[[Any], None]] = []

    async def connect(_address: str, on_update: Callable[[Any], None], *_args: Any,
                      **_kwargs: Any) -> Any:
        notify.append(on_update)   # the treadmill's notifications, as bleak hands them on
        return _Client(), controller, _info()

    monkeypatch.setattr(client, "connect", connect)
    link = client.BleakTreadmill(_Client.address, reconnect_s=60.0, write_timeout=0.3,
                                 check_s=0.02, disconnect_timeout=0.2)
    plan = Plan("slow", (Phase("warmup", 600.0, 0.5, 0.5, 1.5, cues="warmup"),))
    run = BeltRun(sim=link, plan=plan)  # type: ignore[arg-type]  # a Treadmill like the sim

    def settle(done: Callable[[], bool]) -> None:
        """Poll the link at the same workout time until ``done`` (the link's own thread)."""
        guard = threading.Event()
        for _ in range(int(GUARD_S / 0.01)):
            run.coach.tick(run.t)
            if done():
                return
            guard.wait(0.01)
        raise AssertionError("the link never got there")

    def speeds() -> list[float]:
        return [float(c.value or 0) for c in controller.writes
                if c.op is ftms.Op.SET_TARGET_SPEED]

    try:
        settle(lambda: run.belt.link_up)
        run.briefed().ready()
        settle(lambda: speeds() == [0.8])                    # the very slow start
        notify[0](TreadmillData(0.8, None, None))            # the belt shows it
        settle(lambda: run.belt.belt_kmh == 0.8)
        controller.fail_next = 1
        run.say("faster")
        settle(lambda: sayings.BELT_NOT_TAKEN in run.said())
        assert run.coach.speed_mph == pytest.approx(0.5) and run.belt.link_up
        assert speeds() == [0.8, 1.0]
        run.at(run.t + 12)                                   # past a step's timeout
        settle(lambda: controller.checks > 0)
        assert speeds() == [0.8, 1.0] and run.belt.link_up   # not written again on its own
        run.say("faster")
        settle(lambda: len(speeds()) == 3)
        assert speeds() == [0.8, 1.0, 1.0]                   # one step from the belt's 0.8
        assert run.coach.speed_mph == pytest.approx(0.6)
        assert run.said().count(sayings.BELT_NOT_TAKEN) == 1
    finally:
        link.close()
