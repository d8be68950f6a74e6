"""A simulated FTMS treadmill: belt physics, console events and known quirks, on workout time."""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op, Result
from voicecoach.treadmill.ftms_data import Features, Range, Status, StatusOp
from voicecoach.treadmill.link import (
    AnswerOrder,
    BeltReading,
    FailingWrites,
    LinkDown,
    LinkUp,
    StatusReport,
    TreadmillInfo,
    Update,
    WriteDone,
    WriteLog,
)

_LOGGER = logging.getLogger(__name__)

SIM_SPEED_RANGE = Range(0.8, 16.0, 0.1)
SIM_INCLINE_RANGE = Range(0.0, 12.0, 0.5)
SIM_FEATURES = Features(frozenset({"total_distance", "inclination"}),
                        frozenset({"speed_target", "inclination_target"}))


@dataclass(frozen=True)
class Quirks:
    """Behaviours of real treadmills that the coach has to cope with."""

    reads_mph: bool = False
    """Reads the target speed parameter as mph (hundredths), not km/h."""
    refuses_speed: bool = False
    """Answers "not supported" to target speed (start, stop and incline still work)."""
    toggle_start: bool = False
    """Start/resume while running pauses the belt (a start/pause toggle)."""
    denies_control: bool = False
    """Answers "control not permitted" (result 5) to every request for control."""
    fails_stop: bool = False
    """Answers "operation failed" to every stop (a faulty pad: the coach must keep asking)."""


class BeltModel:
    """A treadmill's belt and console: physics over seconds and the control point's answers.

    Used by :class:`SimTreadmill` (workout time) and by the fake BLE peripheral in the tests.
    """

    def __init__(self, speed_range: Range = SIM_SPEED_RANGE,
                 incline_range: Range = SIM_INCLINE_RANGE, *, accel_kmh_s: float = 0.5,
                 incline_rate_pct_s: float = 0.5, quirks: Quirks | None = None) -> None:
        self.speed_range = speed_range
        self.incline_range = incline_range
        self.accel = accel_kmh_s
        self.incline_rate = incline_rate_pct_s
        self.quirks = quirks or Quirks()
        self.state = "stopped"
        self.speed_kmh = 0.0
        self.target_kmh = 0.0
        self.incline_pct = 0.0
        self.target_incline = 0.0
        self.distance_m = 0.0
        self.controlled = False

    def step(self, dt: float) -> None:
        """Move the belt ``dt`` seconds towards its target (zero unless running)."""
        goal = self.target_kmh if self.state == "running" else 0.0
        delta = goal - self.speed_kmh
        move = min(abs(delta), self.accel * dt)
        self.speed_kmh += move if delta > 0 else -move
        self.distance_m += self.speed_kmh / 3.6 * dt
        di = self.target_incline - self.incline_pct
        self.incline_pct += min(abs(di), self.incline_rate * dt) * (1 if di > 0 else -1)

    def record(self) -> bytes:
        """The Treadmill Data notification for now."""
        return ftms_data.encode_treadmill_data(round(self.speed_kmh, 2), round(self.incline_pct, 1),
                                          self.distance_m)

    def _start(self) -> None:
        self.state = "running"
        if self.target_kmh <= 0:
            self.target_kmh = self.speed_range.minimum

    def control(self, data: bytes) -> tuple[ftms.Response, list[Status]]:
        """Answer one control point write: the response and any status notifications."""
        command = ftms.decode_command(data)
        op = command.op

        def answer(result: Result, *status: Status) -> tuple[ftms.Response, list[Status]]:
            return ftms.Response(op, result), list(status)

        if op is Op.REQUEST_CONTROL:
            if self.quirks.denies_control:
                return answer(Result.NOT_PERMITTED)
            self.controlled = True
            return answer(Result.SUCCESS)
        if not self.controlled:
            return answer(Result.NOT_PERMITTED)
        if op is Op.SET_TARGET_SPEED:
            if self.quirks.refuses_speed:
                return answer(Result.NOT_SUPPORTED)
            raw = float(command.value or 0.0)
            kmh = raw * KMH_PER_MPH if self.quirks.reads_mph else raw
            if not self.speed_range.contains(kmh):
                return answer(Result.INVALID_PARAMETER)
            self.target_kmh = kmh
            return answer(Result.SUCCESS, Status(StatusOp.TARGET_SPEED_CHANGED, raw))
        if op is Op.SET_TARGET_INCLINE:
            pct = float(command.value or 0.0)
            if not self.incline_range.contains(pct):
                return answer(Result.INVALID_PARAMETER)
            self.target_incline = pct
            return answer(Result.SUCCESS, Status(StatusOp.TARGET_INCLINE_CHANGED, pct))
        if op is Op.START_RESUME:
            if self.quirks.toggle_start and self.state == "running":
                self.state = "paused"
            else:
                self._start()
            return answer(Result.SUCCESS)
        if op is Op.STOP_PAUSE:
            if self.quirks.fails_stop and command.value != ftms.PAUSE:
                return answer(Result.FAILED)
            if command.value == ftms.PAUSE:
                self.state = "paused" if self.state == "running" else self.state
            else:
                self.state, self.target_kmh = "stopped", 0.0
            return answer(Result.SUCCESS)
        if op is Op.RESET:
            self.controlled = False
            self.state, self.target_kmh = "stopped", 0.0
            return answer(Result.SUCCESS)
        return answer(Result.NOT_SUPPORTED)

    def console(self, action: str, value: float = 0.0) -> list[Status]:
        """The user at the console: stop, pause, start, safety_key, speed (km/h), incline."""
        if action == "stop":
            self.state, self.target_kmh = "stopped", 0.0
            return [Status(StatusOp.STOPPED_OR_PAUSED_BY_USER, ftms.STOP)]
        if action == "pause":
            self.state = "paused"
            return [Status(StatusOp.STOPPED_OR_PAUSED_BY_USER, ftms.PAUSE)]
        if action == "start":
            self._start()
            return [Status(StatusOp.STARTED_OR_RESUMED_BY_USER)]
        if action == "safety_key":
            self.state, self.target_kmh = "stopped", 0.0
            return [Status(StatusOp.STOPPED_BY_SAFETY_KEY)]
        if action == "speed":
            self.target_kmh = self.speed_range.clamp(value)
            return [Status(StatusOp.TARGET_SPEED_CHANGED, round(self.target_kmh, 2))]
        if action == "incline":
            self.target_incline = self.incline_range.clamp(value)
            return [Status(StatusOp.TARGET_INCLINE_CHANGED, self.target_incline)]
        raise ValueError(f"unknown console action {action!r}")


