"""bleak's real BlueZ backend against a fake FTMS treadmill on bluezoo (a mock of BlueZ's D-Bus
API on a private dbus-daemon): no root, no kernel module, no radio. The link itself: connect,
scan, writes BlueZ never answers or refuses, a write on its way when the link goes."""

from __future__ import annotations

import asyncio
import logging
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

from bluez_bus import CENTRAL, PERIPHERAL, Bluezoo, forget  # noqa: E402
from fake_ftms import Checked, FakeTreadmill, checked, run_in_thread  # noqa: E402

from voicecoach.treadmill import client, ftms, ftms_data  # noqa: E402
from voicecoach.treadmill.link import LinkDown, LinkUp, Update, WriteDone  # noqa: E402


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


#: A duplicate of the answer to a request for control, come late (seen in session 21)
STRAY = ftms.Response(ftms.Op.REQUEST_CONTROL, ftms.Result.SUCCESS).encode()


@pytest.mark.parametrize("treadmill", ["refuses", "never answers"])
def test_a_stray_answer_to_another_write_does_not_answer_a_stop(
        fake: FakeTreadmill, treadmill: str) -> None:
    """A stop met first by an answer naming another op code (request control: success), then
    by its own answer ('failed'), or by none: the stop's answer is its own, or it is not
    answered (the write's timeout). Before, whatever answer came first was taken (a line in
    the log): the stop 'confirmed' by the request for control's answer, the belt running."""
    forget()

    async def stop() -> ftms.Response | BaseException:
        ble, controller, _info = await client.connect(PERIPHERAL[1], lambda _u: None,
                                                      adapter=CENTRAL[0], write_timeout=0.5)
        try:
            assert (await controller.write(ftms.request_control())).ok
            fake.stray_op, fake.stray = ftms.Op.STOP_PAUSE, STRAY
            if treadmill == "refuses":
                fake.refusing = 1
            else:
                fake.mute_control = True  # taken (BlueZ's write acknowledged), not answered
            return await asyncio.wait_for(controller.write(ftms.stop()), GUARD_S)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            return exc
        finally:
            fake.release()
            await client.let_go(ble, 1.0)

    outcome = asyncio.run(stop())
    assert fake.stray_op == -1  # the stray answer was sent
    if treadmill == "refuses":
        assert outcome == ftms.Response(ftms.Op.STOP_PAUSE, ftms.Result.FAILED)
    else:
        assert isinstance(outcome, client.WriteTimeout), repr(outcome)
        assert outcome.message == "the treadmill did not answer 'stop' within 0.5 s"
    assert ftms.decode_command(fake.writes[-1]) == ftms.stop()


def test_a_late_answer_to_a_write_bluez_called_failed_never_answers_the_next(
        fake: FakeTreadmill, caplog: pytest.LogCaptureFixture) -> None:
    """A pause the treadmill acts on (the belt pauses) while BlueZ reports its write failed,
    its answer ('success') coming late, before the next write's: then a stop, which the
    treadmill refuses ('failed'). The stop's answer is its own; the pause's late answer is
    taken for the pause (a DEBUG line), never for the stop. Before, the late answer (same op
    code) was taken as the stop's: the stop 'confirmed', the belt only paused. A write that
    failed and was never acted on (no answer ever comes) does not hold up the next stop."""
    forget()
    caplog.set_level(logging.DEBUG, logger="voicecoach.treadmill.controller")

    async def writes() -> list[ftms.Response | str]:
        from bleak.exc import BleakError

        out: list[ftms.Response | str] = []
        ble, controller, _info = await client.connect(PERIPHERAL[1], lambda _u: None,
                                                      adapter=CENTRAL[0], write_timeout=2.0)
        try:
            assert (await controller.write(ftms.target_speed(2.0))).ok
            for command in (ftms.pause(), ftms.stop()):
                if command == ftms.pause():
                    fake.late_op = ftms.Op.STOP_PAUSE
                else:
                    fake.refusing, fake.refuse_op = 1, ftms.Op.STOP_PAUSE
                try:
                    out.append(await asyncio.wait_for(controller.write(command), GUARD_S))
                except BleakError:
                    out.append("failed")
            fake.failing_writes = 1                   # refused by BlueZ, never acted on
            for command in (ftms.pause(), ftms.stop()):
                try:
                    out.append(await asyncio.wait_for(controller.write(command), GUARD_S))
                except BleakError:
                    out.append("failed")
        finally:
            await client.let_go(ble, 1.0)
        return out

    got = asyncio.run(writes())
    assert got[:2] == ["failed", ftms.Response(ftms.Op.STOP_PAUSE, ftms.Result.FAILED)]
    assert got[2:] == ["failed", ftms.Response(ftms.Op.STOP_PAUSE, ftms.Result.SUCCESS)]
    assert fake.model.state == "stopped"
    late = [r for r in caplog.records if "late answer" in r.getMessage()]
    assert [r.levelno for r in late] == [logging.DEBUG], [r.getMessage() for r in caplog.records]
    assert "'pause'" in late[0].getMessage()


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


def test_a_scan_that_bluetooth_never_ends_is_one_clear_error(
        fake: FakeTreadmill, monkeypatch: pytest.MonkeyPatch) -> None:
    import bleak

    async def never(*_args: object, **_kwargs: object) -> None:
        await asyncio.Event().wait()  # BlueZ taking the discovery and never giving it back

    monkeypatch.setattr(bleak.BleakScanner, "discover", never)
    with pytest.raises(client.TreadmillError) as err:
        asyncio.run(client.scan(0.5, adapter=CENTRAL[0], setup_timeout=1.0))
    assert err.value.one_line().startswith("Bluetooth did not answer within 1.5 s; check")
