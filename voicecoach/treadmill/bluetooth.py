"""Bluetooth for the treadmill link: its errors in one line, adapters, scanning and lookup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from voicecoach.errors import VoicecoachError
from voicecoach.treadmill import ftms

_LOGGER = logging.getLogger(__name__)

#: Seconds finding, connecting to and reading a treadmill may take in all (a scan: on top of
#: its listening). More than its steps' own limits (find 8 s, bleak's connect 15 s), which
#: speak first; past it BlueZ or the treadmill hangs without an answer, and the setup ends
#: with one line instead of waiting for ever.
SETUP_TIMEOUT_S = 30.0
#: Seconds a setup given up on may take to undo itself (a disconnect) before it is left.
UNDO_S = 2.0
#: Seconds BlueZ may take to list its adapters (doctor, and before each scan). A running
#: bluetoothd answers in milliseconds, and one started on demand (D-Bus activation at boot)
#: within a second or two; past this it is stuck, and doctor says so in one line.
ADAPTERS_TIMEOUT_S = 5.0
#: Seconds a disconnect may take before it is given up (logged once, then left to BlueZ).
#: BlueZ answers a Disconnect once the link is down: at once when the treadmill is already
#: gone, else within the link's supervision timeout (Linux asks for 0.42 s; peripherals
#: rarely ask for more than a few seconds); bleak itself waits for it without a limit. A
#: disconnect left unfinished costs nothing: bleak drops its side, BlueZ finishes its own.
DISCONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


class TreadmillError(VoicecoachError):
    """The treadmill link failed: no adapter, Bluetooth off, not found, not FTMS, refused."""


class WriteTimeout(TreadmillError):
    """A control point write was not answered in time."""


def explain(exc: BaseException, address: str = "") -> TreadmillError:
    """A bleak (or D-Bus) exception as one user-facing line with a fix."""
    if isinstance(exc, TreadmillError):
        return exc
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDeviceNotFoundError, BleakError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, BleakBluetoothNotAvailableError) or "No Bluetooth adapters" in text:
        if "powered" in text.lower() or "off" in text.lower():
            return TreadmillError("Bluetooth is off", "switch it on: bluetoothctl power on")
        return TreadmillError("no Bluetooth adapter found",
                              "plug one in, or check `bluetoothctl list` and that bluetoothd runs")
    if "NotReady" in text or "not powered" in text.lower():
        return TreadmillError("Bluetooth is off", "switch it on: bluetoothctl power on")
    if isinstance(exc, BleakDeviceNotFoundError) or "not found" in text.lower():
        return TreadmillError(f"no Bluetooth device {address!r} in range",
                              "switch the treadmill on and run `voicecoach treadmill scan`")
    if isinstance(exc, (BleakError, EOFError, OSError, asyncio.TimeoutError)) \
            or "org.freedesktop.DBus" in text:
        if ("org.bluez" in text and "ServiceUnknown" in text) or "No such file" in text:
            return TreadmillError("the Bluetooth service (bluetoothd) is not running",
                                  "start it: sudo systemctl start bluetooth")
        return TreadmillError(f"Bluetooth: {text}", "check that the treadmill is on and close")
    return TreadmillError(f"treadmill link: {text}", "run with --debug for details")


class NotAnswered(TreadmillError):
    """A setup that got no answer in time; ``what`` did not answer (Bluetooth, the treadmill)."""

    def __init__(self, message: str, hint: str, what: str) -> None:
        super().__init__(message, hint)
        self.what = what


def not_answered(what: str, seconds: float) -> NotAnswered:
    """The one error for a setup that got no answer in time."""
    return NotAnswered(f"{what} did not answer within {seconds:g} s",
                       "check that the treadmill is on and in range and that Bluetooth is "
                       "on (bluetoothctl show), then try again", what)


class Overdue(Exception):
    """:func:`bounded` work that did not finish in time (never the work's own TimeoutError)."""


async def bounded(seconds: float, work: Awaitable[T], undo_s: float = UNDO_S) -> T:
    """``work``'s result, or :class:`Overdue` after ``seconds``.

    Not asyncio.wait_for: that waits for the cancelled work to finish, and bleak's clean-up
    on cancel (a D-Bus call without a timeout) hangs as long as BlueZ does. The work is
    given ``undo_s`` to undo itself, then left cancelled."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=undo_s)
    if not task.done():
        task.cancel()  # interrupts the clean-up's own wait: the work is given up
    elif not task.cancelled():
        task.exception()  # retrieved: a failure after giving up is not news
    raise Overdue(f"not done within {seconds:g} s")


async def within(seconds: float, work: Awaitable[T], waiting: Callable[[], str],
                 undo_s: float = UNDO_S) -> T:
    """``work``'s result, or :func:`not_answered` naming ``waiting()`` after ``seconds``
    (:func:`bounded`: the work is given ``undo_s`` to undo itself, then left)."""
    try:
        return await bounded(seconds, work, undo_s)
    except Overdue:
        raise not_answered(waiting(), seconds) from None


async def let_go(client: Any, seconds: float = DISCONNECT_TIMEOUT_S) -> bool:
    """Disconnect ``client`` (a BleakClient) for at most ``seconds``; never raises. A
    disconnect that hangs or fails is one line in the log and given up: nothing waits for
    it (the process's exit, a session's end, the next reconnect). True if it finished."""
    try:
        await bounded(seconds, client.disconnect(), undo_s=0.5)
        return True
    except Overdue:
        _LOGGER.warning("treadmill: Bluetooth did not finish disconnecting within %g s; "
                        "given up", seconds)
    except Exception as exc:  # noqa: BLE001 - already gone, or BlueZ refused: nothing to do
        _LOGGER.debug("treadmill: disconnect failed: %s", exc)
    return False


def _quiet_bleak() -> None:
    """bleak warns once when bluetoothctl is missing; that is not the user's problem (one line
    per error on the command line), so it is only shown with --debug."""
    if not _LOGGER.isEnabledFor(logging.DEBUG):
        logging.getLogger("bleak.backends.bluezdbus.version").setLevel(logging.ERROR)


async def _check_adapter(adapter: str | None) -> str:
    """The adapter to scan with: ``adapter``, else the first powered one by name (hci0 before
    hci1); a clear error before scanning when there is none or Bluetooth is off.

    bleak's own default is the first powered adapter of a Python ``set`` of object paths,
    whose order changes from one process to the next (string hashing is randomised): with
    two adapters, each run could scan with another one."""
    found = await adapters()
    if adapter:
        found = [a for a in found if a[0] == adapter]
    if not found:
        raise TreadmillError(f"no Bluetooth adapter{' ' + adapter if adapter else ''} found",
                             "plug one in, or check `bluetoothctl list`")
    powered = sorted(name for name, on in found if on)
    if not powered:
        raise TreadmillError("Bluetooth is off", "switch it on: bluetoothctl power on")
    return adapter or powered[0]


@dataclass(frozen=True)
class Found:
    """A treadmill seen while scanning."""

    name: str
    address: str
    rssi: int | None


async def scan(timeout: float = 5.0, adapter: str | None = None,
               setup_timeout: float = SETUP_TIMEOUT_S) -> list[Found]:
    """FTMS devices advertising nearby, strongest signal first; a clear error when Bluetooth
    has not answered ``setup_timeout`` seconds after the ``timeout`` of listening."""
    return await within(timeout + setup_timeout, _scan(timeout, adapter),
                        lambda: "Bluetooth")


async def _scan(timeout: float, adapter: str | None) -> list[Found]:
    from bleak import BleakScanner

    _quiet_bleak()
    kwargs: dict[str, Any] = {"bluez": {"adapter": await _check_adapter(adapter)}}
    try:
        seen = await BleakScanner.discover(timeout, return_adv=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one line for the user, whatever bleak raised
        raise explain(exc) from None
    out = [Found(adv.local_name or dev.name or "", dev.address, adv.rssi)
           for dev, adv in seen.values()
           if ftms.FTMS_SERVICE in [u.lower() for u in adv.service_uuids]]
    return sorted(out, key=lambda f: -(f.rssi if f.rssi is not None else -999))


async def find(address_or_name: str, timeout: float = 8.0, adapter: str | None = None) -> Any:
    """The BLEDevice for an address or (part of) a name; a clear error if none is in range."""
    from bleak import BleakScanner

    _quiet_bleak()
    kwargs: dict[str, Any] = {"bluez": {"adapter": await _check_adapter(adapter)}}
    want = address_or_name.strip()
    is_address = len(want) == 17 and want.count(":") == 5

    def match(dev: Any, adv: Any) -> bool:
        if is_address:
            return str(dev.address).upper() == want.upper()
        return want.lower() in (adv.local_name or dev.name or "").lower()

    device = None
    try:
        async with BleakScanner(**kwargs) as scanner:
            deadline = asyncio.get_running_loop().time() + timeout
            while device is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
                for dev, adv in scanner.discovered_devices_and_advertisement_data.values():
                    if match(dev, adv):
                        device = dev
                        break
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, want) from None
    if device is None:
        raise TreadmillError(f"no Bluetooth device {want!r} in range",
                             "switch the treadmill on and run `voicecoach treadmill scan`")
    return device


async def adapters(timeout: float | None = None) -> list[tuple[str, bool]]:
    """(name, powered) of each Bluetooth adapter BlueZ knows; a clear error without BlueZ, or
    when it has not answered within ``timeout`` seconds (:data:`ADAPTERS_TIMEOUT_S`)."""
    seconds = ADAPTERS_TIMEOUT_S if timeout is None else timeout
    try:
        return await bounded(seconds, _adapters(), undo_s=0.5)
    except Overdue:
        raise TreadmillError(f"the Bluetooth service (bluetoothd) did not answer within "
                             f"{seconds:g} s", "restart it: sudo systemctl restart bluetooth"
                             ) from None


async def _adapters() -> list[tuple[str, bool]]:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except Exception as exc:  # noqa: BLE001
        raise TreadmillError(f"Bluetooth is not available: the system D-Bus cannot be reached "
                             f"({exc})", "install and start dbus and bluez (Linux only)") from None
    try:
        try:
            intro = await bus.introspect("org.bluez", "/")
            obj = bus.get_proxy_object("org.bluez", "/", intro)
            managed = await obj.get_interface(
                "org.freedesktop.DBus.ObjectManager").call_get_managed_objects()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            raise TreadmillError("the Bluetooth service (bluetoothd) is not running",
                                 "sudo apt install bluez && sudo systemctl start bluetooth") from None
        out = []
        for path, interfaces in sorted(managed.items()):
            adapter = interfaces.get("org.bluez.Adapter1")
            if adapter is not None:
                powered = adapter.get("Powered")
                out.append((path.rsplit("/", 1)[-1], bool(powered.value if powered else False)))
        return out
    finally:
        bus.disconnect()
