"""One clock drives the workout: wall time on the device, simulated or audio time elsewhere."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the session began, as the workout should count them."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


class SimClock:
    """A clock that only moves when told to: tests, the demo and audio replay (audio time)."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._t += seconds
        return self._t

    def set(self, t: float) -> None:
        """Jump to ``t`` seconds; ``t`` must not be earlier than now."""
        if t < self._t:
            raise ValueError("a clock cannot go backwards")
        self._t = t


class RealClock:
    """Wall time (monotonic) since creation, optionally run faster by ``speed_up``."""

    def __init__(self, speed_up: float = 1.0) -> None:
        if speed_up <= 0:
            raise ValueError("speed_up must be positive")
        self._start = time.monotonic()
        self.speed_up = speed_up

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.speed_up
