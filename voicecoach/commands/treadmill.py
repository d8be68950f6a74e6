"""``voicecoach treadmill scan | info | test``: find, inspect and check an FTMS treadmill."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import settings_from_args
from voicecoach.config import number_in
from voicecoach.device.belt_halt import STILL_READING_S
from voicecoach.errors import report
from voicecoach.settings import Settings
from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.client import (
    SETUP_TIMEOUT_S,
    TreadmillError,
    WriteTimeout,
    connect,
    explain,
    let_go,
    scan,
)
from voicecoach.treadmill.ftms import KMH_PER_MPH
from voicecoach.treadmill.link import TreadmillInfo

_LOGGER = logging.getLogger(__name__)

#: Seconds ``test --move`` waits for the belt to reach its slowest speed, then to halt.
MOVE_WAIT_S = 20.0
#: A belt read at this speed or below (km/h) is still (the coach's own rule)
STILL_KMH = 0.05


@dataclass
class Readings:
    """The treadmill's data records as they come, and when the last came (``clock``'s
    seconds): what ``test --move`` knows of the belt."""

    clock: Callable[[], float] = time.monotonic
    records: list[ftms_data.TreadmillData] = field(default_factory=list)
    last_at: float | None = None
    #: The treadmill took a start: a belt read at 0 since is not known still until it has
    #: been read moving (at 0 it may be in its countdown, or not yet up to speed)
    started: bool = False
    moved: bool = False  # read moving since that start

    def take(self, update: Any) -> None:
        if isinstance(update, ftms_data.TreadmillData):
            self.records.append(update)
            self.last_at = self.clock()
            if self.started and (update.speed_kmh or 0.0) > STILL_KMH:
                self.moved = True

    def known_still(self) -> bool:
        """The belt was read at 0 within :data:`STILL_READING_S` (as the coach judges it),
        and, after a start the treadmill took, read moving before that."""
        if not self.records or self.last_at is None or (self.started and not self.moved):
            return False
        speed = self.records[-1].speed_kmh
        return speed is not None and speed <= STILL_KMH \
            and self.clock() - self.last_at <= STILL_READING_S


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("treadmill", help="find, inspect and check a Bluetooth (FTMS) treadmill",
                            formatter_class=DefaultsFormatter)
    parser.add_argument("--adapter", default=None, metavar="HCI",
                        help="Bluetooth adapter, e.g. hci0 (default: the first powered one)")
    parser.add_argument("--config", default=None, metavar="PATH", help="config file")
    parser.add_argument("--setup-timeout", type=number_in(0.0, 600.0, above=True),
                        default=SETUP_TIMEOUT_S, metavar="SECONDS",
                        help="give up when Bluetooth or the treadmill has not answered within "
                             "this long: finding, connecting and reading it (a scan: after "
                             "its listening)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_scan = actions.add_parser("scan", help="list FTMS devices nearby (name, address, signal)")
    p_scan.add_argument("--timeout", type=number_in(0.0, 600.0, above=True), default=5.0,
                        help="seconds to listen")
    for name, text in (("info", "features, speed and incline ranges, current state (moves "
                                "nothing)"),
                       ("test", "a short supervised check; moves the belt only with --move")):
        p = actions.add_parser(name, help=text)
        p.add_argument("address", nargs="?", default=None,
                       help="address or part of the name (default: [treadmill] address)")
        if name == "test":
            p.add_argument("--move", action="store_true",
                           help="run the belt at its slowest for a few seconds, then halt it "
                                "(stand on the side rails!)")
    parser.set_defaults(func=run)


def _address(args: argparse.Namespace, settings: Settings) -> str:
    address = args.address or settings.treadmill.address
    if not address:
        raise TreadmillError("no treadmill given",
                             "pass its address (see `voicecoach treadmill scan`) or set "
                             "[treadmill] address in the config")
    return str(address)


def info_lines(info: TreadmillInfo) -> list[str]:
    s, i = info.speed_range, info.incline_range
    lines = [f"treadmill: {info.name or '(no name)'} ({info.address})",
             f"measures: {', '.join(sorted(info.features.machine)) or 'speed only'}",
             f"takes targets: {', '.join(sorted(info.features.targets)) or 'none'}",
             f"speed range: {s.minimum:g} to {s.maximum:g} km/h ({s.minimum / KMH_PER_MPH:.1f} "
             f"to {s.maximum / KMH_PER_MPH:.1f} mph), step {s.step:g} km/h",
             f"incline range: {i.minimum:g} to {i.maximum:g} %, step {i.step:g} %"]
    lines += [f"note: {note}" for note in info.notes]
    return lines


def _state_line(data: ftms_data.TreadmillData | None) -> str:
    if data is None:
        return "belt: no data within 3 s"
    parts = [f"belt: {(data.speed_mph or 0.0):.1f} mph ({data.speed_kmh or 0.0:.2f} km/h)"]
    if data.incline_pct is not None:
        parts.append(f"incline {data.incline_pct:g} %")
    if data.distance_m is not None:
        parts.append(f"distance {data.distance_m:g} m")
    return ", ".join(parts)


async def _info(address: str, adapter: str | None, setup_s: float, out: Any) -> None:
    readings: list[Any] = []
    client, _controller, info = await connect(address, readings.append, adapter=adapter,
                                              setup_timeout=setup_s)
    try:
        for line in info_lines(info):
            print(line, file=out, flush=True)
        for _ in range(30):
            if any(isinstance(r, ftms_data.TreadmillData) for r in readings):
                break
            await asyncio.sleep(0.1)
        data = [r for r in readings if isinstance(r, ftms_data.TreadmillData)]
        print(_state_line(data[-1] if data else None), file=out, flush=True)
    finally:
        await let_go(client)  # one line in the log if it hangs; the command still ends


NOT_PERMITTED_HINT = "close other apps that hold it (the vendor app, Zwift, ...)"
"""What to do when the treadmill answers 'control not permitted' (another app holds it)."""


async def _test(address: str, adapter: str | None, setup_s: float, move: bool, top_mph: float,
                out: Any) -> None:
    belt = Readings()
    client, controller, info = await connect(address, belt.take, adapter=adapter,
                                             setup_timeout=setup_s)
    try:
        for line in info_lines(info):
            print(line, file=out, flush=True)
        granted = await controller.write(ftms.request_control())
        if granted.result == ftms.Result.NOT_PERMITTED:
            raise TreadmillError("the treadmill did not give control (result 5: not permitted)",
                                 NOT_PERMITTED_HINT)
        if not granted.ok:
            raise TreadmillError(f"request for control: {granted.text()}", "")
        print("control: granted", file=out, flush=True)
        if not move:
            print("belt: not moved (add --move to run it at its slowest for a few seconds)",
                  file=out, flush=True)
            return
        slow = info.speed_range.minimum
        if slow / KMH_PER_MPH > top_mph + 1e-6:
            raise TreadmillError(f"the treadmill's slowest speed ({slow:g} km/h) is above the top "
                                 f"speed in your settings ({top_mph:g} mph)", "not moving it")
        speed: ftms.Response | None = None
        try:
            started = await _said(controller, ftms.start_resume(), out)
            if started.ok:  # never a speed after a refused start: the belt's state unknown
                belt.started = True
                speed = await _said(controller, ftms.target_speed(slow), out)
        except Exception as exc:  # noqa: BLE001 - a write that failed, however: one line
            await _give_up(controller, belt, explain(exc, address), out)
        if not started.ok:
            await _give_up(controller, belt, refused_start(started), out)
        if speed is not None and not speed.ok:  # the belt at the treadmill's own start speed
            await _give_up(controller, belt, refused_speed(speed, slow), out)
        reached = await _wait_for(belt.records, lambda v: abs(v - slow) <= 0.15, out)
        response = await _halt(controller, belt)
        print(f"stop: {response.text()}", file=out, flush=True)
        if not response.ok:  # refused: say so now, not after waiting for a halt
            raise unconfirmed(f"stop: {response.text()}", _still(controller, belt))
        halted = await _wait_for(belt.records, lambda v: v <= STILL_KMH, out)
        print(f"result: belt {'reached' if reached else 'did NOT reach'} {slow:g} km/h, "
              f"{'halted' if halted else 'did NOT halt'}", file=out, flush=True)
        if not (reached and halted):
            raise TreadmillError("the belt did not do what it was told",
                                 "check the console; some treadmills ignore speed control")
    finally:
        await let_go(client)


async def _said(controller: Any, command: ftms.Command, out: Any) -> ftms.Response:
    """Write ``command`` and print its answer."""
    response: ftms.Response = await controller.write(command)
    print(f"{command.describe()}: {response.text()}", file=out, flush=True)
    return response


def refused_start(response: ftms.Response) -> TreadmillError:
    """The treadmill answered the start with a refusal (``response``): what to check."""
    if response.result == ftms.Result.NOT_PERMITTED:
        hint = NOT_PERMITTED_HINT
    else:
        hint = ("check the console: the safety key in, no error shown, not asleep or in a "
                "menu (some treadmills start only from their own keys)")
    return TreadmillError(f"the treadmill refused to start: {response.text()}", hint)


def refused_speed(response: ftms.Response, kmh: float) -> TreadmillError:
    """The treadmill, started, answered the speed ``kmh`` with a refusal (``response``): what
    to check."""
    if response.result == ftms.Result.NOT_PERMITTED:
        hint = NOT_PERMITTED_HINT
    elif response.result == ftms.Result.NOT_SUPPORTED:
        hint = ("it takes no speed over Bluetooth: set [treadmill] control = \"announce\" "
                "(the coach follows the console)")
    else:
        hint = ("check the console: no error shown, not in a programme or a menu (some "
                "treadmills take a speed only from their own keys)")
    return TreadmillError(f"the treadmill refused the speed {kmh:.2f} km/h: {response.text()}",
                          hint)


async def _halt(controller: Any, belt: Readings) -> ftms.Response:
    """Stop the belt; a stop that fails or is not answered (the write's own timeout) is one
    line (:func:`unconfirmed`) saying whether the belt may still be moving and how to stop
    it."""
    try:
        return await controller.write(ftms.stop())
    except Exception as exc:  # noqa: BLE001 - timed out, or BlueZ's own error: one line
        raise unconfirmed(explain(exc).message, _still(controller, belt)) from None


async def _give_up(controller: Any, belt: Readings, failure: TreadmillError,
                   out: Any) -> NoReturn:
    """A start or speed write failed or was refused (``failure``): the belt may be moving,
    so it is stopped before giving up (its answer printed). A stop the treadmill did not
    confirm (refused, or not answered) is a line of its own after the failure's, saying
    whether the belt may still be moving (:func:`unconfirmed`); a stop it took leaves the
    failure's line alone."""
    try:
        response = await _halt(controller, belt)
    except TreadmillError as belt_said:
        report(failure)
        raise belt_said from None
    print(f"stop: {response.text()}", file=out, flush=True)
    if not response.ok:
        report(failure)
        raise unconfirmed(f"stop: {response.text()}", _still(controller, belt))
    raise failure from None


def _still(controller: Any, belt: Readings) -> bool:
    """The belt is known not to be moving: read at 0 lately, the link up."""
    return bool(getattr(controller.client, "is_connected", False)) and belt.known_still()


def unconfirmed(why: str, still: bool) -> TreadmillError:
    """A stop the treadmill did not confirm (``why``): the belt may still be moving, unless
    it is known to be ``still`` (read at 0 lately, the link up: the coach's
    STOP_UNCONFIRMED_STILL); either way how to halt it."""
    if still:
        return TreadmillError(f"{why}: the stop is not confirmed, but the belt is not moving "
                              "now", "if it moves, halt it on the console or pull the safety "
                                     "key")
    return TreadmillError(f"{why}: the belt may still be moving",
                          "halt it on the console or pull the safety key")


async def _wait_for(readings: list[ftms_data.TreadmillData], done: Any, out: Any) -> bool:
    began, shown = time.monotonic(), None
    while time.monotonic() - began < MOVE_WAIT_S:
        if readings and readings[-1].speed_kmh is not None:
            speed = readings[-1].speed_kmh
            if shown != round(speed, 1):
                shown = round(speed, 1)
                print(_state_line(readings[-1]), file=out, flush=True)
            if done(speed):
                return True
        await asyncio.sleep(0.1)
    return False


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    out = sys.stdout
    try:
        if args.action == "scan":
            found = asyncio.run(scan(args.timeout, args.adapter, args.setup_timeout))
            if not found:
                print("no FTMS treadmill found (is it on, and not connected to another app?)",
                      file=sys.stderr)
                return 1
            for f in found:
                signal = f"{f.rssi} dBm" if f.rssi is not None else "?"
                print(f"{f.address}  {signal:>8}  {f.name or '(no name)'}", file=out)
            return 0
        address = _address(args, settings)
        if args.action == "info":
            asyncio.run(_info(address, args.adapter, args.setup_timeout, out))
        else:
            asyncio.run(_test(address, args.adapter, args.setup_timeout, args.move,
                              min(settings.treadmill.top_speed_mph,
                                  settings.coach.top_speed_mph), out))
    except WriteTimeout as exc:
        raise TreadmillError(exc.message, exc.hint) from None
    return 0
