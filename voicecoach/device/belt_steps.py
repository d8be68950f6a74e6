"""The belt's speed and incline written one step at a time: down at once, up a step at a time
once the belt shows the last, very slow while a turn waits (a part of
:class:`~voicecoach.device.belt.BeltController`)."""

from __future__ import annotations

import logging

from voicecoach.device.belt_state import SPEED_TOLERANCE_KMH, BeltState, _Step
from voicecoach.treadmill import ftms
from voicecoach.treadmill.ftms import KMH_PER_MPH
from voicecoach.workout.machine import ACTIVE

_LOGGER = logging.getLogger(__name__)

#: Seconds a step may take to show in the reported speed before the next one is allowed.
STEP_TIMEOUT_S = 10.0
#: Incline reached within this (percent).
INCLINE_TOLERANCE_PCT = 0.25


class BeltSteps(BeltState):
    """The next speed and incline to write, and when."""

    def _pump(self) -> None:
        if not (self.drive and self.link_up and self.started and self.coach.state in ACTIVE):
            return
        now = self.coach.now
        # the coach asks for "side rails, slow belt" and waits for "ready": the belt is brought
        # down to very slow for the turn (at once; again while it is not taken), and climbs to
        # the phase's speed one step at a time after "ready", as at the start. A speed set on
        # the console meanwhile is the user's: the turn's slow-down is not written over it
        turn_slow = self.coach.awaiting_turn and not self._turn_console
        # the turn's slow-down not taken is written again later, a few times, then given up
        # (_turn_not_slowed): nothing more is written this turn unless the user asks
        retry_wait = turn_slow and (now < self._slow_retry_at or self._slow_given_up)
        if self.speed_control and self.want_kmh is not None and self._step_done(now) \
                and not retry_wait:
            goal = self.want_kmh
            if turn_slow:
                goal = min(goal, self._slow_kmh())
            nxt = self._next_speed(goal)
            if nxt is not None:
                self.sent_kmh = nxt
                self.step = _Step(nxt, now)
                self._write(ftms.target_speed(self._to_raw(nxt)))
        if self.want_incline is not None and self._incline_done(now) \
                and self.incline_range.maximum > self.incline_range.minimum:
            if self.sent_incline is None or abs(self.want_incline - self.sent_incline) > 1e-6:
                if self.sent_incline is None and abs(self.want_incline - (self.belt_incline or 0)) < 1e-6:
                    self.sent_incline = self.want_incline  # already there: nothing to write
                    return
                nxt = self._next_incline(self.want_incline)
                self.sent_incline = nxt
                self.incline_step = _Step(nxt, now)
                self._write(ftms.target_incline(nxt))

    def _next_incline(self, goal: float) -> float:
        """The next incline on the way to ``goal``: down at once, up one step (the coach's
        incline step, 1 %) at a time, the next once the belt shows the last (COACHING.md)."""
        base = self.sent_incline if self.sent_incline is not None else (self.belt_incline or 0.0)
        if goal <= base + 1e-6:
            return goal
        return self.incline_range.clamp(min(goal, base + self.coach.settings.incline_step_pct))

    def _next_speed(self, goal: float) -> float | None:
        """The next speed to write on the way to ``goal`` (None: nothing to write now). Down
        goes at once; up goes one step at a time, and not while a turn waits for "ready"."""
        if self.sent_kmh is not None and abs(goal - self.sent_kmh) < 1e-6:
            return None
        base = self.sent_kmh if self.sent_kmh is not None else self.belt_kmh
        if base is None or base <= 0.05 or goal <= base + 1e-6:
            return goal
        if self.coach.awaiting_turn:
            return None
        return min(goal, self._on_grid(base + self.settings.speed_step_mph * KMH_PER_MPH))

    def _step_done(self, now: float) -> bool:
        step = self.step
        if step is None:
            return True
        if self.belt_kmh is not None and abs(self.belt_kmh - step.value) <= SPEED_TOLERANCE_KMH:
            self.step = None
            return True
        if now - step.since >= STEP_TIMEOUT_S:
            _LOGGER.warning("treadmill: belt at %s km/h, %g s after %s km/h was written",
                            self.belt_kmh, STEP_TIMEOUT_S, step.value)
            self._problem("step timed out", written_kmh=step.value, belt_kmh=self.belt_kmh)
            self.step = None
            return True
        return False

    def _incline_done(self, now: float) -> bool:
        step = self.incline_step
        if step is None:
            return True
        if (self.belt_incline is not None
                and abs(self.belt_incline - step.value) <= INCLINE_TOLERANCE_PCT) \
                or now - step.since >= STEP_TIMEOUT_S:
            self.incline_step = None
            return True
        return False
