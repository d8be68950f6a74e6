"""The belt controller's state and the helpers every part of it uses: what it says, the
treadmill's ranges, the speed to write for a target, and the one place a command is written
(parts: belt.py, belt_halt.py, belt_steps.py, belt_reports.py, belt_answers.py)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicecoach import events as ev
from voicecoach.events import Priority
from voicecoach.settings import TreadmillSettings
from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms import KMH_PER_MPH
from voicecoach.treadmill.link import (
    DEFAULT_INCLINE_RANGE,
    DEFAULT_SPEED_RANGE,
    Treadmill,
    TreadmillInfo,
)
from voicecoach.workout.coach import Coach

if TYPE_CHECKING:
    from voicecoach.treadmill.link import WriteDone

_LOGGER = logging.getLogger(__name__)

#: A reported speed within this of the written one counts as reached (km/h).
SPEED_TOLERANCE_KMH = 0.12
#: A still belt (the start, after a pause) starts at this (mph; COACHING.md's very slow start,
#: 0.8 km/h, or the treadmill's slowest) and climbs to the target one step at a time.
RESTART_MPH = 0.5


@dataclass
class _Step:
    """A write in flight: what the belt should show, since when."""

    value: float
    since: float


class BeltState:
    """What the belt controller knows and the helpers its parts share; each part is a mixin
    of :class:`~voicecoach.device.belt.BeltController` on top of this."""

    def __init__(self, coach: Coach, treadmill: Treadmill, settings: TreadmillSettings) -> None:
        self.coach = coach
        #: What the belt controller says, in the coach's language.
        self.words = coach.words
        self.treadmill = treadmill
        self.settings = settings
        self.drive = settings.control == "drive"
        self.info: TreadmillInfo | None = None
        self.link_up = False
        self.belt_kmh: float | None = None
        self.belt_t = 0.0
        self.belt_incline: float | None = None
        self.distance_m: float | None = None
        self.shown: tuple[float, float | None] | None = None
        self.reported_m: float | None = None
        self._down_reason = ""
        self._said: set[str] = set()
        self._console = False  # True while the console's own action is passed to the coach
        #: A stop (or pause) the treadmill has not confirmed yet: it is written (again) whenever
        #: the link can take it, and nothing else is written until it is confirmed. A stop
        #: outlives the session it was said in (a new "start" waits for it).
        self.halt_pending = False
        #: What is pending: ftms.stop(), or ftms.pause() (dropped by "resume", overtaken by a
        #: stop, ended by the console's own pause, stop or start)
        self.halt_command = ftms.stop()
        self._stop_in_flight = False
        self._stop_retry_at = -math.inf
        #: Stop and pause writes not answered yet on this link, and how many of the first of
        #: them were written before the belt was started on the console: their answers (FTMS
        #: answers come in write order: the link writes one at a time) are stale, never taken
        #: as a later stop's or pause's (BeltAnswers._write_done). Both 0 on a new link.
        self._halts_out = 0
        self._stale_halts = 0
        #: The link is back: the belt's next speed reading says whether what the coach asked
        #: before reached it (_speed_after_link).
        self._check_speed = False
        #: Writes that failed with the link up, settled once the poll's updates are all in
        #: (a failure the link is lost with is the lost link's to answer: _settle_not_taken)
        self._failed_writes: list[tuple[ftms.Command, str]] = []
        #: The turn's slow-down was not taken: written again from then (_turn_not_slowed)
        self._slow_retry_at = -math.inf
        #: A speed was set on the console while this turn waits: it is the user's, and the
        #: turn's slow-down is not written over it (nor retried)
        self._turn_console = False
        #: The turn's slow-down retries so far, and whether they are given up (_turn_not_slowed)
        self._slow_retries = 0
        self._slow_given_up = False
        self._reset_session()

    def _reset_session(self) -> None:
        self.briefed = False
        self.started = False
        self.want_kmh: float | None = None
        self.sent_kmh: float | None = None
        self.step: _Step | None = None
        self.want_incline: float | None = None
        self.sent_incline: float | None = None
        self.incline_step: _Step | None = None
        #: The speed (km/h) and incline the treadmill last took (a write it answered with
        #: success, the console's, the belt's own after a reconnect): where the coach's target
        #: goes back to when a write fails with the link up (BeltAnswers._not_taken).
        self.confirmed_kmh: float | None = None
        self.confirmed_incline: float | None = None
        self.winding_down = False
        self.start_pending = False
        self.speed_control = True
        self._said = set()
        self._new_turn()

    def _new_turn(self) -> None:
        """A phase starts (a turn may wait for "ready"): its slow-down is the coach's to write,
        its failure said and retried afresh."""
        self._said -= {"turn_not_slowed", "turn_slow_given_up"}
        self._turn_console = self._slow_given_up = False
        self._slow_retries = 0
        self._slow_retry_at = -math.inf

    # ------------------------------------------------------------------ helpers
    def _say_once(self, key: str, text: str, priority: Priority = Priority.URGENT) -> None:
        if key not in self._said:
            self._said.add(key)
            self.coach.say(text, "warning", priority, remember=False)

    def _problem(self, problem: str, **extra: object) -> None:
        self.coach.emit(ev.DeviceProblem(t=self.coach.now, state=self.coach.state.value,
                                         device="treadmill", problem=problem, extra=dict(extra)))

    @property
    def speed_range(self) -> ftms_data.Range:
        return self.info.speed_range if self.info else DEFAULT_SPEED_RANGE

    @property
    def incline_range(self) -> ftms_data.Range:
        return self.info.incline_range if self.info else DEFAULT_INCLINE_RANGE

    def _to_raw(self, kmh: float) -> float:
        """The target speed parameter for ``kmh``: km/h, or mph for pads that read it so."""
        return kmh / KMH_PER_MPH if self.settings.target_units == "mph" else kmh

    def _from_raw(self, raw: float) -> float:
        return raw * KMH_PER_MPH if self.settings.target_units == "mph" else raw

    def _top_mph(self) -> float:
        phase = self.coach.phase
        top = min(self.settings.top_speed_mph, self.coach.settings.top_speed_mph)
        return min(top, phase.max_speed_mph) if phase else top

    def clamp_kmh(self, mph: float) -> float | None:
        """The speed to write for a target of ``mph``: never above the phase's top or either top
        speed, inside the treadmill's range; None if no speed satisfies all of them. (Below the
        phase's window is allowed: a pain report slows the belt under it.)"""
        mph = min(max(mph, 0.0), self._top_mph())
        kmh = mph * KMH_PER_MPH
        r = self.speed_range
        if kmh < r.minimum - 1e-6:
            if r.minimum / KMH_PER_MPH > self._top_mph() + 1e-6:
                return None
            self._say_once("below_range", self.words.BELOW_RANGE, Priority.ANSWER)
            kmh = r.minimum
        kmh = min(kmh, r.maximum)
        if r.step > 0:
            kmh = round(round(kmh / r.step) * r.step, 2)
            if kmh / KMH_PER_MPH > self._top_mph() + 1e-6:  # rounding must not cross the top
                kmh = round(math.floor(self._top_mph() * KMH_PER_MPH / r.step) * r.step, 2)
        return round(kmh, 2)

    def _on_grid(self, kmh: float) -> float:
        step = self.speed_range.step
        return round(round(kmh / step) * step, 2) if step > 0 else round(kmh, 2)

    def _coach_mph(self, kmh: float) -> float:
        """``kmh`` (a speed written, on the treadmill's grid) as the coach's target: the mph on
        the coach's step (0.1 mph) that is written as ``kmh``, so a target put back reads as
        the one asked for (1.0 mph, not 0.99 for 1.6 km/h); else ``kmh`` in mph."""
        step = self.coach.settings.speed_step_mph
        mph = kmh / KMH_PER_MPH
        if step > 0:
            on_step = round(round(mph / step) * step, 2)
            if abs(self._on_grid(on_step * KMH_PER_MPH) - kmh) <= 0.011:
                return on_step
        return mph

    def _belt_moving(self) -> bool:
        return self.belt_kmh is not None and self.belt_kmh > 0.05

    @property
    def still(self) -> bool:
        """The belt is not moving as far as the controller knows, nor about to: its last
        reported speed is nil (a belt last seen moving before its link went is not still), no
        stop or pause waits for the treadmill's confirmation, it is not being wound down and
        no start waits for the link."""
        return not (self._belt_moving() or self.halt_pending or self.winding_down
                    or self.start_pending)

    def _slow_kmh(self) -> float:
        """COACHING.md's very slow belt (0.5 mph, or the treadmill's slowest), on its grid: what
        a still belt starts at, and what a turn is made over."""
        return self._on_grid(max(RESTART_MPH * KMH_PER_MPH, self.speed_range.minimum))

    def _write(self, command: ftms.Command) -> None:
        if not self.drive:
            return
        if self.halt_pending and command not in (ftms.stop(), self.halt_command):
            _LOGGER.info("treadmill: %s not written: a %s is not confirmed yet",
                         command.describe(), self.halt_command.describe())
            return
        if command.op is ftms.Op.STOP_PAUSE:
            self._halts_out += 1
        self.treadmill.send(command, self.coach.now)

    if TYPE_CHECKING:  # the parts' own, called across them
        def _start_belt(self) -> None: ...  # belt.py
        def _hold(self, command: ftms.Command) -> None: ...  # belt_halt.py
        def _end_pending_pause(self) -> None: ...
        def _stop_done(self, command: ftms.Command, ok: bool, lost: bool = False) -> None: ...
        def _write_done(self, done: WriteDone) -> None: ...  # belt_answers.py
