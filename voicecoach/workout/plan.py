"""Workout plans: the default 6-week programme and user plans read from TOML files."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voicecoach.errors import VoicecoachError
from voicecoach.settings import MPH_PER_KMH, CoachSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_LOGGER = logging.getLogger(__name__)

PHASE_KINDS = ("warmup", "backward", "recovery", "cooldown")
CUE_SETS = ("warmup", "technique", "cooldown", "none")
DEFAULT_CUES = {"warmup": "warmup", "backward": "technique", "recovery": "cooldown",
                "cooldown": "cooldown"}
UNITS = ("mph", "kmh")
#: No plan may ask for more than this, whatever the settings say (mph).
ABSOLUTE_MAX_MPH = 6.0


@dataclass(frozen=True)
class Phase:
    """One part of a session: its kind, length and the speed/incline window (mph, percent)."""

    kind: str
    duration_s: float
    speed_mph: float
    min_speed_mph: float
    max_speed_mph: float
    incline_pct: float = 0.0
    max_incline_pct: float = 0.0
    cues: str = "technique"


@dataclass(frozen=True)
class Plan:
    """A whole session: phases in order, plus where it came from."""

    name: str
    phases: tuple[Phase, ...]
    week: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def backward_s(self) -> float:
        """Planned seconds of backward walking."""
        return sum(p.duration_s for p in self.phases if p.kind == "backward")

    @property
    def total_s(self) -> float:
        """Planned length of the session in seconds."""
        return sum(p.duration_s for p in self.phases)


#: COACHING.md's default programme: week -> (backward minutes, speed range mph, incline range %).
PROGRAMME: dict[int, tuple[float, float, float, float, float]] = {
    1: (5, 0.5, 0.8, 0, 0),
    2: (7, 0.8, 1.0, 0, 0),
    3: (10, 1.0, 1.3, 0, 0),
    4: (12, 1.2, 1.5, 0, 1),
    5: (15, 1.3, 1.7, 1, 2),
    6: (15, 1.5, 2.0, 2, 2),
}
WARMUP = Phase("warmup", 180.0, 1.2, 1.0, 2.0, cues="warmup")
COOLDOWN = Phase("cooldown", 120.0, 1.2, 0.8, 1.8, cues="cooldown")
RECOVERY = Phase("recovery", 60.0, 1.2, 0.8, 1.8, cues="cooldown")


def _cap(phase: Phase, top: float) -> Phase:
    """Clamp a phase's speeds to the settings' top speed."""
    return replace(phase, speed_mph=min(phase.speed_mph, top),
                   min_speed_mph=min(phase.min_speed_mph, top),
                   max_speed_mph=min(phase.max_speed_mph, top))


def backward_blocks(minutes: float) -> list[float]:
    """Split backward minutes into blocks: one block up to 10 min, else two near-equal ones."""
    if minutes <= 10:
        return [minutes]
    first = round(minutes / 2)
    return [first, minutes - first]


def build_week_plan(week: int, backward_min: float, lo: float, hi: float, inc_lo: float,
                    inc_hi: float, settings: CoachSettings | None = None,
                    notes: tuple[str, ...] = ()) -> Plan:
    """A session: warm-up, backward block(s) with easy recovery between, cool-down."""
    settings = settings or CoachSettings()
    phases: list[Phase] = [WARMUP]
    for i, minutes in enumerate(backward_blocks(backward_min)):
        if i:
            phases.append(RECOVERY)
        phases.append(Phase("backward", minutes * 60.0, lo, lo, hi, inc_lo, inc_hi, "technique"))
    phases.append(COOLDOWN)
    top = settings.top_speed_mph
    return Plan(f"week {week}", tuple(_cap(p, top) for p in phases), week, notes)


def programme_week(week: int, settings: CoachSettings | None = None) -> Plan:
    """The default programme's session for ``week`` (1 to 6)."""
    if week not in PROGRAMME:
        raise VoicecoachError(f"--week {week} is not in the programme",
                              f"choose a week from 1 to {max(PROGRAMME)}")
    return build_week_plan(week, *PROGRAMME[week], settings=settings)


# ---------------------------------------------------------------- TOML plan files
_TOP_FIELDS = {"name", "units", "phase"}
_PHASE_FIELDS = {"kind", "minutes", "seconds", "speed", "min_speed", "max_speed", "incline",
                 "max_incline", "cues"}


