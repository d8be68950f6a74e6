"""A pure codec of the Bluetooth Fitness Machine Service (FTMS): its UUIDs and the control point
(the commands a link writes, stop among them, and the treadmill's responses). What the
treadmill reports (data, status, ranges, features) is voicecoach.treadmill.ftms_data."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)


def uuid16(short: int) -> str:
    """The full 128-bit UUID string of a 16-bit Bluetooth SIG UUID."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


FTMS_SERVICE = uuid16(0x1826)
FEATURE = uuid16(0x2ACC)
TREADMILL_DATA = uuid16(0x2ACD)
TRAINING_STATUS = uuid16(0x2AD3)
SPEED_RANGE = uuid16(0x2AD4)
INCLINE_RANGE = uuid16(0x2AD5)
CONTROL_POINT = uuid16(0x2AD9)
STATUS = uuid16(0x2ADA)

KMH_PER_MPH = 1.609344


class FtmsError(VoicecoachError):
    """A treadmill sent bytes that do not follow FTMS (too short, unknown layout)."""


class Op(IntEnum):
    """Fitness Machine Control Point op codes a treadmill link uses."""

    REQUEST_CONTROL = 0x00
    RESET = 0x01
    SET_TARGET_SPEED = 0x02
    SET_TARGET_INCLINE = 0x03
    START_RESUME = 0x07
    STOP_PAUSE = 0x08
    RESPONSE = 0x80


class Result(IntEnum):
    """Control Point result codes (in the 0x80 response indication)."""

    SUCCESS = 0x01
    NOT_SUPPORTED = 0x02
    INVALID_PARAMETER = 0x03
    FAILED = 0x04
    NOT_PERMITTED = 0x05


#: What each result means, in words for the user.
RESULT_TEXT = {Result.SUCCESS: "done", Result.NOT_SUPPORTED: "not supported by this treadmill",
               Result.INVALID_PARAMETER: "a value outside what the treadmill accepts",
               Result.FAILED: "the treadmill could not do it",
               Result.NOT_PERMITTED: "control not permitted (another app may hold it)"}

STOP = 0x01
PAUSE = 0x02


# ------------------------------------------------------------------ control point
@dataclass(frozen=True)
class Command:
    """One control point write: an op code and its parameter (km/h, percent or stop/pause)."""

    op: Op
    value: float | int | None = None

    def encode(self) -> bytes:
        """The bytes to write to the Fitness Machine Control Point."""
        if self.op is Op.SET_TARGET_SPEED:
            assert self.value is not None
            raw = round(float(self.value) * 100)
            if not 0 <= raw <= 0xFFFF:
                raise FtmsError(f"target speed {self.value} km/h cannot be sent",
                                "use 0 to 655 km/h")
            return struct.pack("<BH", self.op, raw)
        if self.op is Op.SET_TARGET_INCLINE:
            assert self.value is not None
            raw = round(float(self.value) * 10)
            if not -0x8000 <= raw <= 0x7FFF:
                raise FtmsError(f"target incline {self.value} % cannot be sent", "")
            return struct.pack("<Bh", self.op, raw)
        if self.op is Op.STOP_PAUSE:
            return struct.pack("<BB", self.op, int(self.value or STOP))
        return bytes([self.op])

    @property
    def moves_belt(self) -> bool:
        """True for writes that set speed or incline (the ones the coach must be asked for)."""
        return self.op in (Op.SET_TARGET_SPEED, Op.SET_TARGET_INCLINE)

    def describe(self) -> str:
        """Short human text, e.g. "target speed 2.09 km/h"."""
        if self.op is Op.SET_TARGET_SPEED:
            return f"target speed {float(self.value or 0):.2f} km/h"
        if self.op is Op.SET_TARGET_INCLINE:
            return f"target incline {float(self.value or 0):g} %"
        if self.op is Op.STOP_PAUSE:
            return "pause" if self.value == PAUSE else "stop"
        return self.op.name.lower().replace("_", " ")


def request_control() -> Command:
    return Command(Op.REQUEST_CONTROL)


def start_resume() -> Command:
    return Command(Op.START_RESUME)


def stop() -> Command:
    return Command(Op.STOP_PAUSE, STOP)


def pause() -> Command:
    return Command(Op.STOP_PAUSE, PAUSE)


def target_speed(kmh: float) -> Command:
    return Command(Op.SET_TARGET_SPEED, round(kmh, 2))


def target_incline(pct: float) -> Command:
    return Command(Op.SET_TARGET_INCLINE, round(pct, 1))


def decode_command(data: bytes) -> Command:
    """A control point write back into a :class:`Command` (the fake treadmill's side)."""
    if not data:
        raise FtmsError("empty control point write", "")
    try:
        op = Op(data[0])
    except ValueError:
        raise FtmsError(f"unknown control point op code 0x{data[0]:02x}", "") from None
    try:
        if op is Op.SET_TARGET_SPEED:
            return Command(op, struct.unpack_from("<H", data, 1)[0] / 100)
        if op is Op.SET_TARGET_INCLINE:
            return Command(op, struct.unpack_from("<h", data, 1)[0] / 10)
        if op is Op.STOP_PAUSE:
            return Command(op, data[1])
    except (struct.error, IndexError):
        raise FtmsError(f"control point write {data.hex()} is too short", "") from None
    return Command(op)


@dataclass(frozen=True)
class Response:
    """The control point's indication: which request it answers and how it went."""

    request: int
    result: int

    @property
    def ok(self) -> bool:
        return self.result == Result.SUCCESS

    def encode(self) -> bytes:
        return bytes([Op.RESPONSE, self.request, self.result])

    def text(self) -> str:
        try:
            return RESULT_TEXT[Result(self.result)]
        except ValueError:
            return f"unknown result code {self.result}"


def decode_response(data: bytes) -> Response:
    """Parse a control point indication (0x80, request op code, result code)."""
    if len(data) < 3 or data[0] != Op.RESPONSE:
        raise FtmsError(f"control point indication {data.hex()} is not a response", "")
    return Response(data[1], data[2])
