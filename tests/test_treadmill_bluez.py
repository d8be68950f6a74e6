"""bleak's real BlueZ backend against a fake FTMS treadmill on bluezoo (a mock of BlueZ's D-Bus
API on a private dbus-daemon): no root, no kernel module, no radio."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("bluezoo", reason="bluezoo is in the test extra")
if shutil.which("dbus-daemon") is None:
    pytest.skip("dbus-daemon is not installed (Debian package dbus)", allow_module_level=True)

# bleak keeps one BlueZ manager (a D-Bus connection) per event loop and never closes it; the
# loops here end with the test, so its socket is reported unclosed when collected.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

from belt_helpers import BELT_PLAN  # noqa: E402
from bluez_bus import CENTRAL, PERIPHERAL, Bluezoo, forget, mock_bluez, stuck_bluez  # noqa: E402
from fake_ftms import Checked, FakeTreadmill, checked, run_in_thread  # noqa: E402

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
from voicecoach.treadmill import client, ftms, ftms_data  # noqa: E402
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op  # noqa: E402
from voicecoach.treadmill.link import LinkDown, LinkUp, Update, WriteDone  # noqa: E402
from voicecoach.treadmill.sim import Quirks  # noqa: E402
from voicecoach.workout.coach import Coach  # noqa: E402
from voicecoach.workout.machine import State  # noqa: E402


def test_info_reads_features_and_ranges(fake: FakeTreadmill) -> None:
    forget()

    async def info() -> ftms_data.Features:
        ble, _controller, got = await client.connect(PERIPHERAL[1], lambda _u: None,
                                                     adapter=CENTRAL[0])
        await ble.disconnect()
        assert got.speed_range == fake.model.speed_range
        assert got.incline_range == fake.model.incline_range
        return got.features

    assert asyncio.run(info()).speed_target


def test_an_address_that_is_not_there_is_one_clear_error(fake: FakeTreadmill) -> None:
    with pytest.raises(client.TreadmillError) as err:
        asyncio.run(client.connect("00:00:00:00:CC:03", lambda _u: None, adapter=CENTRAL[0],
                                   timeout=3.0))
    line = err.value.one_line()
    assert "\n" not in line and ("00:00:00:00:CC:03" in line or "Bluetooth" in line)


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


# Bounds on the calls BlueZ may never answer. Each test's own timeout is short and injected;
# the outer waits (GUARD_S) only keep a failing run from hanging, they measure nothing.
GUARD_S = 20.0


def test_a_write_bluez_never_answers_gives_up_after_the_write_timeout(
        fake: FakeTreadmill) -> None:
    """The treadmill (or BlueZ) takes a control point write and never answers it. Only the
    indication had a timeout: the write itself was awaited for ever, and a stop that hung so
    froze the link's writer and every write queued behind it."""
    forget()

    async def stop() -> BaseException | None:
        ble, controller, _info = await client.connect(PERIPHERAL[1], lambda _u: None,
                                                      adapter=CENTRAL[0], write_timeout=0.2)
        try:
            assert (await controller.write(ftms.request_control())).ok
            fake.hang_writes = True
            await asyncio.wait_for(controller.write(ftms.stop()), GUARD_S)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            return exc
        finally:
            fake.release()
            await client.let_go(ble, 1.0)
        return None

    outcome = asyncio.run(stop())
    assert isinstance(outcome, client.WriteTimeout), repr(outcome)
    assert outcome.message == "the treadmill did not answer 'stop' within 0.2 s"
    assert [ftms.decode_command(w) for w in fake.hung] == [ftms.stop()]


