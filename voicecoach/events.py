"""Typed events at every boundary: what the coach heard, said and did, in workout time."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar


class EventType(str, Enum):
    """The kinds of event the coach emits (one JSON line each with ``--json-events``)."""

    STATE_CHANGED = "state_changed"
    PHASE_STARTED = "phase_started"
    CUE_SPOKEN = "cue_spoken"
    COMMAND_HEARD = "command_heard"
    COMMAND_REFUSED = "command_refused"
    TARGET_CHANGED = "target_changed"
    PAIN_REPORTED = "pain_reported"
    SESSION_ENDED = "session_ended"
    DEVICE_PROBLEM = "device_problem"
    VOLUME_CHANGED = "volume_changed"
    BELT_REPORTED = "belt_reported"
    WALKER_READY = "walker_ready"


class Priority(int, Enum):
    """How an utterance competes with others: urgent ones cut off what is being spoken."""

    CUE = 0
    ANNOUNCEMENT = 1
    ANSWER = 2
    URGENT = 3


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events: the workout time ``t`` in seconds and the machine ``state`` then."""

    type: ClassVar[EventType]
    t: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with ``type`` first, for JSON lines and the history log."""
        data: dict[str, Any] = {"type": self.type.value}
        data.update(asdict(self))
        data["t"] = round(self.t, 3)
        return data

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    """The state machine moved from ``source`` to ``dest`` because of ``trigger``."""

    type: ClassVar[EventType] = EventType.STATE_CHANGED
    source: str
    dest: str
    trigger: str


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    """A plan phase began: its index, kind, length and target speed range (mph)."""

    type: ClassVar[EventType] = EventType.PHASE_STARTED
    index: int
    kind: str
    duration_s: float
    speed_mph: float
    min_speed_mph: float
    max_speed_mph: float
    incline_pct: float
    #: Its clock waits for "ready" (a change of walking direction) before it runs.
    awaits_turn: bool = False


@dataclass(frozen=True, kw_only=True)
class CueSpoken(Event):
    """The coach says ``text``; ``kind`` is cue, announcement, prompt, answer or warning."""

    type: ClassVar[EventType] = EventType.CUE_SPOKEN
    text: str
    kind: str
    priority: Priority = Priority.CUE
    cue_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandHeard(Event):
    """A command reached the coach (spoken or typed) and was acted on."""

    type: ClassVar[EventType] = EventType.COMMAND_HEARD
    command: str
    phrase: str = ""
    confidence: float = 1.0
    source: str = "voice"


@dataclass(frozen=True, kw_only=True)
class CommandRefused(Event):
    """A command that makes no sense now, or would break a limit; ``reason`` is said aloud."""

    type: ClassVar[EventType] = EventType.COMMAND_REFUSED
    command: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class TargetChanged(Event):
    """The belt targets changed: speed in mph and incline in percent."""

    type: ClassVar[EventType] = EventType.TARGET_CHANGED
    speed_mph: float
    incline_pct: float
    why: str


@dataclass(frozen=True, kw_only=True)
class PainReported(Event):
    """The user reported pain (a pain phrase or 'sore' at a check-in)."""

    type: ClassVar[EventType] = EventType.PAIN_REPORTED
    phrase: str


@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    """The session ended: ``outcome`` is finished, stopped or interrupted."""

    type: ClassVar[EventType] = EventType.SESSION_ENDED
    outcome: str
    backward_s: float
    total_s: float
    min_speed_mph: float
    max_speed_mph: float
    summary: str


@dataclass(frozen=True, kw_only=True)
class DeviceProblem(Event):
    """An audio device or the speech engine failed or came back."""

    type: ClassVar[EventType] = EventType.DEVICE_PROBLEM
    device: str
    problem: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class VolumeChanged(Event):
    """The user asked for louder or quieter speech; ``volume`` is 0.0 to 1.0."""

    type: ClassVar[EventType] = EventType.VOLUME_CHANGED
    volume: float


@dataclass(frozen=True, kw_only=True)
class BeltReported(Event):
    """The treadmill reported its belt: speed in mph, incline in percent, distance in metres."""

    type: ClassVar[EventType] = EventType.BELT_REPORTED
    speed_mph: float
    incline_pct: float | None = None
    distance_m: float | None = None


@dataclass(frozen=True, kw_only=True)
class WalkerReady(Event):
    """A "say ready" prompt was answered (``said``) or its clock started anyway (not said)."""

    type: ClassVar[EventType] = EventType.WALKER_READY
    said: bool
