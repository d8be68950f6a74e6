"""`voicecoach treadmill` and doctor against the fake FTMS treadmill on bluezoo (bleak's real
BlueZ backend, a private dbus-daemon), a Bluetooth that is off or absent, and a bluetoothd
that never answers: one line for each trouble."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("bluezoo", reason="bluezoo is in the test extra")
if shutil.which("dbus-daemon") is None:
    pytest.skip("dbus-daemon is not installed (Debian package dbus)", allow_module_level=True)

# bleak keeps one BlueZ manager (a D-Bus connection) per event loop and never closes it; the
# loops here end with the test, so its socket is reported unclosed when collected.
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

from bluez_bus import CENTRAL, PERIPHERAL, forget, mock_bluez, stuck_bluez  # noqa: E402
from fake_ftms import FakeTreadmill  # noqa: E402

from voicecoach.settings import TreadmillSettings  # noqa: E402
from voicecoach.treadmill import ftms  # noqa: E402
from voicecoach.treadmill.ftms import Op  # noqa: E402
from voicecoach.treadmill.sim import Quirks  # noqa: E402

# Bounds on the calls BlueZ may never answer: the outer waits (GUARD_S) only keep a failing
# run from hanging, they measure nothing.
GUARD_S = 20.0

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


def test_cli_test_move_a_stop_done_but_never_answered_says_the_belt_is_not_moving(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the treadmill halts the belt but the stop's answer never
    comes. The belt was read at 0 within the last 3 s: the line says the stop is not
    confirmed but the belt is not moving now, and what to do if it moves (before: that it
    may still be moving, the belt read at 0 for seconds)."""
    fake.unanswered_op = int(Op.STOP_PAUSE)
    result = _cli("test", PERIPHERAL[1], "--move")
    _one_line(result, "the treadmill did not answer 'stop' within 3 s: the stop is not "
                      "confirmed, but the belt is not moving now; if it moves, halt it on the "
                      "console or pull the safety key.")
    assert ftms.decode_command(fake.writes[-1]) == ftms.stop()
    assert fake.model.state == "stopped" and fake.model.speed_kmh == 0.0


@pytest.mark.parametrize("refusal", [ftms.Result.FAILED, ftms.Result.NOT_PERMITTED],
                         ids=["failed", "not-permitted"])
def test_cli_test_move_a_refused_stop_says_at_once_the_belt_may_still_move(
        fake: FakeTreadmill, refusal: ftms.Result) -> None:
    """`treadmill test --move`: the belt reaches its slowest, and the final stop is answered
    'failed' (or 'control not permitted') and not acted on. One line, at once, that the belt
    may still be moving and how to halt it; no wait for a halt that will not come (no result
    line). Before: 'stop: ...' then up to 20 s of waiting, then 'the belt did not do what it
    was told; check the console', never that the belt may still be moving."""
    fake.refusing, fake.refuse_op, fake.refusal = 1, int(Op.STOP_PAUSE), refusal
    result = _cli("test", PERIPHERAL[1], "--move")
    _one_line(result, f"stop: {ftms.RESULT_TEXT[refusal]}: the belt may still be moving; halt "
                      "it on the console or pull the safety key.")
    assert f"stop: {ftms.RESULT_TEXT[refusal]}" in result.stdout
    assert "result:" not in result.stdout  # not waited for the halt
    assert [ftms.decode_command(w) for w in fake.writes] == [
        ftms.request_control(), ftms.start_resume(), ftms.target_speed(0.8), ftms.stop()]
    assert fake.model.state == "running"


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr's lines of a command that failed cleanly (non-zero, no traceback)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()