@dataclass(order=True)
class _Due:
    t: float
    seq: int
    kind: str = field(compare=False)
    payload: object = field(compare=False, default=None)


class SimTreadmill:
    """A :class:`~voicecoach.treadmill.link.Treadmill` on workout time: readings every
    ``report_s``, answers ``delay_s`` after a write, scheduled console events and link drops.

    ``schedule(t, action, value)`` takes the console actions of :class:`BeltModel` plus
    ``disconnect`` (``value`` seconds down), ``nonsense`` (one reading of ``value`` km/h) and
    ``mute`` (for ``value`` seconds writes are taken and never answered: as BleakTreadmill
    does, each times out after ``write_timeout`` and the link is dropped, back
    ``reconnect_s`` later), ``fail`` (for ``value`` seconds writes are answered "failed"),
    ``deny`` (for ``value`` seconds writes are answered "control not permitted": another app
    took control, or the pad will not be driven now; control is asked for again after each),
    ``error`` (for ``value`` seconds writes, and the link's checks, fail at once with a
    Bluetooth error, not acted on: as BleakTreadmill does, a check every ``check_s`` while
    they fail, and failures that go on for ``write_timeout`` drop the link:
    :class:`~voicecoach.treadmill.link.FailingWrites`) and ``late`` (the next write is acted
    on, or failed, as usual but answered ``value`` seconds later, or "link lost" if the link
    drops first; writes sent meanwhile wait for that answer, as FTMS writes go one at a time:
    a belt halted by a stop whose answer is still on its way).
    """

    #: The error of a write refused by the ``error`` action (BlueZ's, as the link words it).
    BLUETOOTH_ERROR = "Bluetooth: [org.bluez.Error.Failed] Operation failed"

    def __init__(self, model: BeltModel | None = None, *, name: str = "SimTreadmill",
                 report_s: float = 1.0, delay_s: float = 0.05, step_s: float = 0.1,
                 connect_at: float = 0.0, write_timeout: float = 3.0,
                 reconnect_s: float = 3.0, check_s: float = 0.5) -> None:
        self.model = model or BeltModel()
        self.name = name
        self.report_s = report_s
        self.delay_s = delay_s
        self.step_s = step_s
        self.write_timeout = write_timeout
        self.reconnect_s = reconnect_s
        self.check_s = check_s
        self.mute_until = -1.0
        #: Until then writes and checks fail at once with a Bluetooth error (the "error" action)
        self.error_until = -1.0
        self._failing = FailingWrites(write_timeout)
        #: Times the link checked itself while writes failed (each a read: nothing moves).
        self.checks: list[float] = []
        #: Until then every write is answered "failed" and not acted on (the "fail" action).
        self.fail_until = -1.0
        #: The answer of a write failed so: "failed", or "control not permitted" ("deny")
        self.fail_result = Result.FAILED
        #: The next write is answered this many seconds late (the "late" action; 0: none)
        self.late_s = 0.0
        #: Until then a late answer is on its way: the writes after it wait (one at a time)
        self._held_until = -1.0
        self.log = WriteLog()
        self.answers = AnswerOrder()  # the link's rule (one answer per write), checked on polls
        self._control = False
        self.now = 0.0
        self.up = False
        self.connects = 0
        #: Workout times at which the link came up (connects and reconnects).
        self.up_times: list[float] = []
        self._queue: list[_Due] = []
        self._seq = 0
        self._out: list[Update] = []
        self._next_report = connect_at
        self._push(connect_at, "connect")

    def info(self) -> TreadmillInfo:
        return TreadmillInfo(self.name, "SIM:00:00:00:00:01", SIM_FEATURES,
                             self.model.speed_range, self.model.incline_range)

    def _push(self, t: float, kind: str, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Due(t, self._seq, kind, payload))

    def schedule(self, t: float, action: str, value: float = 0.0) -> None:
        """A console event (or a link drop) at workout time ``t``."""
        self._push(t, "console", (action, value))

    # ------------------------------------------------------------------ Treadmill
    def send(self, command: ftms.Command, t: float) -> None:
        if self.up and not self._control and command.op is not Op.REQUEST_CONTROL:
            self._control = True  # control is requested first, once per connection
            self.send(ftms.request_control(), t)
        self.answers.sent(command)
        if not self.up:
            self._out.append(WriteDone(t, command, error="not connected"))
            return
        self.log.add(t, command)
        self._push(t + self.delay_s, "write", command)

    def poll(self, t: float) -> list[Update]:
        self._run_until(t)
        out, self._out = self._out, []
        self.answers.check(out)
        return out

    def close(self) -> None:
        self.up = False

    # ------------------------------------------------------------------ time
    def _run_until(self, t: float) -> None:
        while True:
            nxt = min(self._queue[0].t if self._queue else t, self._next_report, t)
            while self.now < nxt - 1e-9:
                dt = min(self.step_s, nxt - self.now)
                self.model.step(dt)
                self.now += dt
            self.now = max(self.now, nxt)
            if self._queue and self._queue[0].t <= self.now + 1e-9:
                self._handle(heapq.heappop(self._queue))
            elif self._next_report <= self.now + 1e-9:
                if self.up:
                    self._out.append(BeltReading(self.now, ftms_data.decode_treadmill_data(
                        self.model.record())))
                self._next_report += self.report_s
            elif self.now >= t - 1e-9:
                return

    def _drop(self, t: float, reason: str, down_s: float) -> None:
        """The link goes away at ``t`` for ``down_s``; writes on their way are lost with it."""
        if not self.up:
            return
        self.up = False
        lost = sorted(d for d in self._queue if d.kind in ("write", "timeout", "answer"))
        self._queue = [d for d in self._queue
                       if d.kind not in ("write", "timeout", "check", "answer")]
        self._failing.answered()  # a run of failures ends with the link
        self._held_until = -1.0
        heapq.heapify(self._queue)
        self._out.extend(WriteDone(t, d.payload[0] if isinstance(d.payload, tuple)
                                   else d.payload, error="link lost")  # type: ignore[arg-type]
                         for d in lost)
        self._out.append(LinkDown(t, reason))
        self._push(t + down_s, "connect")

    def _failed(self, t: float) -> None:
        """A write or check failed at once at ``t``: the link dropped when the failures have
        gone on for ``write_timeout``, else checked again ``check_s`` later (BleakTreadmill's
        rule; it writes a command that comes first instead, as a check)."""
        if self._failing.failed(t, self.BLUETOOTH_ERROR):
            self._drop(t, f"writes to the treadmill failed for {self.write_timeout:g} s "
                          f"({self.BLUETOOTH_ERROR}); the link is dropped and tried again",
                       self.reconnect_s)
        elif not any(d.kind == "check" for d in self._queue):
            self._push(t + self.check_s, "check")

    def _answer(self, t: float, command: ftms.Command, response: ftms.Response) -> None:
        """The treadmill's answer to a write handled at ``t``: now, or ``late_s`` later (the
        "late" action: the writes after it wait for it)."""
        if self.late_s > 0:
            self._held_until = t + self.late_s
            self.late_s = 0.0
            self._push(self._held_until, "answer", (command, response))
        else:
            self._out.append(WriteDone(t, command, response))

    def _handle(self, due: _Due) -> None:
        if due.kind == "connect":
            self.up = True
            self.connects += 1
            self.up_times.append(due.t)
            self.model.controlled = self._control = False  # control is per connection
            self._out.append(LinkUp(due.t, self.info()))
        elif due.kind == "write":
            assert isinstance(due.payload, ftms.Command)
            if not self.up:
                self._out.append(WriteDone(due.t, due.payload, error="not connected"))
                return
            if due.t < self._held_until - 1e-9:  # the write before it is not answered yet
                self._push(self._held_until + self.delay_s, "write", due.payload)
                return
            if due.t < self.mute_until:  # never acted on or answered: the writes after it wait
                self._held_until = due.t + self.write_timeout
                self._push(self._held_until, "timeout", due.payload)
                return
            if due.t < self.error_until:  # refused at once by Bluetooth, never acted on
                self._out.append(WriteDone(due.t, due.payload, error=self.BLUETOOTH_ERROR))
                self._failed(due.t)
                return
            self._failing.answered()
            if due.t < self.fail_until:  # answered (at once unless late), not done
                if self.fail_result == Result.NOT_PERMITTED:
                    self._control = False  # ask again before the next write
                self._answer(due.t, due.payload, ftms.Response(due.payload.op, self.fail_result))
                return
            response, statuses = self.model.control(due.payload.encode())
            if response.result == Result.NOT_PERMITTED or (
                    due.payload.op is Op.REQUEST_CONTROL and not response.ok):
                self._control = False  # ask again before the next write
            self._answer(due.t, due.payload, response)
            self._out.extend(StatusReport(due.t, s) for s in statuses)
        elif due.kind == "answer":
            assert isinstance(due.payload, tuple)
            self._out.append(WriteDone(due.t, due.payload[0], due.payload[1]))
        elif due.kind == "timeout":
            assert isinstance(due.payload, ftms.Command)
            if self.up:
                self._out.append(WriteDone(due.t, due.payload, error="timed out"))
                self._drop(due.t, f"the treadmill did not answer "
                                  f"'{due.payload.describe()}' within {self.write_timeout:g} s",
                           self.reconnect_s)
        elif due.kind == "check":
            if self.up and self._failing.failing:
                self.checks.append(due.t)
                if due.t < self.error_until:
                    self._failed(due.t)
                else:
                    self._failing.answered()
        elif due.kind == "console":
            assert isinstance(due.payload, tuple)
            action: str = due.payload[0]
            value: float = due.payload[1]
            if action == "disconnect":
                self._drop(due.t, "simulated link drop", float(value))
            elif action == "mute":
                self.mute_until = due.t + float(value)
            elif action in ("fail", "deny"):
                self.fail_until = due.t + float(value)
                self.fail_result = Result.FAILED if action == "fail" else Result.NOT_PERMITTED
            elif action == "error":
                self.error_until = due.t + float(value)
            elif action == "late":
                self.late_s = float(value)
            elif action == "nonsense":
                if self.up:
                    self._out.append(BeltReading(due.t, ftms_data.TreadmillData(float(value), None,
                                                                           None)))
            else:
                statuses = self.model.console(action, float(value))
                if self.up:
                    self._out.extend(StatusReport(due.t, s) for s in statuses)