def _polled_link(**options: float) -> tuple[Checked, list[Update],
                                           Callable[[Callable[[], bool]], None]]:
    """A link to the fake treadmill polled by hand (write timeout 0.3 s unless given, no
    reconnect within a test; its answers checked: one per write, in order), the updates it
    gave, and ``until(done)``: poll until ``done()`` (or the guard)."""
    forget()
    link = checked(client.BleakTreadmill(PERIPHERAL[1], adapter=CENTRAL[0], reconnect_s=60.0,
                                         disconnect_timeout=1.0,
                                         **{"write_timeout": 0.3, **options}))
    seen: list[Update] = []

    def until(done: Callable[[], bool]) -> None:
        began = time.monotonic()
        while not done() and time.monotonic() - began < GUARD_S:
            seen.extend(link.poll(0.0))
            time.sleep(0.02)

    return link, seen, until


def test_a_speed_queued_behind_a_write_that_timed_out_is_never_written(
        fake: FakeTreadmill) -> None:
    """Writes acknowledged late (BlueZ answering after seconds): the first times out, and the
    speed the coach queued behind it must not reach the belt later, by surprise. Before, the
    late write went on and the queued speed was written after it."""
    link, seen, until = _polled_link()
    try:
        until(lambda: any(isinstance(u, LinkUp) for u in seen))
        fake.write_reply_s = 2.0
        link.send(ftms.target_speed(1.0), 0.0)
        link.send(ftms.target_speed(1.5), 0.0)
        until(lambda: sum(isinstance(u, WriteDone) for u in seen) >= 2)
        done = {u.command: u.error for u in seen if isinstance(u, WriteDone)}
        assert done == {ftms.target_speed(1.0): "timed out",
                        ftms.target_speed(1.5): "not connected"}
        [down] = [u.reason for u in seen if isinstance(u, LinkDown)]
        assert down == ("the treadmill did not answer 'request control' within 0.3 s; the "
                        "link is dropped and tried again")
    finally:
        link.close()
    assert ftms.target_speed(1.5) not in [ftms.decode_command(w) for w in fake.writes]


def test_a_write_on_its_way_when_the_link_goes_is_answered_before_the_link_down(
        fake: FakeTreadmill) -> None:
    """A stop taken by the treadmill, not answered, and the radio link goes: the stop is
    answered 'link lost', once, before the link is reported down (link.Treadmill's rule: one
    answer per write, in order; the belt counts its stops' answers by it). Before, the
    writer was cancelled with the stop on its way and it was never answered."""
    link, seen, until = _polled_link(write_timeout=GUARD_S)
    try:
        until(lambda: any(isinstance(u, LinkUp) for u in seen))
        fake.hang_writes = True
        link.send(ftms.stop(), 0.0)
        until(lambda: bool(fake.hung))
        fake.drop_link()
        until(lambda: any(isinstance(u, LinkDown) for u in seen))
        after = [(type(u).__name__, getattr(u, "command", None), getattr(u, "error", None))
                 for u in seen if isinstance(u, (WriteDone, LinkDown))]
        assert after == [("WriteDone", ftms.stop(), "link lost"), ("LinkDown", None, None)]
    finally:
        fake.release()
        link.close()


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
        # tests/test_treadmill_bluez_belt.py
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