class _PlanReader:
    """Validates one plan file, naming the file, the phase and the field in every error."""

    def __init__(self, path: Path, settings: CoachSettings) -> None:
        self.path = path
        self.settings = settings
        self.units = "mph"

    def fail(self, where: str, what: str, fix: str) -> VoicecoachError:
        return VoicecoachError(f"plan file {self.path}: {where}{what}", fix)

    def number(self, where: str, spec: dict[str, Any], key: str, default: float | None,
               lo: float, hi: float, unit: str) -> float:
        value = spec.get(key, default)
        if value is None:
            raise self.fail(where, f"field '{key}' is missing", f"add {key} = <number {unit}>")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"field '{key}' is {value!r}, not a number",
                            f"write a number from {lo:g} to {hi:g} {unit}")
        try:
            number = float(value)
        except OverflowError:  # a whole number too large for a float
            number = math.inf
        if not lo <= number <= hi:
            shown = f"{number:g}" if math.isfinite(number) else "far too large"
            raise self.fail(where, f"field '{key}' is {shown} {unit}",
                            f"allowed: {lo:g} to {hi:g} {unit}")
        return number

    def speed(self, where: str, spec: dict[str, Any], key: str, default: float | None) -> float:
        factor = 1.0 if self.units == "mph" else MPH_PER_KMH
        top = min(self.settings.top_speed_mph, ABSOLUTE_MAX_MPH) / factor
        hint_top = f"{top:.1f}"
        try:
            value = self.number(where, spec, key, default, 0.1, float(hint_top), self.units)
        except VoicecoachError as exc:
            if "allowed" in exc.hint:
                exc.hint += (" (the top speed is the settings' [coach] top_speed_mph, and with a "
                             "driven treadmill its [treadmill] top_speed_mph if lower)")
            raise
        return value * factor

    def phase(self, index: int, spec: object) -> Phase:
        where = f"phase {index}: "
        if not isinstance(spec, dict):
            raise self.fail(where, "is not a table", "write each phase as [[phase]] with fields")
        unknown = sorted(set(spec) - _PHASE_FIELDS)
        if unknown:
            raise self.fail(where, f"unknown field '{unknown[0]}'",
                            f"allowed fields: {', '.join(sorted(_PHASE_FIELDS))}")
        kind = spec.get("kind")
        if kind not in PHASE_KINDS:
            raise self.fail(where, f"field 'kind' is {kind!r}",
                            f"allowed values: {', '.join(PHASE_KINDS)}")
        if ("minutes" in spec) == ("seconds" in spec):
            raise self.fail(where, "give exactly one of 'minutes' or 'seconds'",
                            "e.g. minutes = 5")
        if "minutes" in spec:
            duration = 60 * self.number(where, spec, "minutes", None, 0.1, 120, "minutes")
        else:
            duration = self.number(where, spec, "seconds", None, 5, 7200, "seconds")
        raw_speed = spec.get("speed")
        speed = self.speed(where, spec, "speed", None)
        lo = self.speed(where, spec, "min_speed", raw_speed)
        hi = self.speed(where, spec, "max_speed", raw_speed)
        if not lo <= speed <= hi:
            raise self.fail(where, "'speed' is outside 'min_speed'..'max_speed'",
                            "make min_speed <= speed <= max_speed")
        max_inc = self.settings.max_incline_pct
        incline = self.number(where, spec, "incline", 0.0, 0, max_inc, "%")
        top_inc = self.number(where, spec, "max_incline", incline, incline, max_inc, "%")
        cues = spec.get("cues", DEFAULT_CUES[kind])
        if cues not in CUE_SETS:
            raise self.fail(where, f"field 'cues' is {cues!r}",
                            f"allowed values: {', '.join(CUE_SETS)}")
        return Phase(kind, duration, speed, lo, hi, incline, top_inc, cues)

    def read(self) -> Plan:
        try:
            if self.path.exists() and not self.path.is_file():
                # looked at (stat), never opened: reading a named pipe would wait for a writer
                kind = "a folder" if self.path.is_dir() else "a pipe or a device"
                raise VoicecoachError(f"plan file {self.path} is {kind}, not a file",
                                      "give the path of a plan file (.toml), e.g. my-plan.toml")
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VoicecoachError(f"plan file {self.path} does not exist",
                                  "check the path, or leave out --plan for the default programme"
                                  ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise VoicecoachError(f"plan file {self.path} cannot be read ({exc})",
                                  "check its permissions and that it is UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise VoicecoachError(f"plan file {self.path}: TOML syntax error: {exc}",
                                  "fix the syntax (see the example plan in README.md)") from None
        unknown = sorted(set(data) - _TOP_FIELDS)
        if unknown:
            raise self.fail("", f"unknown field '{unknown[0]}'",
                            f"allowed top-level fields: {', '.join(sorted(_TOP_FIELDS))}")
        units = data.get("units", "mph")
        if units not in UNITS:
            raise self.fail("", f"field 'units' is {units!r}", "allowed values: mph, kmh")
        self.units = units
        phases = data.get("phase")
        if phases is not None and not isinstance(phases, list):
            shown = repr(phases) if isinstance(phases, (str, int, float, bool)) else "a table"
            raise self.fail("", f"'phase' is {shown}, not a list of [[phase]] tables",
                            "write each phase as its own [[phase]] table with kind = ..., "
                            "e.g. [[phase]] then kind = \"warmup\" on the next line")
        if not phases or not all(isinstance(p, dict) for p in phases):
            raise self.fail("", "there are no phases" if not phases else
                            "'phase' holds values that are not [[phase]] tables",
                            "add at least one [[phase]] table")
        built = tuple(self.phase(i, spec) for i, spec in enumerate(phases, start=1))
        if not any(p.kind == "backward" for p in built):
            raise self.fail("", "no phase has kind = \"backward\"",
                            "add a backward phase: that is what the coach is for")
        return Plan(str(data.get("name", self.path.stem)), built)


def load_plan(path: Path, settings: CoachSettings | None = None) -> Plan:
    """Read and validate a TOML plan file; every problem is one clear VoicecoachError."""
    return _PlanReader(Path(path), settings or CoachSettings()).read()