def test_cli_test_move_a_failed_speed_write_then_a_refused_stop_says_the_belt_may_move(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the belt starts, the speed write's answer never comes, and the
    stop sent before giving up is answered 'failed'. Two lines: the speed write's error, then
    that the belt may still be moving and how to halt it (before: the stop's answer was
    ignored, only the speed write's error was said, the belt running on)."""
    fake.unanswered_op = int(Op.SET_TARGET_SPEED)
    fake.refusing, fake.refuse_op = 1, int(Op.STOP_PAUSE)
    lines = _error_lines(_cli("test", PERIPHERAL[1], "--move"))
    assert lines == [
        "voicecoach: error: the treadmill did not answer 'target speed 0.80 km/h' within 3 s; "
        "check it is on and close.",
        "voicecoach: error: stop: the treadmill could not do it: the belt may still be moving; "
        "halt it on the console or pull the safety key."]
    assert ftms.decode_command(fake.writes[-1]) == ftms.stop()
    assert fake.model.state == "running"


def test_cli_test_move_a_failed_start_then_a_refused_stop_says_the_belt_is_not_moving(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the start is never answered nor acted on, and the stop sent
    before giving up is answered 'failed'. The belt was read at 0 within the last 3 s: the
    second line says the stop is not confirmed but the belt is not moving now (before: only
    the start's error)."""
    fake.hang_op = int(Op.START_RESUME)
    fake.refusing, fake.refuse_op = 1, int(Op.STOP_PAUSE)
    lines = _error_lines(_cli("test", PERIPHERAL[1], "--move"))
    assert lines == [
        "voicecoach: error: the treadmill did not answer 'start resume' within 3 s; check it "
        "is on and close.",
        "voicecoach: error: stop: the treadmill could not do it: the stop is not confirmed, "
        "but the belt is not moving now; if it moves, halt it on the console or pull the "
        "safety key."]
    assert [ftms.decode_command(w) for w in fake.hung] == [ftms.start_resume()]
    assert fake.model.state != "running" and fake.model.speed_kmh == 0.0


def test_cli_test_move_a_failed_start_then_a_stop_never_answered_says_both(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the start is acted on but its answer never comes, and the
    stop sent before giving up is never answered either. Two lines: the start's error, then
    that the belt may still be moving (before: the start's error was lost, only the stop's
    line said)."""
    fake.unanswered_op = int(Op.START_RESUME)
    fake.hang_op = int(Op.STOP_PAUSE)
    lines = _error_lines(_cli("test", PERIPHERAL[1], "--move"))
    assert lines == [
        "voicecoach: error: the treadmill did not answer 'start resume' within 3 s; check it "
        "is on and close.",
        "voicecoach: error: the treadmill did not answer 'stop' within 3 s: the belt may still "
        "be moving; halt it on the console or pull the safety key."]
    assert [ftms.decode_command(w) for w in fake.hung] == [ftms.stop()]
    assert fake.model.state == "running"


REFUSED_START = {
    ftms.Result.FAILED:
        "voicecoach: error: the treadmill refused to start: the treadmill could not do it; "
        "check the console: the safety key in, no error shown, not asleep or in a menu (some "
        "treadmills start only from their own keys).",
    ftms.Result.NOT_PERMITTED:
        "voicecoach: error: the treadmill refused to start: control not permitted (another app "
        "may hold it); close other apps that hold it (the vendor app, Zwift, ...)."}


@pytest.mark.parametrize("refusal", list(REFUSED_START), ids=["failed", "not-permitted"])
def test_cli_test_move_a_refused_start_ends_the_test_with_a_stop_and_no_speed(
        fake: FakeTreadmill, refusal: ftms.Result) -> None:
    """`treadmill test --move`: the start is answered 'failed' (or 'control not permitted').
    The test ends there: no speed written after it, a stop sent to be safe (taken), one line
    that the treadmill refused to start and what to check. Before: the refusal was printed,
    the slowest speed written anyway, then the usual wait and stop, and 'the belt did not do
    what it was told'."""
    fake.refusing, fake.refuse_op, fake.refusal = 1, int(Op.START_RESUME), refusal
    result = _cli("test", PERIPHERAL[1], "--move")
    assert _error_lines(result) == [REFUSED_START[refusal]]
    # control not permitted: the controller asks for it again before its next write
    again = [ftms.request_control()] if refusal == ftms.Result.NOT_PERMITTED else []
    assert [ftms.decode_command(w) for w in fake.writes] == [
        ftms.request_control(), ftms.start_resume(), *again, ftms.stop()]
    assert "stop: done" in result.stdout and "result:" not in result.stdout
    assert fake.model.state != "running" and fake.model.speed_kmh == 0.0


def test_cli_test_move_a_refused_start_then_a_stop_never_answered_says_both(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the start is answered 'failed', and the stop sent to be safe
    is never answered. Two lines: that the treadmill refused to start, then the belt's line
    (read at 0 within the last 3 s: the stop is not confirmed, but the belt is not moving
    now); no speed written. Before: the speed was written after the refused start, and
    after 20 s of waiting only the stop's line was said."""
    fake.refusing, fake.refuse_op = 1, int(Op.START_RESUME)
    fake.hang_op = int(Op.STOP_PAUSE)
    lines = _error_lines(_cli("test", PERIPHERAL[1], "--move"))
    assert lines == [
        REFUSED_START[ftms.Result.FAILED],
        "voicecoach: error: the treadmill did not answer 'stop' within 3 s: the stop is not "
        "confirmed, but the belt is not moving now; if it moves, halt it on the console or "
        "pull the safety key."]
    assert [ftms.decode_command(w) for w in fake.writes] == [
        ftms.request_control(), ftms.start_resume()]
    assert [ftms.decode_command(w) for w in fake.hung] == [ftms.stop()]
    assert fake.model.state != "running" and fake.model.speed_kmh == 0.0


REFUSED_SPEED = {
    ftms.Result.FAILED:
        "voicecoach: error: the treadmill refused the speed 0.80 km/h: the treadmill could not "
        "do it; check the console: no error shown, not in a programme or a menu (some "
        "treadmills take a speed only from their own keys).",
    ftms.Result.NOT_PERMITTED:
        "voicecoach: error: the treadmill refused the speed 0.80 km/h: control not permitted "
        "(another app may hold it); close other apps that hold it (the vendor app, Zwift, ...)."}


@pytest.mark.parametrize("refusal", list(REFUSED_SPEED), ids=["failed", "not-permitted"])
def test_cli_test_move_a_refused_speed_ends_the_test_with_a_stop(
        fake: FakeTreadmill, refusal: ftms.Result) -> None:
    """`treadmill test --move`: the start is taken, the speed write answered 'failed' (or
    'control not permitted'). The test ends there: a stop sent at once (taken), one line
    that the treadmill refused the speed and what to check. Before: the refusal was printed,
    then the usual wait with the belt at whatever speed the treadmill starts at (one the user
    did not ask for), the stop, and the test passed."""
    fake.refusing, fake.refuse_op, fake.refusal = 1, int(Op.SET_TARGET_SPEED), refusal
    result = _cli("test", PERIPHERAL[1], "--move")
    assert _error_lines(result) == [REFUSED_SPEED[refusal]]
    # control not permitted: the controller asks for it again before its next write
    again = [ftms.request_control()] if refusal == ftms.Result.NOT_PERMITTED else []
    assert [ftms.decode_command(w) for w in fake.writes] == [
        ftms.request_control(), ftms.start_resume(), ftms.target_speed(0.8), *again,
        ftms.stop()]
    assert "stop: done" in result.stdout and "result:" not in result.stdout
    assert fake.model.state == "stopped" and fake.model.target_kmh == 0.0


def test_cli_test_move_a_refused_speed_then_a_refused_stop_says_the_belt_may_move(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the start is taken, the speed write and the stop sent after
    it are both answered 'failed'. The belt is slow to get going (read at 0.00 km/h for
    seconds after the start, as during a console's countdown). Two lines: that the treadmill
    refused the speed, then that the belt may still be moving: the start was taken, so a
    belt read at 0 but never read moving since is one not yet going, not one at rest.
    Before: no line at all, the belt left to run for the usual wait (and, the speed's
    refusal handled alone: 'the belt is not moving now', the belt creeping on)."""
    fake.refusing, fake.refuse_op = 1, int(Op.SET_TARGET_SPEED)
    fake.model.quirks = Quirks(fails_stop=True)
    fake.model.accel = 0.01  # km/h per s: under 0.05 km/h for 5 s
    fake.answer_delay_s = 0.5  # readings come in between the answers
    assert _error_lines(_cli("test", PERIPHERAL[1], "--move")) == [
        REFUSED_SPEED[ftms.Result.FAILED],
        "voicecoach: error: stop: the treadmill could not do it: the belt may still be "
        "moving; halt it on the console or pull the safety key."]
    assert [ftms.decode_command(w) for w in fake.writes] == [
        ftms.request_control(), ftms.start_resume(), ftms.target_speed(0.8), ftms.stop()]
    assert fake.model.state == "running"


def test_cli_test_move_a_refused_speed_then_a_stop_done_unanswered_says_the_belt_is_still(
        fake: FakeTreadmill) -> None:
    """`treadmill test --move`: the start is taken, the speed refused, and the stop sent after
    it is acted on but its answer never comes. The belt was read moving after the start
    (each answer takes 0.5 s), then at 0 after that stop: the second line says the stop is
    not confirmed but the belt is not moving now. Before: no line at all, the belt left to
    run for the usual wait."""
    fake.refusing, fake.refuse_op = 1, int(Op.SET_TARGET_SPEED)
    fake.answer_delay_s = 0.5
    fake.unanswered_op = int(Op.STOP_PAUSE)
    assert _error_lines(_cli("test", PERIPHERAL[1], "--move")) == [
        REFUSED_SPEED[ftms.Result.FAILED],
        "voicecoach: error: the treadmill did not answer 'stop' within 3 s: the stop is not "
        "confirmed, but the belt is not moving now; if it moves, halt it on the console or "
        "pull the safety key."]
    assert ftms.decode_command(fake.writes[-1]) == ftms.stop()
    assert fake.model.state == "stopped" and fake.model.speed_kmh == 0.0


def test_cli_a_treadmill_that_never_answers_is_one_line(fake: FakeTreadmill) -> None:
    """Connected, but its reads are never answered (BlueZ would wait 25 s per read, bleak
    for ever): the setup gives up after --setup-timeout with one line saying what to check."""
    fake.read_delay_s = 3600.0
    result = _cli("--setup-timeout", "3", "info", PERIPHERAL[1])
    _one_line(result, "did not answer within 3 s")
    assert "treadmill is on and in range" in result.stderr and "Bluetooth is on" in result.stderr


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