def test_writes_failing_at_once_are_a_lost_link_once_they_go_on_not_after_one(
        fake: FakeTreadmill) -> None:
    """One write BlueZ refuses at once (org.bluez.Error.Failed), then the link's check (a
    read) answered and the next write taken: not a lost link. Writes and reads refused for
    the write timeout (0.3 s here): a lost link, found by the checks with nothing more
    written. Before, neither was a lost link."""
    link, seen, until = _polled_link(check_s=0.05)
    try:
        until(lambda: any(isinstance(u, LinkUp) for u in seen))
        reads = fake.reads
        fake.failing_writes = 1
        link.send(ftms.target_speed(1.0), 0.0)
        until(lambda: fake.reads > reads)                   # checked: answered
        link.send(ftms.target_speed(1.2), 0.0)
        until(lambda: sum(isinstance(u, WriteDone) for u in seen) >= 2)
        done = [(u.command, u.error, u.ok) for u in seen if isinstance(u, WriteDone)]
        assert done[:2] == [
            (ftms.target_speed(1.0), "Bluetooth: [org.bluez.Error.Failed] Operation failed", False),
            (ftms.target_speed(1.2), "", True)]
        assert not any(isinstance(u, LinkDown) for u in seen)
        fake.failing_writes = fake.failing_reads = 1000
        link.send(ftms.target_speed(1.5), 0.0)
        until(lambda: any(isinstance(u, LinkDown) for u in seen))
        [down] = [u.reason for u in seen if isinstance(u, LinkDown)]
        assert down == ("writes to the treadmill failed for 0.3 s (Bluetooth: "
                        "[org.bluez.Error.Failed] Operation failed); the link is dropped and "
                        "tried again")
        assert fake.failing_reads < 1000                  # found by checking
        # (control is asked for before the first write: that is the one refused)
        assert [ftms.decode_command(w) for w in fake.failed] == [
            ftms.request_control(), ftms.target_speed(1.5)]
    finally:
        link.close()
    assert fake.model.target_kmh == pytest.approx(1.2)


def test_a_hung_bluetooth_service_is_one_doctor_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """bluetoothd owns its D-Bus name and never answers: doctor listed the adapters for ever.
    Now one FAIL line about Bluetooth, after the adapters' timeout (here 0.3 s)."""
    from voicecoach.checks import FAIL, Check
    from voicecoach.doctor import check_treadmill
    from voicecoach.settings import Settings
    from voicecoach.treadmill import bluetooth

    monkeypatch.setattr(bluetooth, "ADAPTERS_TIMEOUT_S", 0.3)
    settings = Settings(treadmill=TreadmillSettings(control="drive", address=PERIPHERAL[1]))
    checks: list[Check] = []
    try:
        bus = stuck_bluez()
        bus.__enter__()
    except RuntimeError as exc:
        pytest.skip(f"cannot start a private dbus-daemon: {exc}")
    try:
        worker = threading.Thread(target=lambda: checks.extend(check_treadmill(settings)),
                                  daemon=True)
        worker.start()
        worker.join(GUARD_S)
        assert not worker.is_alive(), "doctor's Bluetooth check never ended"
    finally:
        bus.__exit__(None, None, None)
    assert [c.line() for c in checks] == [
        f"{FAIL:<4}  bluetooth: the Bluetooth service (bluetoothd) did not answer within 0.3 s"
        " -> fix: restart it: sudo systemctl restart bluetooth"]


def test_doctor_gives_a_treadmill_that_does_not_answer_its_own_bound_and_one_line(
        fake: FakeTreadmill, monkeypatch: pytest.MonkeyPatch) -> None:
    """The treadmill is found and connected but never answers its reads: doctor gives it
    TREADMILL_CHECK_S (10 s; 1 s here), then one FAIL line saying what did not answer and how
    to fix it. It waited the coach's 30 s setup limit."""
    from voicecoach import doctor
    from voicecoach.checks import FAIL, OK, Check
    from voicecoach.settings import Settings

    monkeypatch.setattr(doctor, "TREADMILL_CHECK_S", 1.0, raising=False)
    fake.read_delay_s = 3600.0
    forget()
    settings = Settings(treadmill=TreadmillSettings(control="drive", address=PERIPHERAL[1]))
    checks: list[Check] = []
    worker = threading.Thread(target=lambda: checks.extend(doctor.check_treadmill(settings)),
                              daemon=True)
    worker.start()
    worker.join(GUARD_S)
    assert not worker.is_alive(), "doctor's treadmill check outlasted its bound"
    assert [c.status for c in checks] == [OK, FAIL]
    assert checks[1].line() == (
        f"{FAIL:<4}  treadmill: the treadmill FakeTread did not answer within 1 s -> fix: "
        "switch the treadmill on (wake a sleeping pad: press a key on it), disconnect any other "
        f"app from it (a phone's), pair it if it asks (bluetoothctl pair {PERIPHERAL[1]}), and "
        "check [treadmill] address with `voicecoach treadmill scan`")


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


