"""What the treadmill tells the belt controller: readings, the console, the safety key and
the link going up or down (a part of :class:`~voicecoach.device.belt.BeltController`; the
answers to its writes are belt_answers.py's)."""

from __future__ import annotations

import logging
import math

from voicecoach import events as ev
from voicecoach.device.belt_state import SPEED_TOLERANCE_KMH, BeltState
from voicecoach.events import Priority
from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms import KMH_PER_MPH
from voicecoach.treadmill.ftms_data import StatusOp
from voicecoach.treadmill.link import (
    BeltReading,
    LinkDown,
    LinkUp,
    StatusReport,
    TreadmillInfo,
    Update,
    WriteDone,
)
from voicecoach.workout.machine import ACTIVE, AT_REST, State

_LOGGER = logging.getLogger(__name__)

#: Readings outside these, or jumping faster than a belt can, are nonsense and ignored.
MAX_PLAUSIBLE_KMH = 30.0
INCLINE_PLAUSIBLE = (-20.0, 40.0)
MAX_ACCEL_KMH_S = 4.0
#: A BeltReported event at least every this many metres of belt (for the history's distance).
REPORT_DISTANCE_M = 50.0


class BeltReports(BeltState):
    """The treadmill's side of the belt controller: every update the link delivers."""

    def handle(self, update: Update) -> None:
        if isinstance(update, BeltReading):
            self._reading(update)
        elif isinstance(update, StatusReport):
            self._status(update.status)
        elif isinstance(update, WriteDone):
            self._write_done(update)
        elif isinstance(update, LinkUp):
            self._link_up(update.info)
        elif isinstance(update, LinkDown):
            self._link_down(update.reason)

    def _reading(self, reading: BeltReading) -> None:
        data = reading.data
        if data.speed_kmh is not None:
            speed = data.speed_kmh
            dt = max(reading.t - self.belt_t, 0.1)
            jump = self.belt_kmh is not None and abs(speed - self.belt_kmh) > MAX_ACCEL_KMH_S * dt + 1.0
            if not math.isfinite(speed) or speed < 0 or speed > MAX_PLAUSIBLE_KMH or jump:
                if "nonsense" not in self._said:
                    self._said.add("nonsense")
                    _LOGGER.warning("treadmill: implausible belt speed %.2f km/h ignored", speed)
                    self._problem("implausible reading ignored", speed_kmh=speed)
                return
            self.belt_kmh, self.belt_t = speed, reading.t
            if self._check_speed:
                self._speed_after_link()
            if self.halt_pending and self._belt_moving() and "stop_unconfirmed_still" in self._said:
                # said to be still while its stop or pause is not confirmed, the belt moves
                # (started with nothing reported): now it may be moving, and how to halt it
                _LOGGER.warning("treadmill: the belt moves (%.2f km/h) while the %s is not "
                                "confirmed", speed, self.halt_command.describe())
                self._say_once("stop_unconfirmed", self.words.STOP_UNCONFIRMED)
        if data.incline_pct is not None:
            lo, hi = INCLINE_PLAUSIBLE
            if lo <= data.incline_pct <= hi:
                self.belt_incline = data.incline_pct
        if data.distance_m is not None and data.distance_m >= 0:
            self.distance_m = data.distance_m
        self._report()

    def _report(self, force: bool = False) -> None:
        """A BeltReported event when the shown speed or incline changed, the distance grew by
        REPORT_DISTANCE_M, or (``force``) the session is ending."""
        if self.belt_kmh is None:
            return
        mph = round(self.belt_kmh / KMH_PER_MPH, 1)
        incline = None if self.belt_incline is None else round(self.belt_incline, 1)
        far = self.distance_m is not None and (
            self.reported_m is None or self.distance_m - self.reported_m >= REPORT_DISTANCE_M)
        if force or far or self.shown != (mph, incline):
            self.shown = (mph, incline)
            self.reported_m = self.distance_m
            self.coach.emit(ev.BeltReported(t=self.coach.now, state=self.coach.state.value,
                                            speed_mph=mph, incline_pct=incline,
                                            distance_m=self.distance_m))

    def _from_console(self, command: str) -> None:
        self._console = True
        try:
            self.coach.command(command, source="treadmill")
        finally:
            self._console = False

    def _status(self, status: ftms_data.Status) -> None:
        coach = self.coach
        op = status.op
        running = coach.state in ACTIVE or coach.state is State.PAUSED
        if op in (StatusOp.STOPPED_BY_SAFETY_KEY, StatusOp.STOPPED_OR_PAUSED_BY_USER,
                  StatusOp.STARTED_OR_RESUMED_BY_USER) \
                and self.halt_pending and self.halt_command == ftms.pause():
            # the console took over (halted the belt, or started it: the user wants it to run)
            _LOGGER.info("treadmill: the belt was %s on the console; the pause is no longer "
                         "written", "started" if op == StatusOp.STARTED_OR_RESUMED_BY_USER
                         else "halted")
            self._end_pending_pause()
        if op == StatusOp.STOPPED_BY_SAFETY_KEY:
            if running:
                coach.say(coach.words.SAFETY_KEY, "warning", Priority.URGENT, remember=False)
                self._from_console("stop")
        elif op == StatusOp.STOPPED_OR_PAUSED_BY_USER:
            if status.value == ftms.PAUSE and coach.state in ACTIVE:
                coach.say(coach.words.CONSOLE_PAUSED, "warning", Priority.URGENT, remember=False)
                self._from_console("pause")
            elif status.value != ftms.PAUSE and running:
                coach.say(coach.words.CONSOLE_HALTED, "warning", Priority.URGENT, remember=False)
                self._from_console("stop")
        elif op == StatusOp.STARTED_OR_RESUMED_BY_USER:
            self.halt_pending = False  # the console wins: the user started it there
            # a stop or pause on its way was written before this start: its answer says
            # nothing of a stop said from now on, which is written (not waited for) and held
            # until its own answer (before, the old answer confirmed it: a missed stop)
            self._stale_halts, self._stop_in_flight = self._halts_out, False
            # a start waiting for that stop ("ready" said meanwhile) is done: the user started
            # the belt themselves (not started again later, after a reconnect, by surprise)
            self.start_pending = False
            if coach.state is State.PAUSED:
                coach.say(coach.words.CONSOLE_RESUMED, "answer", Priority.ANSWER, remember=False)
                self._from_console("resume")
            if coach.state in ACTIVE and not self.started:
                self.started = True  # started on the console: the user is on the belt
            self.sent_kmh = self.want_kmh  # nothing is written until the coach asks again
        elif op == StatusOp.TARGET_SPEED_CHANGED and status.value is not None:
            raw = float(status.value)
            ours = [v for v in (self.sent_kmh, self.step.value if self.step else None)
                    if v is not None]
            if any(abs(self._from_raw(raw) - v) <= 0.02 or abs(raw - v) <= 0.02 for v in ours):
                return  # the echo of our own write
            self._console_speed(raw)
        elif op == StatusOp.TARGET_INCLINE_CHANGED and status.value is not None:
            pct = float(status.value)
            if self.sent_incline is not None and abs(pct - self.sent_incline) <= 0.05:
                return
            self.sent_incline = self.want_incline = self.confirmed_incline = pct
            self.incline_step = None
            if coach.state in ACTIVE or coach.state is State.PAUSED:
                coach.console_target(incline_pct=pct)
        elif op == StatusOp.CONTROL_PERMISSION_LOST:
            _LOGGER.warning("treadmill: control permission lost; it is asked for again")

    def _console_speed(self, kmh: float) -> None:
        coach = self.coach
        if coach.awaiting_turn:
            # set while a turn waits: the user's speed for the turn, never written over by the
            # turn's slow-down (BeltController._pump), and the target they climb to after it
            _LOGGER.info("treadmill: %.2f km/h set on the console during the turn; the turn's "
                         "slow-down is not written over it", kmh)
            self._turn_console = True
        self.sent_kmh = self.want_kmh = self.confirmed_kmh = kmh
        self.step = None
        if not (coach.state in ACTIVE or coach.state is State.PAUSED) or self.winding_down:
            return
        mph = kmh / KMH_PER_MPH
        coach.console_target(speed_mph=mph)
        if mph > self._top_mph() + 0.05:
            words = coach.words
            coach.say(words.CONSOLE_ABOVE_PLAN.format(speed=words.speed_text(mph, coach.units),
                                                      top=words.speed_text(self._top_mph(),
                                                                           coach.units)),
                      "warning", Priority.ANSWER, remember=False)

    def _link_up(self, info: TreadmillInfo) -> None:
        again = self.info is not None
        self.info, self.link_up = info, True
        # a new link: the last one's writes are all answered by now (lost, not connected)
        # or never will be; none is counted against this one's
        self._halts_out = self._stale_halts = 0
        _LOGGER.info("treadmill: connected to %s (%s)", info.name, info.address)
        if again and "link_lost" in self._said and self.coach.state not in AT_REST:
            self.coach.say(self.words.LINK_BACK, "answer", Priority.ANSWER, remember=False)
        # Nothing is re-sent: what the coach asked for before is taken as written. A stop (or
        # pause) the link missed is the one exception (the belt must not keep running).
        self.sent_kmh, self.step = self.want_kmh, None
        self.sent_incline, self.incline_step = self.want_incline, None
        # what the treadmill's targets are now is not known: the belt's readings say
        self.confirmed_kmh = self.confirmed_incline = None
        self._check_speed = True
        if self.halt_pending:
            self._hold(self.halt_command)
        elif self.start_pending and self.coach.state in ACTIVE:
            self._start_belt()

    def _speed_after_link(self) -> None:
        """The belt's first speed reading after the link came back. A speed the coach asked
        for that never reached the belt (its write was lost with the link) is not written late;
        the coach's target becomes the belt's real speed instead, so the next "faster" climbs
        one step from where the belt is, never several at once (it was taken as written: three
        "faster"s, one lost, went 1.0 -> 1.3 mph in one write)."""
        self._check_speed = False
        coach, belt, want = self.coach, self.belt_kmh, self.want_kmh
        if belt is None or want is None or belt <= 0.05 or not self.started \
                or self.winding_down or self.halt_pending or coach.state not in ACTIVE \
                or abs(belt - want) <= SPEED_TOLERANCE_KMH:
            return
        _LOGGER.warning("treadmill: the belt is at %.2f km/h, not the %.2f km/h asked for before "
                        "the link was lost; that is the target now", belt, want)
        self.sent_kmh = self.want_kmh = self.confirmed_kmh = belt
        mph = self._coach_mph(belt)  # 1.0 mph for a belt at 1.6 km/h, not 0.99
        coach.console_target(speed_mph=mph, why="link")
        coach.say(self.words.LINK_BACK_AT.format(speed=self.words.speed_text(mph, coach.units)),
                  "answer", Priority.ANSWER, remember=False)

    def _link_down(self, reason: str) -> None:
        if not self.link_up:
            if reason != self._down_reason:  # not connected yet: one line per new reason
                self._down_reason = reason
                _LOGGER.warning("treadmill: not connected: %s", reason)
                self._problem("not connected", reason=reason)
            return
        self.link_up = False
        self.step = self.incline_step = None
        self._stop_in_flight = False  # a stop on its way is lost with the link: written again
        _LOGGER.warning("treadmill: link lost (%s); retrying in the background", reason)
        self._problem("link lost", reason=reason)
        if self.halt_pending:
            # a stop not confirmed (its write timed out, or the link went with it): whatever
            # the coach's state (a stop has usually ended the session), the user hears that
            # the belt may still run and how to halt it; it is written again when the link is
            # back (_link_up). Said once per stop (_stop_done forgets it).
            _LOGGER.warning("treadmill: the %s is not confirmed; the belt may still be moving",
                            self.halt_command.describe())
            self._say_once("stop_unconfirmed", self.words.STOP_UNCONFIRMED)
        elif self.coach.state in ACTIVE or self.coach.state is State.PAUSED:
            self._say_once("link_lost", self.words.LINK_LOST)
