"""A pure codec of what an FTMS treadmill reports: Treadmill Data records (joined across "More
Data" fragments), Fitness Machine Status, the supported speed and incline ranges, features."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum

from voicecoach.treadmill.ftms import KMH_PER_MPH, STOP, FtmsError

_LOGGER = logging.getLogger(__name__)


class StatusOp(IntEnum):
    """Fitness Machine Status op codes (notifications about the machine's own changes)."""

    RESET = 0x01
    STOPPED_OR_PAUSED_BY_USER = 0x02
    STOPPED_BY_SAFETY_KEY = 0x03
    STARTED_OR_RESUMED_BY_USER = 0x04
    TARGET_SPEED_CHANGED = 0x05
    TARGET_INCLINE_CHANGED = 0x06
    CONTROL_PERMISSION_LOST = 0xFF


# ------------------------------------------------------------------ treadmill data
class DataFlag(IntEnum):
    """Treadmill Data flags (bit numbers). Bit 0 set means *no* speed field: more data follows."""

    MORE_DATA = 0
    AVERAGE_SPEED = 1
    TOTAL_DISTANCE = 2
    INCLINATION = 3
    ELEVATION_GAIN = 4
    INSTANTANEOUS_PACE = 5
    AVERAGE_PACE = 6
    EXPENDED_ENERGY = 7
    HEART_RATE = 8
    METABOLIC_EQUIVALENT = 9
    ELAPSED_TIME = 10
    REMAINING_TIME = 11
    FORCE_AND_POWER = 12


#: (flag, [(field name, struct format, scale)]) in the order the fields follow the flags.
_DATA_LAYOUT: tuple[tuple[DataFlag, tuple[tuple[str, str, float], ...]], ...] = (
    (DataFlag.AVERAGE_SPEED, (("average_speed_kmh", "H", 0.01),)),
    (DataFlag.TOTAL_DISTANCE, (("distance_m", "U24", 1.0),)),
    (DataFlag.INCLINATION, (("incline_pct", "h", 0.1), ("ramp_angle_deg", "h", 0.1))),
    (DataFlag.ELEVATION_GAIN, (("elevation_gain_m", "H", 0.1), ("elevation_loss_m", "H", 0.1))),
    (DataFlag.INSTANTANEOUS_PACE, (("pace_km_per_min", "B", 0.1),)),
    (DataFlag.AVERAGE_PACE, (("average_pace_km_per_min", "B", 0.1),)),
    (DataFlag.EXPENDED_ENERGY, (("energy_kcal", "H", 1.0), ("energy_kcal_per_h", "H", 1.0),
                                ("energy_kcal_per_min", "B", 1.0))),
    (DataFlag.HEART_RATE, (("heart_rate_bpm", "B", 1.0),)),
    (DataFlag.METABOLIC_EQUIVALENT, (("met", "B", 0.1),)),
    (DataFlag.ELAPSED_TIME, (("elapsed_s", "H", 1.0),)),
    (DataFlag.REMAINING_TIME, (("remaining_s", "H", 1.0),)),
    (DataFlag.FORCE_AND_POWER, (("force_n", "h", 1.0), ("power_w", "h", 1.0))),
)
_NOT_AVAILABLE = {"incline_pct": 0x7FFF, "ramp_angle_deg": 0x7FFF}


@dataclass(frozen=True)
class TreadmillData:
    """Fields of one Treadmill Data record; None where the treadmill did not send them."""

    speed_kmh: float | None = None
    incline_pct: float | None = None
    distance_m: float | None = None
    more_data: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def speed_mph(self) -> float | None:
        return None if self.speed_kmh is None else self.speed_kmh / KMH_PER_MPH


def _read(fmt: str, data: bytes, at: int) -> tuple[int, int]:
    if fmt == "U24":
        if at + 3 > len(data):
            raise struct.error("short")
        return int.from_bytes(data[at:at + 3], "little"), 3
    size = struct.calcsize("<" + fmt)
    return struct.unpack_from("<" + fmt, data, at)[0], size


def decode_treadmill_data(data: bytes) -> TreadmillData:
    """Parse one Treadmill Data notification (one fragment when More Data is set)."""
    if len(data) < 2:
        raise FtmsError(f"treadmill data {data.hex()} is shorter than its flags", "")
    flags = struct.unpack_from("<H", data)[0]
    at = 2
    values: dict[str, float] = {}
    try:
        more = bool(flags & (1 << DataFlag.MORE_DATA))
        if not more:
            raw, size = _read("H", data, at)
            values["speed_kmh"] = raw * 0.01
            at += size
        for flag, fields_ in _DATA_LAYOUT:
            if not flags & (1 << flag):
                continue
            for name, fmt, scale in fields_:
                raw, size = _read(fmt, data, at)
                at += size
                if _NOT_AVAILABLE.get(name) != raw:
                    values[name] = round(raw * scale, 3)
    except struct.error:
        raise FtmsError(f"treadmill data {data.hex()} is shorter than its flags say "
                        f"(flags 0x{flags:04x})", "") from None
    if at != len(data):
        _LOGGER.debug("treadmill data: %d bytes after the fields of flags 0x%04x ignored",
                      len(data) - at, flags)
    speed = values.pop("speed_kmh", None)
    incline = values.pop("incline_pct", None)
    distance = values.pop("distance_m", None)
    return TreadmillData(speed, incline, distance, more, values)


def encode_treadmill_data(speed_kmh: float | None, incline_pct: float | None = None,
                          distance_m: float | None = None) -> bytes:
    """Bytes of a Treadmill Data record (the fake treadmill's side); speed None = More Data."""
    flags = 0
    body = b""
    if speed_kmh is None:
        flags |= 1 << DataFlag.MORE_DATA
    else:
        body += struct.pack("<H", max(0, round(speed_kmh * 100)))
    if distance_m is not None:
        flags |= 1 << DataFlag.TOTAL_DISTANCE
        body += max(0, round(distance_m)).to_bytes(3, "little")
    if incline_pct is not None:
        flags |= 1 << DataFlag.INCLINATION
        body += struct.pack("<hh", round(incline_pct * 10), 0)
    return struct.pack("<H", flags) + body


class DataJoiner:
    """Joins More Data fragments: fields are kept until a record with the speed field arrives,
    and only a complete record is returned; :meth:`reset` on disconnect."""

    def __init__(self) -> None:
        self._pending: TreadmillData | None = None

    def reset(self) -> None:
        self._pending = None

    def feed(self, data: bytes) -> TreadmillData | None:
        """One notification's bytes -> the joined record, or None while fragments arrive."""
        part = decode_treadmill_data(data)
        if self._pending is not None:
            before = self._pending
            part = replace(
                part,
                speed_kmh=part.speed_kmh if part.speed_kmh is not None else before.speed_kmh,
                incline_pct=part.incline_pct if part.incline_pct is not None
                else before.incline_pct,
                distance_m=part.distance_m if part.distance_m is not None else before.distance_m,
                extra={**before.extra, **part.extra})
        if part.more_data:
            self._pending = part
            return None
        self._pending = None
        return part


# ------------------------------------------------------------------ status
@dataclass(frozen=True)
class Status:
    """One Fitness Machine Status notification."""

    op: int
    value: float | int | None = None

    @property
    def name(self) -> str:
        try:
            return StatusOp(self.op).name.lower()
        except ValueError:
            return f"status_0x{self.op:02x}"

    def encode(self) -> bytes:
        if self.op == StatusOp.TARGET_SPEED_CHANGED:
            return struct.pack("<BH", self.op, round(float(self.value or 0) * 100))
        if self.op == StatusOp.TARGET_INCLINE_CHANGED:
            return struct.pack("<Bh", self.op, round(float(self.value or 0) * 10))
        if self.op == StatusOp.STOPPED_OR_PAUSED_BY_USER:
            return struct.pack("<BB", self.op, int(self.value or STOP))
        return bytes([self.op])


def decode_status(data: bytes) -> Status:
    """Parse a Fitness Machine Status notification (unknown op codes are kept, not errors)."""
    if not data:
        raise FtmsError("empty machine status", "")
    op = data[0]
    try:
        if op == StatusOp.TARGET_SPEED_CHANGED:
            return Status(op, struct.unpack_from("<H", data, 1)[0] / 100)
        if op == StatusOp.TARGET_INCLINE_CHANGED:
            return Status(op, struct.unpack_from("<h", data, 1)[0] / 10)
        if op == StatusOp.STOPPED_OR_PAUSED_BY_USER:
            return Status(op, data[1] if len(data) > 1 else STOP)
    except struct.error:
        raise FtmsError(f"machine status {data.hex()} is too short", "") from None
    return Status(op)


# ------------------------------------------------------------------ ranges and features
@dataclass(frozen=True)
class Range:
    """A supported range: minimum, maximum and the smallest step (km/h or percent)."""

    minimum: float
    maximum: float
    step: float

    def clamp(self, value: float) -> float:
        return min(self.maximum, max(self.minimum, value))

    def contains(self, value: float, eps: float = 1e-6) -> bool:
        return self.minimum - eps <= value <= self.maximum + eps


def decode_speed_range(data: bytes) -> Range:
    """Supported Speed Range: uint16 min, max, step in 0.01 km/h."""
    if len(data) < 6:
        raise FtmsError(f"speed range {data.hex()} is too short", "")
    lo, hi, step = struct.unpack_from("<HHH", data)
    if lo > hi:
        raise FtmsError(f"speed range {data.hex()} has its minimum above its maximum", "")
    return Range(lo / 100, hi / 100, step / 100)


def encode_speed_range(r: Range) -> bytes:
    return struct.pack("<HHH", round(r.minimum * 100), round(r.maximum * 100), round(r.step * 100))


def decode_incline_range(data: bytes) -> Range:
    """Supported Inclination Range: sint16 min, sint16 max, uint16 step in 0.1 %."""
    if len(data) < 6:
        raise FtmsError(f"incline range {data.hex()} is too short", "")
    lo, hi, step = struct.unpack_from("<hhH", data)
    if lo > hi:
        raise FtmsError(f"incline range {data.hex()} has its minimum above its maximum", "")
    return Range(lo / 10, hi / 10, step / 10)


def encode_incline_range(r: Range) -> bytes:
    return struct.pack("<hhH", round(r.minimum * 10), round(r.maximum * 10), round(r.step * 10))


MACHINE_FEATURES = ("average_speed", "cadence", "total_distance", "inclination",
                    "elevation_gain", "pace", "step_count", "resistance_level", "stride_count",
                    "expended_energy", "heart_rate", "metabolic_equivalent", "elapsed_time",
                    "remaining_time", "power_measurement", "force_on_belt_and_power_output",
                    "user_data_retention")
TARGET_FEATURES = ("speed_target", "inclination_target", "resistance_target", "power_target",
                   "heart_rate_target", "expended_energy_target", "step_number_target",
                   "stride_number_target", "distance_target", "training_time_target")


@dataclass(frozen=True)
class Features:
    """Fitness Machine Feature: what it measures and which targets it takes."""

    machine: frozenset[str]
    targets: frozenset[str]

    @property
    def speed_target(self) -> bool:
        return "speed_target" in self.targets

    @property
    def incline_target(self) -> bool:
        return "inclination_target" in self.targets


def _bits(value: int, names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(name for bit, name in enumerate(names) if value & (1 << bit))


def decode_features(data: bytes) -> Features:
    """Fitness Machine Feature: uint32 machine features, uint32 target setting features."""
    if len(data) < 8:
        raise FtmsError(f"machine features {data.hex()} are too short", "")
    machine, targets = struct.unpack_from("<II", data)
    return Features(_bits(machine, MACHINE_FEATURES), _bits(targets, TARGET_FEATURES))


def encode_features(f: Features) -> bytes:
    machine = sum(1 << i for i, n in enumerate(MACHINE_FEATURES) if n in f.machine)
    targets = sum(1 << i for i, n in enumerate(TARGET_FEATURES) if n in f.targets)
    return struct.pack("<II", machine, targets)