def test_scan_lists_the_fake_treadmill(fake: FakeTreadmill) -> None:
    # Last on this bus: bluezoo reports a device to one discovery only (real BlueZ reports
    # each advertisement), so a connect by address after a scan would not find it here.
    forget()
    found = asyncio.run(client.scan(2.5, adapter=CENTRAL[0]))
    assert [(f.name, f.address) for f in found] == [("FakeTread", PERIPHERAL[1])]


def test_a_device_that_is_not_an_ftms_treadmill(bluez: Bluezoo) -> None:
    """A second peripheral is not possible on a bus with the fake treadmill: its own bus."""
    battery = FakeTreadmill(name="Battery", ftms_service=False)
    thread = run_in_thread(battery)
    try:
        forget()
        with pytest.raises(client.TreadmillError, match="not an FTMS treadmill"):
            asyncio.run(client.connect(PERIPHERAL[1], lambda _u: None, adapter=CENTRAL[0]))
    finally:
        battery.close()
        thread.join(5)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    forget()  # a fresh process starts a fresh discovery
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "voicecoach", "treadmill", "--adapter",
                           CENTRAL[0], *args], text=True, capture_output=True, timeout=60,
                          env=env)


def _one_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0], lines[0]


def test_cli_scan_and_info(fake: FakeTreadmill) -> None:
    scan = _cli("scan", "--timeout", "2")
    assert scan.returncode == 0, scan.stderr
    assert PERIPHERAL[1] in scan.stdout and "FakeTread" in scan.stdout
    info = _cli("info", PERIPHERAL[1])
    assert info.returncode == 0, info.stderr
    assert "speed range: 0.8 to 16 km/h" in info.stdout and "belt: 0.0 mph" in info.stdout
    assert fake.writes == []  # info moves nothing


# One connection per mock BlueZ: bluezoo cannot export a device's GATT objects a second time
# after the device was forgotten and found again (EEXIST), so each of these has its own.
def test_cli_test_moves_nothing_without_move(fake: FakeTreadmill) -> None:
    test = _cli("test", "FakeTread")
    assert test.returncode == 0, test.stderr
    assert "control: granted" in test.stdout and "not moved" in test.stdout
    assert [ftms.decode_command(w).op for w in fake.writes] == [Op.REQUEST_CONTROL]


def test_cli_test_move_runs_the_belt_at_its_slowest_then_halts_it(fake: FakeTreadmill) -> None:
    moved = _cli("test", PERIPHERAL[1], "--move")
    assert moved.returncode == 0, moved.stderr + moved.stdout
    assert "result: belt reached 0.8 km/h, halted" in moved.stdout
    ops = [ftms.decode_command(w) for w in fake.writes]
    assert ops == [ftms.request_control(), ftms.start_resume(), ftms.target_speed(0.8),
                   ftms.stop()]


def test_cli_control_not_permitted_is_one_line(fake: FakeTreadmill) -> None:
    fake.model.quirks = Quirks(denies_control=True)
    _one_line(_cli("test", PERIPHERAL[1]), "not permitted")


def test_cli_a_write_that_times_out_is_one_line(fake: FakeTreadmill) -> None:
    fake.mute_control = True
    _one_line(_cli("test", PERIPHERAL[1]), "did not answer")


