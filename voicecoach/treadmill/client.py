"""The FTMS treadmill over bleak for the coach: a thread-safe facade that runs the controller in
its own asyncio thread and reconnects by itself."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
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
from voicecoach.treadmill.controller import (  # noqa: F401 - re-exported for callers
    CONNECT_TIMEOUT_S,
    WRITE_TIMEOUT_S,
    WRITE_UNDO_S,
    FtmsController,
    connect,
)
from voicecoach.treadmill.link import (
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
