"""Typed events at every boundary: what the coach heard, said and did, in workout time."""

from __future__ import annotations

import json
from collections.abc import Mapping
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


#: A DeviceProblem whose problem begins so is a fault inside voicecoach itself (a bug in the
#: workout or the listening, voicecoach/device/loop_faults.py), which ends the session: the
#: history reads such a session as ended by the device, not by the user (fault_device).
INTERNAL_FAULT = "internal fault"
#: The parts such a fault names as its device: the workout's ("coach") and the listening's, each
#: by the part that failed: the recogniser (its accept, reset and grammar), the loop's audio
#: clock, the duplex gate. Until session 25 the clock's and the gate's were recorded under the
#: recogniser, as older histories still hold them (read as the recogniser's).
COACH, RECOGNISER, AUDIO_CLOCK, DUPLEX_GATE = "coach", "recogniser", "audio clock", "duplex gate"
FAULT_DEVICES = (COACH, RECOGNISER, AUDIO_CLOCK, DUPLEX_GATE)


def internal_fault(t: float, state: str, device: str, where: str, what: str,
                   at: str) -> DeviceProblem:
    """The record of a fault inside voicecoach (``where``: what the loop was doing; ``what``:
    the exception, ``at``: where it was raised) in the part ``device`` names."""
    return DeviceProblem(t=t, state=state, device=device,
                         problem=f"{INTERNAL_FAULT} {where}: {what}", extra={"at": at})


def fault_device(event: Mapping[str, Any]) -> str:
    """The device (one of FAULT_DEVICES) of a logged event (``Event.to_dict()`` form) that
    records a fault inside voicecoach (:func:`internal_fault`); '' for any other event."""
    device, problem = event.get("device"), event.get("problem")
    if (event.get("type") != EventType.DEVICE_PROBLEM.value or device not in FAULT_DEVICES
            or not isinstance(problem, str) or not problem.startswith(INTERNAL_FAULT)):
        return ""
    return str(device)


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