def test_cli_test_move_a_stop_never_answered_says_the_belt_may_still_move(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the belt runs and its stop is never answered. The line says
    the belt may still be moving and how to halt it (before: only that the stop was not
    answered, with 'check it is on and close')."""
    fake.hang_op = int(Op.STOP_PAUSE)
    result = _cli("test", PERIPHERAL[1], "--move")
    _one_line(result, "the treadmill did not answer 'stop' within 3 s: the belt may still be "
                      "moving; halt it on the console or pull the safety key.")
    assert [ftms.decode_command(w) for w in fake.hung] == [ftms.stop()]
    assert fake.model.state == "running"


def test_cli_a_treadmill_that_never_answers_is_one_line(fake: FakeTreadmill) -> None:
    """Connected, but its reads are never answered (BlueZ would wait 25 s per read, bleak
    for ever): the setup gives up after --setup-timeout with one line saying what to check."""
    fake.read_delay_s = 3600.0
    result = _cli("--setup-timeout", "3", "info", PERIPHERAL[1])
    _one_line(result, "did not answer within 3 s")
    assert "treadmill is on and in range" in result.stderr and "Bluetooth is on" in result.stderr


def test_a_scan_that_bluetooth_never_ends_is_one_clear_error(
        fake: FakeTreadmill, monkeypatch: pytest.MonkeyPatch) -> None:
    import bleak

    async def never(*_args: object, **_kwargs: object) -> None:
        await asyncio.Event().wait()  # BlueZ taking the discovery and never giving it back

    monkeypatch.setattr(bleak.BleakScanner, "discover", never)
    with pytest.raises(client.TreadmillError) as err:
        asyncio.run(client.scan(0.5, adapter=CENTRAL[0], setup_timeout=1.0))
    assert err.value.one_line().startswith("Bluetooth did not answer within 1.5 s; check")


def test_cli_an_address_that_is_not_there(fake: FakeTreadmill) -> None:
    _one_line(_cli("info", "00:00:00:00:CC:03"), "00:00:00:00:CC:03")


def test_cli_bluetooth_off_no_adapter_and_no_bluetooth_service() -> None:
    for kind, needle in (({"powered": False}, "Bluetooth is off"),
                         ({"adapters": 0}, "no Bluetooth adapter")):
        try:
            zoo = mock_bluez(**kind)  # type: ignore[arg-type]
            zoo.__enter__()
        except RuntimeError as exc:
            pytest.skip(f"cannot start a private dbus-daemon with bluezoo: {exc}")
        try:
            result = subprocess.run([sys.executable, "-m", "voicecoach", "treadmill", "scan",
                                     "--timeout", "1"], text=True, capture_output=True,
                                    timeout=60, env={**os.environ})
            _one_line(result, needle)
        finally:
            zoo.__exit__(None, None, None)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    result = subprocess.run([sys.executable, "-m", "voicecoach", "treadmill", "info",
                             "00:00:00:00:CC:03"], text=True, capture_output=True, timeout=60,
                            env=env)
    _one_line(result, "Bluetooth")


# doctor names no adapter. It used to leave the choice to bleak, whose default is the first
# powered adapter in a Python set of object paths: its order follows string hashing, which is
# randomised per process, so about one doctor run in two scanned with hci1, the fake
# treadmill's own adapter, and never saw it. Both hash seeds below are fixed: with seed 1
# bleak's own choice is hci1 here, so this test failed every time before the fix.
@pytest.mark.parametrize("hash_seed", ["0", "1"])
def test_doctor_checks_bluetooth_and_the_treadmill(fake: FakeTreadmill, tmp_path: Path,
                                                   hash_seed: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[treadmill]\ncontrol = "drive"\naddress = "{PERIPHERAL[1]}"\n')
    forget()
    result = subprocess.run([sys.executable, "-m", "voicecoach", "--data-dir", str(tmp_path),
                             "doctor", "--no-render", "--config", str(config)], text=True,
                            capture_output=True, timeout=120,
                            env={**os.environ, "PYTHONHASHSEED": hash_seed})
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok") and "bluetooth: hci0 (on), hci1 (on)" in line
               for line in lines), result.stdout
    assert any(line.startswith("ok") and "treadmill: FakeTread: FTMS" in line
               for line in lines), result.stdout
