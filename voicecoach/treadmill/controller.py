"""One connected FTMS treadmill over bleak: reads what it is, subscribes, and writes one control
point command at a time under a lock, awaiting the indication that answers it (the one naming
its op code) with a timeout; a late answer to a write that went unanswered is never taken for
a later one."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.bluetooth import (
    SETUP_TIMEOUT_S,
    UNDO_S,
    Overdue,
    TreadmillError,
    WriteTimeout,
    bounded,
    explain,
    find,
    let_go,
    within,
)
from voicecoach.treadmill.ftms import FtmsError, Op
from voicecoach.treadmill.link import DEFAULT_INCLINE_RANGE, DEFAULT_SPEED_RANGE, TreadmillInfo

_LOGGER = logging.getLogger(__name__)

#: Seconds a control point write may take in all: BlueZ taking the write (the GATT write's
#: acknowledgement) and the treadmill's indication answering it. The acknowledgement comes
#: within a connection interval or two (tens of ms) and real treadmills indicate within a
#: second or two, so 3 s is past any healthy answer, and short enough that a stop the belt
#: may not have taken is said while the user can still act on it. Unbounded, the write
#: itself waited as long as BlueZ did (its ATT timeout is 30 s; D-Bus has none). A write
#: that times out is taken as a lost link (:meth:`voicecoach.treadmill.client.BleakTreadmill._writer`).
WRITE_TIMEOUT_S = 3.0
#: Seconds a write given up on may take to unwind (a cancelled D-Bus call: at once).
WRITE_UNDO_S = 0.2
CONNECT_TIMEOUT_S = 15.0


class FtmsController:
    """One connected FTMS treadmill: reads what it is, subscribes, and writes one control
    point command at a time under a lock, awaiting its answer with a timeout: the indication
    naming its op code (a stray one, for another op or with nothing waiting, is logged and
    ignored; the write waits on for its own). Control is
    requested before the first command and again after it was lost; everything resets on
    disconnect.

    FTMS answers carry no sequence number, only the op code, and the treadmill answers one
    write at a time, in write order. A write that ended without its answer on a link that
    stays up (Bluetooth reported it failed, yet the treadmill may have acted on it) may still
    be answered late: it is remembered (:attr:`_owed`) and the next write is preceded by a
    request for control, as a marker. Until the marker's answer, an answer naming an op
    code owed is the late one: taken for its own write (a DEBUG line), never for another
    (a pause's late 'success' confirmed a stop the treadmill refused). The marker's answer
    settles it: whatever was owed before it has come or never will, so a stop written after
    a write that was never acted on is still taken at its own first answer."""

    def __init__(self, client: Any, on_update: Callable[[Any], None],
                 write_timeout: float = WRITE_TIMEOUT_S) -> None:
        self.client = client
        self.on_update = on_update
        self.write_timeout = write_timeout
        self.joiner = ftms_data.DataJoiner()
        self.controlled = False
        #: The BLEDevice connected to (reconnects reuse it without scanning).
        self.device: Any = None
        self._lock = asyncio.Lock()
        self._answer: asyncio.Future[ftms.Response] | None = None
        #: The op code of the write waiting for :attr:`_answer`: only an answer naming it is
        #: taken (FTMS answers carry the request's op code)
        self._waiting_op: int | None = None
        #: What :meth:`check` reads: a characteristic the treadmill has (set up by :meth:`setup`)
        self._check_uuid: str | None = None
        #: The writes on this link that ended without their answer (oldest first): the
        #: treadmill may still answer them, before the answer to the next request for control
        self._owed: deque[ftms.Command] = deque()

    def reset(self) -> None:
        """The link went away: forget control, half a data record, a pending answer."""
        self.controlled = False
        self.joiner.reset()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(TreadmillError("the treadmill link was lost", ""))

    async def setup(self, name: str) -> TreadmillInfo:
        """Read features and ranges and subscribe; a clear error if it is no FTMS treadmill."""
        services = self.client.services
        if services.get_service(ftms.FTMS_SERVICE) is None \
                or services.get_characteristic(ftms.CONTROL_POINT) is None \
                or services.get_characteristic(ftms.TREADMILL_DATA) is None:
            raise TreadmillError(f"{name or self.client.address} is not an FTMS treadmill "
                                 "(no Fitness Machine service with Treadmill Data)",
                                 "check the address with `voicecoach treadmill scan`")
        notes: list[str] = []

        async def read(uuid: str, decode: Callable[[bytes], Any], default: Any) -> Any:
            if services.get_characteristic(uuid) is None:
                return default
            try:
                return decode(bytes(await self.client.read_gatt_char(uuid)))
            except FtmsError as exc:
                notes.append(f"{exc.message}; using {default}")
                _LOGGER.warning("treadmill: %s; using %s", exc.message, default)
                return default

        no_features = ftms_data.Features(frozenset(), frozenset())
        features = await read(ftms.FEATURE, ftms_data.decode_features, no_features)
        speed = await read(ftms.SPEED_RANGE, ftms_data.decode_speed_range, DEFAULT_SPEED_RANGE)
        incline = await read(ftms.INCLINE_RANGE, ftms_data.decode_incline_range,
                             DEFAULT_INCLINE_RANGE)
        self._check_uuid = next((u for u in (ftms.FEATURE, ftms.SPEED_RANGE, ftms.INCLINE_RANGE)
                                 if services.get_characteristic(u) is not None), None)
        await self.client.start_notify(ftms.TREADMILL_DATA, self._on_data)
        await self.client.start_notify(ftms.CONTROL_POINT, self._on_indication)
        if services.get_characteristic(ftms.STATUS) is not None:
            await self.client.start_notify(ftms.STATUS, self._on_status)
        return TreadmillInfo(name, self.client.address, features, speed, incline, tuple(notes))

    def _on_data(self, _sender: Any, data: bytearray) -> None:
        try:
            record = self.joiner.feed(bytes(data))
        except FtmsError as exc:
            _LOGGER.warning("treadmill: %s", exc.message)
            return
        if record is not None:
            self.on_update(record)

    def _on_status(self, _sender: Any, data: bytearray) -> None:
        try:
            status = ftms_data.decode_status(bytes(data))
        except FtmsError as exc:
            _LOGGER.warning("treadmill: %s", exc.message)
            return
        if status.op == ftms_data.StatusOp.CONTROL_PERMISSION_LOST:
            self.controlled = False
        self.on_update(status)

    def _on_indication(self, _sender: Any, data: bytearray) -> None:
        try:
            response = ftms.decode_response(bytes(data))
        except FtmsError as exc:
            _LOGGER.warning("treadmill: %s", exc.message)
            return
        if self._late(response):
            return
        if self._answer is None or self._answer.done():
            _LOGGER.warning("treadmill: an answer (op 0x%02x: %s) with no write waiting for it; "
                            "ignored", response.request, response.text())
        elif response.request != self._waiting_op:
            # a stray answer (a duplicate, or one to another write) never answers this write:
            # taken, a stop could be "confirmed" by a request for control's answer
            _LOGGER.warning("treadmill: an answer for op 0x%02x (%s) while a write of op 0x%02x "
                            "waits; ignored", response.request, response.text(),
                            self._waiting_op)
        else:
            if response.request == Op.REQUEST_CONTROL:
                self._owed.clear()  # answered in write order: all before it is settled
            self._answer.set_result(response)

    def _late(self, response: ftms.Response) -> bool:
        """``response`` is the late answer to a write that went unanswered (owed): taken for
        that write, logged at DEBUG. The request for control written as the marker takes an
        answer naming its op code as its own (a late one means the same: control, now)."""
        owed = next((c for c in self._owed if c.op == response.request), None)
        if owed is None or (response.request == Op.REQUEST_CONTROL
                            and self._waiting_op == Op.REQUEST_CONTROL):
            return False
        self._owed.remove(owed)
        _LOGGER.debug("treadmill: the late answer to an earlier '%s' (%s); not taken for any "
                      "other write", owed.describe(), response.text())
        return True

    async def _write_one(self, command: ftms.Command) -> ftms.Response:
        """Write ``command`` and await the answer naming its op code (others are ignored)."""
        answer: asyncio.Future[ftms.Response] = asyncio.get_running_loop().create_future()
        self._answer, self._waiting_op = answer, int(command.op)

        async def exchange() -> ftms.Response:
            try:
                await self.client.write_gatt_char(ftms.CONTROL_POINT, command.encode(),
                                                  response=True)
            except Exception:
                # failed, says Bluetooth; the treadmill may still have acted on it and answer
                # it late: the next write waits behind a request for control (_late)
                self._owed.append(command)
                self.controlled = False
                raise
            return await answer

        try:  # the write and its answer within one bound: BlueZ may hang on either
            response = await bounded(self.write_timeout, exchange(), undo_s=WRITE_UNDO_S)
        except Overdue:
            raise WriteTimeout(f"the treadmill did not answer '{command.describe()}' within "
                               f"{self.write_timeout:g} s", "check it is on and close") from None
        finally:
            self._answer, self._waiting_op = None, None
            if not answer.done():
                answer.cancel()  # a late indication finds no write waiting
            elif not answer.cancelled():
                answer.exception()  # retrieved: the link lost before the write was taken
        return response

    async def check(self) -> None:
        """Is the treadmill still there? A read of one of its characteristics (nothing moves)
        within the write timeout; raises as a write does: bleak's error if it fails,
        :class:`WriteTimeout` if it is not answered."""
        async with self._lock:
            if self._check_uuid is None:  # nothing to read: bleak's word only
                if not self.client.is_connected:
                    raise TreadmillError("Bluetooth: Not connected", "")
                return
            try:
                await bounded(self.write_timeout, self.client.read_gatt_char(self._check_uuid),
                              undo_s=WRITE_UNDO_S)
            except Overdue:
                raise WriteTimeout(f"the treadmill did not answer a check within "
                                   f"{self.write_timeout:g} s", "check it is on and close"
                                   ) from None

    async def write(self, command: ftms.Command) -> ftms.Response:
        """Write ``command`` (requesting control first if needed) and return its answer."""
        async with self._lock:
            if not self.controlled and command.op is not Op.REQUEST_CONTROL:
                granted = await self._write_one(ftms.request_control())
                if not granted.ok:
                    return ftms.Response(command.op, granted.result)
                self.controlled = True
            response = await self._write_one(command)
            if command.op is Op.REQUEST_CONTROL and response.ok:
                self.controlled = True
            if response.result == ftms.Result.NOT_PERMITTED:
                self.controlled = False
            return response


async def connect(address_or_name: str, on_update: Callable[[Any], None],
                  on_disconnect: Callable[[], None] | None = None, adapter: str | None = None,
                  timeout: float = CONNECT_TIMEOUT_S, device: Any = None,
                  setup_timeout: float = SETUP_TIMEOUT_S,
                  write_timeout: float = WRITE_TIMEOUT_S,
                  undo_s: float = UNDO_S) -> tuple[Any, FtmsController, TreadmillInfo]:
    """Find (unless ``device``, a BLEDevice seen before, is given), connect and set up;
    returns (BleakClient, controller, info). All of it within ``setup_timeout`` seconds, else
    one :class:`NotAnswered` naming what did not answer: Bluetooth, or the treadmill (a setup
    given up has ``undo_s`` more to let go of the treadmill). The controller's writes each
    give up after ``write_timeout`` seconds."""
    waiting = ["Bluetooth" if device is None else f"the treadmill {address_or_name}"]
    return await within(setup_timeout, _connect(address_or_name, on_update, on_disconnect,
                                                adapter, timeout, device, waiting,
                                                write_timeout),
                        lambda: waiting[0], undo_s)


async def _connect(address_or_name: str, on_update: Callable[[Any], None],
                   on_disconnect: Callable[[], None] | None, adapter: str | None,
                   timeout: float, device: Any, waiting: list[str],
                   write_timeout: float) -> tuple[Any, FtmsController, TreadmillInfo]:
    from bleak import BleakClient

    if device is None:
        device = await find(address_or_name, min(timeout, 8.0), adapter)
    name = device.name or ""
    waiting[0] = f"the treadmill {name or address_or_name}"
    holder: list[FtmsController] = []

    def lost(_client: Any) -> None:
        for controller in holder:
            controller.reset()
        if on_disconnect is not None:
            on_disconnect()

    kwargs: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
    client = BleakClient(device, disconnected_callback=lost, timeout=timeout, **kwargs)
    try:
        await client.connect()
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, address_or_name) from None
    controller = FtmsController(client, on_update, write_timeout)
    controller.device = device
    holder.append(controller)
    try:
        info = await controller.setup(name or getattr(client, "name", "") or "")
    except BaseException as exc:
        await let_go(client)
        if isinstance(exc, Exception):  # a read that failed (D-Bus NoReply): one line too
            raise explain(exc, address_or_name) from None
        raise
    return client, controller, info
