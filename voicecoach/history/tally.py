"""Running totals of a session (backward time, speeds) computed from its events alone."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from voicecoach.events import fault_device

_NOT_WALKING = {"pause", "paused", "stop", "stopped", "stopping", "end", "ended", "finished",
                "done", "idle", "safety", "briefing"}


def _paused(state: str) -> bool:
    """Whether a machine state means the user is not walking (pause, stop, end)."""
    words = set(re.split(r"[^a-z]+", state.lower()))
    return bool(words & _NOT_WALKING)


@dataclass
class Tally:
    """Feed it event dicts in order (``Event.to_dict()`` or rows read back from the log).

    Backward time counts while the current phase is a backward phase, the state is not a
    paused one and the coach is not waiting for "ready" after a turn (a phase started with
    ``awaits_turn`` counts from its ``walker_ready``, as the coach's own clock does); it is
    counted up to the last event seen, which is why the recorder writes every event at once.
    """

    phase_kind: str = ""
    state: str = ""
    speed_mph: float | None = None
    incline_pct: float = 0.0
    last_t: float = 0.0
    backward_s: float = 0.0
    speed_time: float = 0.0
    min_speed_mph: float | None = None
    max_speed_mph: float | None = None
    max_incline_pct: float = 0.0
    pain_reports: int = 0
    ended: str = ""
    belt_mph: float | None = None
    belt_incline: float | None = None
    belt_backward_s: float = 0.0
    belt_speed_time: float = 0.0
    belt_incline_time: float = 0.0
    belt_max_mph: float | None = None
    first_distance_m: float | None = None
    last_distance_m: float | None = None
    awaiting_turn: bool = False
    #: The part whose internal fault was recorded (events.FAULT_DEVICES: events.fault_device).
    fault: str = ""
    #: The phase kind the session was in when that fault was recorded (the last phase begun).
    fault_phase: str = ""

    @property
    def walking_backward(self) -> bool:
        return (self.phase_kind == "backward" and not _paused(self.state) and not self.ended
                and not self.awaiting_turn)

    @property
    def mean_backward_speed_mph(self) -> float | None:
        """Time-weighted mean belt target while walking backward."""
        if self.backward_s <= 0:
            return None
        return self.speed_time / self.backward_s

    @property
    def belt_speed_mph(self) -> float | None:
        """Time-weighted mean of the belt speed the treadmill reported while walking backward."""
        if self.belt_backward_s <= 0:
            return None
        return self.belt_speed_time / self.belt_backward_s

    @property
    def belt_incline_pct(self) -> float | None:
        if self.belt_backward_s <= 0 or self.belt_incline is None:
            return None
        return self.belt_incline_time / self.belt_backward_s

    @property
    def belt_distance_m(self) -> float | None:
        """Distance the belt reported over the session (its counter's rise)."""
        if self.first_distance_m is None or self.last_distance_m is None:
            return None
        return max(0.0, self.last_distance_m - self.first_distance_m)

    def advance(self, t: float) -> None:
        """Count the time from the last event up to ``t``."""
        dt = t - self.last_t
        if dt > 0:
            if self.walking_backward:
                self.backward_s += dt
                if self.speed_mph is not None:
                    self.speed_time += dt * self.speed_mph
                if self.belt_mph is not None:
                    self.belt_backward_s += dt
                    self.belt_speed_time += dt * self.belt_mph
                    self.belt_incline_time += dt * (self.belt_incline or 0.0)
            self.last_t = t

    def _note_speed(self) -> None:
        if self.speed_mph is None or self.phase_kind != "backward":
            return
        speed = self.speed_mph
        self.min_speed_mph = speed if self.min_speed_mph is None else min(self.min_speed_mph, speed)
        self.max_speed_mph = speed if self.max_speed_mph is None else max(self.max_speed_mph, speed)

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event (as a dict with ``type``, ``t``, ``state`` and its fields)."""
        self.advance(float(event["t"]))
        kind = event["type"]
        self.state = str(event.get("state", self.state))
        if kind == "state_changed":
            self.state = str(event["dest"])
        elif kind == "phase_started":
            self.phase_kind = str(event["kind"])
            # the phase clock waits for "ready" (older logs have no such field: it runs)
            self.awaiting_turn = event.get("awaits_turn") is True
            self.speed_mph = float(event["speed_mph"])
            self.incline_pct = float(event["incline_pct"])
        elif kind == "target_changed":
            self.speed_mph = float(event["speed_mph"])
            self.incline_pct = float(event["incline_pct"])
        elif kind == "belt_reported":
            self.belt_mph = float(event["speed_mph"])
            if event.get("incline_pct") is not None:
                self.belt_incline = float(event["incline_pct"])
            if self.phase_kind == "backward" and not _paused(self.state):
                self.belt_max_mph = max(self.belt_max_mph or 0.0, self.belt_mph)
            distance = event.get("distance_m")
            if distance is not None:
                if self.first_distance_m is None or float(distance) < (self.last_distance_m or 0):
                    # first reading, or the console's counter was reset: count from here
                    base = (self.belt_distance_m or 0.0)
                    self.first_distance_m = float(distance) - base
                self.last_distance_m = float(distance)
        elif kind == "walker_ready":
            self.awaiting_turn = False
        elif kind == "pain_reported":
            self.pain_reports += 1
        elif kind == "session_ended":
            self.ended = str(event["outcome"])
        elif kind == "device_problem" and not self.fault:
            self.fault = fault_device(event)
            self.fault_phase = self.phase_kind if self.fault else ""
        self._note_speed()
        if self.phase_kind == "backward":
            self.max_incline_pct = max(self.max_incline_pct, self.incline_pct)

    @classmethod
    def of(cls, events: Iterable[Mapping[str, Any]]) -> Tally:
        """The tally of a whole list of events."""
        tally = cls()
        for event in events:
            tally.feed(event)
        return tally
