"""The treadmill link as the coach sees it: non-blocking writes in, timestamped updates out."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms_data import Features, Range

_LOGGER = logging.getLogger(__name__)

#: Used when a treadmill does not say (or says nonsense about) its ranges.
DEFAULT_SPEED_RANGE = Range(0.5, 10.0, 0.1)
DEFAULT_INCLINE_RANGE = Range(0.0, 0.0, 0.5)


@dataclass(frozen=True)
class TreadmillInfo:
    """What a treadmill says about itself when connected."""

    name: str
    address: str
    features: Features
    speed_range: Range
    incline_range: Range
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BeltReading:
    """A joined Treadmill Data record at workout time ``t``."""

    t: float
    data: ftms_data.TreadmillData


@dataclass(frozen=True)
class StatusReport:
    """A Fitness Machine Status notification at workout time ``t``."""

    t: float
    status: ftms_data.Status


@dataclass(frozen=True)
class WriteDone:
    """A control point write finished: its response, or ``error`` (timeout, not connected)."""

    t: float
    command: ftms.Command
    response: ftms.Response | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.ok


@dataclass(frozen=True)
class LinkUp:
    """Connected (again) and subscribed; ``info`` read from the treadmill."""

    t: float
    info: TreadmillInfo


@dataclass(frozen=True)
class LinkDown:
    """The link went away (``reason``); the link keeps retrying in the background."""

    t: float
    reason: str


Update = BeltReading | StatusReport | WriteDone | LinkUp | LinkDown


@dataclass
class WriteLog:
    """Every control point write a link made, with its workout time (benchmarks and tests)."""

    writes: list[tuple[float, ftms.Command]] = field(default_factory=list)

    def add(self, t: float, command: ftms.Command) -> None:
        self.writes.append((t, command))

    def moving(self) -> list[tuple[float, ftms.Command]]:
        """The speed and incline writes."""
        return [(t, c) for t, c in self.writes if c.moves_belt]

    def of(self, op: ftms.Op) -> list[tuple[float, ftms.Command]]:
        return [(t, c) for t, c in self.writes if c.op == op]


def says_not_connected(error: str) -> bool:
    """A Bluetooth error that says the link is gone: bleak's own "Not connected" (it knows
    the device is disconnected) or BlueZ's (``org.bluez.Error.Failed: Not connected`` when the
    radio link is gone, ``org.bluez.Error.NotConnected``)."""
    text = error.lower()
    return "not connected" in text or "notconnected" in text


@dataclass
class FailingWrites:
    """When writes that fail at once with a Bluetooth error (not a timeout, not the
    treadmill's answer) are a lost link, by the rule of a write that hangs: a failure that
    says the link is gone (:func:`says_not_connected`) is one at once; any other starts a
    run, which a write or check the treadmill answers ends, and a run that lasts
    ``window_s`` (a hung write's bound) is one. Times are the caller's clock."""

    window_s: float
    #: The time of the first failure of the run going on (None: none is).
    since: float | None = None

    def failed(self, t: float, error: str) -> bool:
        """A write (or check) failed at ``t`` with ``error``: True if the link is lost."""
        if self.since is None:
            self.since = t
        return says_not_connected(error) or t - self.since >= self.window_s - 1e-9

    def answered(self) -> None:
        """The treadmill answered a write or a check: the run (if any) is over."""
        self.since = None

    @property
    def failing(self) -> bool:
        return self.since is not None


class AnswerOrderError(RuntimeError):
    """A link broke :class:`Treadmill`'s rule of one answer per write, in write order."""


@dataclass
class AnswerOrder:
    """Checks :class:`Treadmill`'s rule that every write sent is answered by one
    :class:`WriteDone`, in the order the writes were sent (the simulator checks itself;
    the tests check bleak's link)."""

    #: Written, not answered yet: the oldest first
    waiting: deque[ftms.Command] = field(default_factory=deque)

    def sent(self, command: ftms.Command) -> None:
        self.waiting.append(command)

    def answered(self, done: WriteDone) -> None:
        """Raises :class:`AnswerOrderError` unless ``done`` answers the oldest write waiting."""
        if not self.waiting:
            raise AnswerOrderError(f"an answer to '{done.command.describe()}', which is not "
                                   "waiting for one")
        if self.waiting[0] != done.command:
            raise AnswerOrderError(f"an answer to '{done.command.describe()}' before the one to "
                                   f"'{self.waiting[0].describe()}', written first")
        self.waiting.popleft()

    def check(self, updates: list[Update]) -> None:
        for update in updates:
            if isinstance(update, WriteDone):
                self.answered(update)


class Treadmill(Protocol):
    """A treadmill link used from the coach's (synchronous) loop. Neither call blocks: writes
    are queued and their results come back from :meth:`poll` as :class:`WriteDone`.

    Every write sent is answered by exactly one :class:`WriteDone`, in the order the writes
    were sent, whatever happens to the link meanwhile (one the link loses, or could not
    write, is answered with an ``error``: "link lost", "timed out", "not connected"); only
    writes still on their way at :meth:`close` may go unanswered. FTMS writes go one at a
    time, so the answers to the stops and pauses written can be counted off in order
    (device.belt's stale answers rely on it). A link may write a request for control on its
    own before a write (:meth:`send`): the simulator sends it as a write of its own, answered
    so; bleak's link does not report it. :class:`AnswerOrder` checks the rule."""

    log: WriteLog

    def send(self, command: ftms.Command, t: float) -> None:
        """Queue one control point write at workout time ``t`` (control is requested first)."""
        ...

    def poll(self, t: float) -> list[Update]:
        """Everything that arrived since the last poll, stamped no later than ``t``."""
        ...

    def close(self) -> None:
        """Disconnect and stop any background work."""
        ...
