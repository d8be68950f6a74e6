"""The FTMS treadmill over bleak: an asyncio controller (one write at a time) and a thread-safe facade."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.bluetooth import (  # noqa: F401 - re-exported for callers
    DISCONNECT_TIMEOUT_S,
    SETUP_TIMEOUT_S,
    UNDO_S,
    Found,
    NotAnswered,
    Overdue,
    TreadmillError,
    WriteTimeout,
    adapters,
    bounded,
    explain,
    find,
    let_go,
    scan,
    within,
)
from voicecoach.treadmill.ftms import FtmsError, Op
from voicecoach.treadmill.link import (
    DEFAULT_INCLINE_RANGE,
    DEFAULT_SPEED_RANGE,
    BeltReading,
    FailingWrites,
    LinkDown,
    LinkUp,
    StatusReport,
    TreadmillInfo,
    Update,
    WriteDone,
    WriteLog,
    says_not_connected,
)

_LOGGER = logging.getLogger(__name__)

#: Seconds a control point write may take in all: BlueZ taking the write (the GATT write's
#: acknowledgement) and the treadmill's indication answering it. The acknowledgement comes
#: within a connection interval or two (tens of ms) and real treadmills indicate within a
#: second or two, so 3 s is past any healthy answer, and short enough that a stop the belt
#: may not have taken is said while the user can still act on it. Unbounded, the write
#: itself waited as long as BlueZ did (its ATT timeout is 30 s; D-Bus has none). A write
#: that times out is taken as a lost link (:meth:`BleakTreadmill._writer`).
WRITE_TIMEOUT_S = 3.0
#: Seconds a write given up on may take to unwind (a cancelled D-Bus call: at once).
WRITE_UNDO_S = 0.2
#: While writes fail at once with a Bluetooth error (not a timeout), the link checks itself
#: this often (a read of the treadmill's features: nothing moves) when no write comes: the
#: failures going on for :data:`WRITE_TIMEOUT_S` are a lost link (:class:`FailingWrites`).
CHECK_S = 0.5
#: Seconds between attempts to reconnect a lost treadmill.
RECONNECT_S = 3.0
#: On close, how long the writes already queued (a last stop) may take to go out
FLUSH_S = WRITE_TIMEOUT_S + 0.5
#: The most :meth:`BleakTreadmill.close` waits: the queued writes, then the disconnect
CLOSE_WORST_S = FLUSH_S + DISCONNECT_TIMEOUT_S + 1.0
CONNECT_TIMEOUT_S = 15.0


class FtmsController:
    """One connected FTMS treadmill: reads what it is, subscribes, and writes one control
    point command at a time under a lock, awaiting its indication with a timeout. Control is
    requested before the first command and again after it was lost; everything resets on
    disconnect."""

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
        #: What :meth:`check` reads: a characteristic the treadmill has (set up by :meth:`setup`)
        self._check_uuid: str | None = None

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
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(response)

    async def _write_one(self, command: ftms.Command) -> ftms.Response:
        answer: asyncio.Future[ftms.Response] = asyncio.get_running_loop().create_future()
        self._answer = answer

        async def exchange() -> ftms.Response:
            await self.client.write_gatt_char(ftms.CONTROL_POINT, command.encode(),
                                              response=True)
            return await answer

        try:  # the write and its answer within one bound: BlueZ may hang on either
            response = await bounded(self.write_timeout, exchange(), undo_s=WRITE_UNDO_S)
        except Overdue:
            raise WriteTimeout(f"the treadmill did not answer '{command.describe()}' within "
                               f"{self.write_timeout:g} s", "check it is on and close") from None
        finally:
            self._answer = None
            if not answer.done():
                answer.cancel()  # a late indication finds no write waiting
            elif not answer.cancelled():
                answer.exception()  # retrieved: the link lost before the write was taken
        if response.request != command.op:
            _LOGGER.warning("treadmill: answer for op 0x%02x to a write of 0x%02x",
                            response.request, command.op)
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


class BleakTreadmill:
    """:class:`~voicecoach.treadmill.link.Treadmill` over bleak. bleak runs in its own asyncio
    thread; the coach's loop only puts commands in and drains a ``queue.Queue`` of updates, so
    nothing here blocks the audio path. The link reconnects in the background by itself, also
    after a write that timed out or writes that failed (taken as a lost link:
    :class:`FailingWrites`, checked every ``check_s`` meanwhile); a disconnect that hangs is
    given up."""

    def __init__(self, address_or_name: str, *, adapter: str | None = None,
                 reconnect_s: float = RECONNECT_S, write_timeout: float = WRITE_TIMEOUT_S,
                 disconnect_timeout: float = DISCONNECT_TIMEOUT_S,
                 check_s: float = CHECK_S) -> None:
        self.address = address_or_name
        self.adapter = adapter
        self.reconnect_s = reconnect_s
        self.write_timeout = write_timeout
        self.check_s = check_s
        self.disconnect_timeout = disconnect_timeout
        self.log = WriteLog()
        self._updates: queue.Queue[tuple[float, Any]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._commands: asyncio.Queue[ftms.Command] | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._connected = False  # a writer is running
        self._writing = False    # a write is on its way
        self._t0 = time.monotonic()
        self._last_poll_t = 0.0
        self._thread = threading.Thread(target=self._run, name="treadmill-link", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ Treadmill
    def send(self, command: ftms.Command, t: float) -> None:
        self.log.add(t, command)
        self._loop.call_soon_threadsafe(self._enqueue, command)

    def poll(self, t: float) -> list[Update]:
        out: list[Update] = []
        while True:
            try:
                _wall, item = self._updates.get_nowait()
            except queue.Empty:
                break
            out.append(self._stamp(item, t))
        self._last_poll_t = t
        return out

    def close(self) -> None:
        """Write what is queued, disconnect, stop the background loop and its thread: within
        :data:`CLOSE_WORST_S` (a write or a disconnect that hangs is given up)."""
        if self._closing:
            return
        self._closing = True
        if self._loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                done.result(FLUSH_S + self.disconnect_timeout + 1.0)
            except Exception:  # noqa: BLE001 - closing anyway
                _LOGGER.debug("treadmill: shutdown did not finish cleanly", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)

    async def _shutdown(self) -> None:
        # what was queued last (the belt's stop when the coach ends under a session) is written
        # first, if the link is up, for at most FLUSH_S
        waited = 0.0
        while self._connected and waited < FLUSH_S and (
                self._writing or (self._commands is not None and not self._commands.empty())):
            await asyncio.sleep(0.02)
            waited += 0.02
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    # ------------------------------------------------------------------ the asyncio side
    @staticmethod
    def _stamp(item: Any, t: float) -> Update:
        if isinstance(item, ftms_data.TreadmillData):
            return BeltReading(t, item)
        if isinstance(item, ftms_data.Status):
            return StatusReport(t, item)
        if isinstance(item, TreadmillInfo):
            return LinkUp(t, item)
        if isinstance(item, tuple) and item[0] == "done":
            return WriteDone(t, item[1], item[2], item[3])
        return LinkDown(t, str(item[1]))

    def _put(self, item: Any) -> None:
        self._updates.put((time.monotonic(), item))

    def _enqueue(self, command: ftms.Command) -> None:
        if self._commands is not None:
            self._commands.put_nowait(command)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._commands = asyncio.Queue()
        self._task = self._loop.create_task(self._supervise())
        try:
            self._loop.run_forever()
        finally:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _supervise(self) -> None:
        said = ""
        known: Any = None  # the BLEDevice once found: reconnects go to it without a scan
        while not self._closing:
            lost = asyncio.Event()

            def on_lost(event: asyncio.Event = lost) -> None:
                self._loop.call_soon_threadsafe(event.set)

            try:
                client, controller, info = await connect(self.address, self._put, on_lost,
                                                         self.adapter, device=known,
                                                         write_timeout=self.write_timeout)
                known = controller.device
            except Exception as exc:  # noqa: BLE001 - bleak or D-Bus mid-setup: retry, never end
                problem = explain(exc, self.address)
                known = None  # look it up afresh next time
                if problem.message != said:  # one line per new kind of trouble, not per retry
                    said = problem.message
                    self._put(("down", problem.one_line()))
                await asyncio.sleep(self.reconnect_s)
                continue
            said = ""
            self._drain_commands()  # nothing written while away is sent late
            self._put(info)
            why = ["the treadmill link was lost"]
            writer = asyncio.create_task(self._writer(controller, lost, why))
            self._connected = True
            try:
                await lost.wait()
                writer.cancel()  # a write on its way is answered "link lost" before the down
                await asyncio.wait({writer})
                self._put(("down", why[0]))
            finally:
                self._connected = self._writing = False
                writer.cancel()
                self._drain_commands()  # what waited for the writer is not written, and says so
                # never waits for ever: the next reconnect (a stop to write again) or the
                # program's end must not hang on BlueZ
                await let_go(client, self.disconnect_timeout)
            await asyncio.sleep(self.reconnect_s)

    def _drain_commands(self) -> None:
        assert self._commands is not None
        while not self._commands.empty():
            command = self._commands.get_nowait()
            self._put(("done", command, None, "not connected"))

    async def _writer(self, controller: FtmsController, lost: asyncio.Event,
                      why: list[str]) -> None:
        assert self._commands is not None
        failing = FailingWrites(self.write_timeout)
        clock = asyncio.get_running_loop().time
        while not lost.is_set():
            command: ftms.Command | None
            if failing.failing:
                # writes fail at once: the next write if one comes within check_s, else a
                # check (a read; nothing moves), so that a link gone is found even when the
                # coach writes nothing more
                try:
                    command = await asyncio.wait_for(self._commands.get(), self.check_s)
                except asyncio.TimeoutError:
                    command = None
            else:
                command = await self._commands.get()
            self._writing = command is not None
            try:
                if command is None:
                    await controller.check()
                else:
                    response = await controller.write(command)
                    self._put(("done", command, response, ""))
                failing.answered()
            except WriteTimeout as exc:
                # The treadmill (or BlueZ) took the write and never answered: whether the belt
                # did it is unknown, and an answer or a write still in BlueZ could land late.
                # Taken as a lost link: disconnected (nothing queued here is written late:
                # what waits is reported "not connected" when the link is back), the coach
                # warns as for a lost link, and a stop is written again once it is back.
                if command is not None:
                    self._put(("done", command, None, "timed out"))
                why[0] = f"{exc.message}; the link is dropped and tried again"
                lost.set()
            except Exception as exc:  # noqa: BLE001 - the link fails, the session goes on
                # Failed at once (bleak's or BlueZ's error, not the treadmill's answer): a
                # lost link by the rule of a hung write (FailingWrites): "not connected" at
                # once, any other error once failures have gone on for write_timeout. One
                # failure the treadmill answers after (a write or a check) is not.
                problem = explain(exc)
                if command is not None:
                    self._put(("done", command, None, problem.message))
                if failing.failed(clock(), problem.message):
                    what = f"'{command.describe()}'" if command is not None else "a check"
                    if says_not_connected(problem.message):
                        why[0] = (f"{what} failed: {problem.message}; the link is dropped "
                                  "and tried again")
                    else:
                        why[0] = (f"writes to the treadmill failed for "
                                  f"{self.write_timeout:g} s ({problem.message}); the link is "
                                  "dropped and tried again")
                    lost.set()
            except asyncio.CancelledError:
                # the link went (or the link is closing) with the write on its way: answered
                # all the same, as every write is (link.Treadmill); the belt may have done it
                if command is not None:
                    self._put(("done", command, None, "link lost"))
                raise
            finally:
                self._writing = False
