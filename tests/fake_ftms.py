"""A fake FTMS treadmill on a mock BlueZ (bluezoo, tests/bluez_bus.py) for bleak's real BlueZ
backend: a GATT application and an advertisement registered through BlueZ's D-Bus API with
dbus-fast, belt physics from voicecoach.treadmill.sim.BeltModel on wall time; and a link's
answers checked as it is polled."""

# ruff: noqa: F722, F821 - D-Bus signatures ("as", "a{sv}") are annotations here.
# No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures from
# the annotations of the exported methods and properties.
import asyncio
import threading

from bluez_bus import CENTRAL, PERIPHERAL
from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.link import AnswerOrder, Treadmill, Update, WriteLog
from voicecoach.treadmill.sim import SIM_FEATURES, BeltModel

APP = "/org/voicecoach/fake"


class _Service(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # type: ignore[name-defined]  # noqa: F821,N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # type: ignore[name-defined]  # noqa: F821,N802
        return True


class _Characteristic(ServiceInterface):
    def __init__(self, fake: "FakeTreadmill", uuid: str, flags: list[str], value: bytes = b"") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.fake, self._uuid, self._flags, self._value = fake, uuid, flags, value
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # type: ignore[name-defined]  # noqa: F821,N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # type: ignore[name-defined]  # noqa: F821,N802
        return f"{APP}/service0"

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # type: ignore[name-defined]  # noqa: F821,N802
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # type: ignore[name-defined]  # noqa: F821,N802
        return self._value

    @method()
    async def ReadValue(self, options: "a{sv}") -> "ay":  # type: ignore[name-defined]  # noqa: F821,N802
        self.fake.reads += 1
        if self.fake.failing_reads:
            self.fake.failing_reads -= 1
            raise DBusError("org.bluez.Error.Failed", self.fake.bluetooth_error)
        if self.fake.read_delay_s:
            await asyncio.sleep(self.fake.read_delay_s)
        return self._value

    @method()
    async def WriteValue(self, value: "ay", options: "a{sv}"):  # type: ignore[name-defined]  # noqa: F821,N802
        if self.fake.held:  # the answer to the write before, late: it comes before this one's
            held, self.fake.held = self.fake.held, b""
            self.fake.chars[ftms.CONTROL_POINT].notify(held)
        if value and value[0] == self.fake.late_op:  # acted on, "failed", answered late
            self.fake.late_op = -1
            self.fake.failed.append(bytes(value))
            self.fake.writes.append(bytes(value))
            response, statuses = self.fake.model.control(bytes(value))
            self.fake.held = response.encode()
            for status in statuses:
                self.fake.chars[ftms.STATUS].notify(status.encode())
            raise DBusError("org.bluez.Error.Failed", self.fake.bluetooth_error)
        if value and value[0] == self.fake.stray_op:  # a stray answer first, then the rest
            self.fake.stray_op = -1
            self.fake.chars[ftms.CONTROL_POINT].notify(self.fake.stray)
        if self.fake.failing_writes:  # refused at once by "BlueZ", never acted on
            self.fake.failing_writes -= 1
            self.fake.failed.append(bytes(value))
            raise DBusError("org.bluez.Error.Failed", self.fake.bluetooth_error)
        if self.fake.hang_writes or (value and value[0] == self.fake.hang_op):
            # taken, never acted on, never answered (until let go)
            self.fake.hung.append(bytes(value))
            await self.fake.let_go.wait()
            return
        self.fake.on_write(bytes(value))
        if self.fake.write_reply_s:  # acted on at once, its acknowledgement late
            await asyncio.sleep(self.fake.write_reply_s)

    @method()
    def StartNotify(self):  # noqa: N802
        self.notifying = True

    @method()
    def StopNotify(self):  # noqa: N802
        self.notifying = False

    @method()
    def Confirm(self):  # noqa: N802
        pass

    def notify(self, value: bytes) -> None:
        self._value = value
        if self.notifying:
            self.emit_properties_changed({"Value": value})


class _Advertisement(ServiceInterface):
    def __init__(self, name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._name = name

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":  # type: ignore[name-defined]  # noqa: F821,N802
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":  # type: ignore[name-defined]  # noqa: F821,N802
        return [ftms.FTMS_SERVICE]

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":  # type: ignore[name-defined]  # noqa: F821,N802
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # type: ignore[name-defined]  # noqa: F821,N802
        return True

    @method()
    def Release(self):  # noqa: N802
        pass


class FakeTreadmill:
    """The peripheral: registers with the mock BlueZ and runs a BeltModel at ``hz``."""

    def __init__(self, model: BeltModel | None = None, name: str = "FakeTread", *,
                 ftms_service: bool = True, hz: float = 10.0) -> None:
        self.model = model or BeltModel(accel_kmh_s=2.0)
        self.name = name
        self.ftms_service = ftms_service
        self.hz = hz
        self.writes: list[bytes] = []
        self.mute_control = False  # True: writes are never answered (a write that times out)
        self.answer_delay_s = 0.0  # how long the treadmill takes to answer a write
        self.read_delay_s = 0.0  # ... and a read (its features, its ranges)
        self.write_reply_s = 0.0  # how long a write's acknowledgement (the D-Bus reply) takes
        #: True: a write is taken and never answered, nor acted on, until :meth:`release`
        self.hang_writes = False
        self.hang_op = -1  # ... only the writes of this op code (0x08: stop)
        self.hung: list[bytes] = []  # the writes that hung
        #: The writes of this op code (0x08: stop) are acted on, their answers lost
        self.unanswered_op = -1
        #: How many of the next writes (reads) fail at once with a Bluetooth error, not acted
        #: on: org.bluez.Error.Failed with ``bluetooth_error`` (BlueZ says "Not connected" when
        #: the radio link is gone)
        self.failing_writes = 0
        self.failing_reads = 0
        self.bluetooth_error = "Operation failed"
        self.failed: list[bytes] = []  # the writes that failed so
        #: How many of the next control point writes the treadmill answers ``refusal`` and
        #: does not act on ("failed"; "control not permitted": another app took it over)
        self.refusing = 0
        self.refusal = ftms.Result.FAILED
        self.refuse_op = -1  # ... only the writes of this op code (0x08: stop); -1: any
        self.reads = 0  # reads asked for (answered or not)
        #: The next control point write of this op code (0x08: stop) is first met with the
        #: indication ``stray`` (before its own answer, if any; once): an answer to another
        #: write, as a duplicate of an earlier answer come late
        self.stray_op = -1
        self.stray = b""
        #: The next control point write of this op code (0x08: a pause or stop) is acted on,
        #: but BlueZ reports it failed (org.bluez.Error.Failed) and the treadmill's answer is
        #: late: held until the next control point write comes, and sent before that write is
        #: handled (a treadmill answers in write order)
        self.late_op = -1
        self.held = b""
        self.let_go = asyncio.Event()
        self.bus: MessageBus | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.chars: dict[str, _Characteristic] = {}

    def on_write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.mute_control:
            return
        assert self.loop is not None
        if self.refusing and self.refuse_op in (-1, data[0]):
            self.refusing -= 1
            refused = ftms.Response(ftms.decode_command(data).op, self.refusal)
            self.loop.call_later(self.answer_delay_s, self.chars[ftms.CONTROL_POINT].notify,
                                 refused.encode())
            return
        response, statuses = self.model.control(data)
        if data[0] != self.unanswered_op:
            self.loop.call_later(self.answer_delay_s, self.chars[ftms.CONTROL_POINT].notify,
                                 response.encode())
        for status in statuses:
            self.loop.call_later(self.answer_delay_s, self.chars[ftms.STATUS].notify,
                                 status.encode())

    def release(self) -> None:
        """Writes are answered again; the hung ones return, not acted on (thread-safe)."""
        assert self.loop is not None
        self.hang_writes, self.hang_op = False, -1
        self.loop.call_soon_threadsafe(self.let_go.set)

    def close(self) -> None:
        """Leave the bus and stop the fake's loop (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def stop() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            if self.bus is not None:
                self.bus.disconnect()
            loop.call_later(0.2, loop.stop)

        loop.call_soon_threadsafe(stop)

    def drop_link(self) -> None:
        """The radio link to the central goes (out of range, the pad switched off): its
        device is disconnected in the mock BlueZ; it can be connected again (thread-safe)."""
        async def drop() -> None:
            assert self.bus is not None
            path = f"/org/bluez/{CENTRAL[0]}/dev_{PERIPHERAL[1].replace(':', '_')}"
            intro = await self.bus.introspect("org.bluez", path)
            device = self.bus.get_proxy_object("org.bluez", path, intro)
            await device.get_interface("org.bluez.Device1").call_disconnect()

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)

    def console(self, action: str, value: float = 0.0) -> None:
        """The user at the console (thread-safe)."""
        def run() -> None:
            for status in self.model.console(action, value):
                self.chars[ftms.STATUS].notify(status.encode())
        assert self.loop is not None
        self.loop.call_soon_threadsafe(run)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        service_uuid = ftms.FTMS_SERVICE if self.ftms_service else ftms.uuid16(0x180F)
        self.bus.export(f"{APP}/service0", _Service(service_uuid))
        m = self.model
        specs = [(ftms.FEATURE, ["read"], ftms_data.encode_features(SIM_FEATURES)),
                 (ftms.SPEED_RANGE, ["read"], ftms_data.encode_speed_range(m.speed_range)),
                 (ftms.INCLINE_RANGE, ["read"], ftms_data.encode_incline_range(m.incline_range)),
                 (ftms.TREADMILL_DATA, ["notify"], b""),
                 (ftms.CONTROL_POINT, ["write", "indicate"], b""),
                 (ftms.STATUS, ["notify"], b"")]
        if not self.ftms_service:
            specs = [(ftms.uuid16(0x2A19), ["read", "notify"], b"\x64")]
        for i, (uuid, flags, value) in enumerate(specs):
            char = _Characteristic(self, uuid, flags, value)
            self.chars[uuid] = char
            self.bus.export(f"{APP}/service0/char{i}", char)
        self.bus.export(f"{APP}/adv0", _Advertisement(self.name))
        adapter = f"/org/bluez/{PERIPHERAL[0]}"
        intro = await self.bus.introspect("org.bluez", adapter)
        obj = self.bus.get_proxy_object("org.bluez", adapter, intro)
        await obj.get_interface("org.bluez.GattManager1").call_register_application(APP, {})
        await obj.get_interface("org.bluez.LEAdvertisingManager1").call_register_advertisement(
            f"{APP}/adv0", {})
        asyncio.get_running_loop().create_task(self._physics())

    async def _physics(self) -> None:
        dt = 1.0 / self.hz
        while True:
            await asyncio.sleep(dt)
            self.model.step(dt)
            if ftms.TREADMILL_DATA in self.chars:
                self.chars[ftms.TREADMILL_DATA].notify(self.model.record())


class Checked:
    """A link whose answers are checked as it is polled: one per write, in write order
    (:class:`~voicecoach.treadmill.link.AnswerOrder` raises when the link breaks the rule)."""

    def __init__(self, link: Treadmill) -> None:
        self.link = link
        self.answers = AnswerOrder()

    @property
    def log(self) -> WriteLog:
        return self.link.log

    def send(self, command: ftms.Command, t: float) -> None:
        self.answers.sent(command)
        self.link.send(command, t)

    def poll(self, t: float) -> list[Update]:
        updates = self.link.poll(t)
        self.answers.check(updates)
        return updates

    def close(self) -> None:
        self.link.close()


def checked(link: Treadmill) -> Checked:
    return Checked(link)


def run_in_thread(fake: FakeTreadmill) -> threading.Thread:
    """Run the fake's asyncio loop in a daemon thread; returns once it is registered."""
    ready = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(fake.start())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=main, daemon=True, name="fake-ftms")
    thread.start()
    ready.wait(15)
    if errors:
        raise errors[0]
    return thread
