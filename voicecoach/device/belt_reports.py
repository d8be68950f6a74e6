"""What the treadmill tells the belt controller: readings, the console, the safety key, write
results and the link going up or down (a mixin of :class:`~voicecoach.device.belt.BeltController`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicecoach import events as ev
from voicecoach.events import Priority
from voicecoach.phrases import Phrases
from voicecoach.settings import TreadmillSettings
from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op, Result
from voicecoach.treadmill.ftms_data import StatusOp
from voicecoach.treadmill.link import (
    BeltReading,
    LinkDown,
    LinkUp,
    StatusReport,
    Treadmill,
    TreadmillInfo,
    Update,
    WriteDone,
    says_not_connected,
)
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import ACTIVE, AT_REST, State

_LOGGER = logging.getLogger(__name__)

#: Readings outside these, or jumping faster than a belt can, are nonsense and ignored.
MAX_PLAUSIBLE_KMH = 30.0
INCLINE_PLAUSIBLE = (-20.0, 40.0)
MAX_ACCEL_KMH_S = 4.0
#: A reported speed within this of the written one counts as reached (km/h).
SPEED_TOLERANCE_KMH = 0.12
#: A BeltReported event at least every this many metres of belt (for the history's distance).
REPORT_DISTANCE_M = 50.0
#: Write errors that are the lost link's (it answers them: said once, the belt's speed the
#: target when it is back), not a write the treadmill did not take with the link up.
LINK_ERRORS = ("timed out", "link lost")
#: The slow-down for a turn the treadmill did not take is written again after this long (the
#: first time; each wait after it twice the last) while the turn waits and the belt runs faster
SLOW_RETRY_S = 0.5
#: ... this many times (0.5, 1, 2, 4 s: the last about 7.5 s after the first failure, well
#: before the turn's first reminder); then said once that the coach has stopped asking, and
#: not written again this turn unless the user asks for a speed
SLOW_RETRIES = 4



@dataclass
class _Step:
    """A write in flight: what the belt should show, since when."""

    value: float
    since: float


class BeltReports:
    """The treadmill's side of the belt controller: every update the link delivers."""

    coach: Coach
    words: Phrases
    treadmill: Treadmill
    settings: TreadmillSettings
    drive: bool
    info: TreadmillInfo | None
    link_up: bool
    belt_kmh: float | None
    belt_t: float
    belt_incline: float | None
    distance_m: float | None
    shown: tuple[float, float | None] | None
    reported_m: float | None
    _down_reason: str
    _console: bool
    _said: set[str]
    briefed: bool
    started: bool
    want_kmh: float | None
    sent_kmh: float | None
    step: _Step | None
    want_incline: float | None
    sent_incline: float | None
    incline_step: _Step | None
    confirmed_kmh: float | None
    confirmed_incline: float | None
    _failed_writes: list[tuple[ftms.Command, str]]
    winding_down: bool
    halt_pending: bool
    halt_command: ftms.Command
    _stop_in_flight: bool
    _halts_out: int
    _stale_halts: int
    _check_speed: bool
    _slow_retry_at: float
    _turn_console: bool
    _slow_retries: int
    _slow_given_up: bool
    start_pending: bool
    speed_control: bool

    if TYPE_CHECKING:  # provided by BeltController
        def _say_once(self, key: str, text: str, priority: Priority = Priority.URGENT) -> None: ...
        def _problem(self, problem: str, **extra: object) -> None: ...
        def _from_raw(self, raw: float) -> float: ...
        def _top_mph(self) -> float: ...
        def halt(self) -> None: ...
        def _hold(self, command: ftms.Command) -> None: ...
        def _end_pending_pause(self) -> None: ...
        def _stop_done(self, command: ftms.Command, ok: bool, lost: bool = False) -> None: ...
        def _start_belt(self) -> None: ...
        def _on_grid(self, kmh: float) -> float: ...
        def _belt_moving(self) -> bool: ...
        def _slow_kmh(self) -> float: ...

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

    def _write_done(self, done: WriteDone) -> None:
        command = done.command
        if command.op is Op.STOP_PAUSE:
            self._halts_out = max(self._halts_out - 1, 0)
            if self._stale_halts > 0:  # written before the console's start: settles nothing
                self._stale_halts -= 1
                _LOGGER.info("treadmill: the answer to a %s written before the belt was "
                             "started on the console is not taken for a later one",
                             command.describe())
            else:
                lost = bool(done.error) and (done.error in LINK_ERRORS
                                             or says_not_connected(done.error))
                self._stop_done(command,
                                not done.error and (done.response is None or done.response.ok),
                                lost)
        if done.error:
            _LOGGER.warning("treadmill: %s failed: %s", command.describe(), done.error)
            self._problem(f"write {done.error}", command=command.describe())
            if done.error not in LINK_ERRORS and not says_not_connected(done.error):
                self._failed_writes.append((command, done.error))
            return
        response = done.response
        if response is None or response.ok:
            if response is not None:
                self._taken(command)
            return
        _LOGGER.warning("treadmill: %s: %s", command.describe(), response.text())
        self._problem(response.text(), command=command.describe(), result=response.result)
        active = self.coach.state in ACTIVE or self.coach.state is State.PAUSED
        if command.op is Op.SET_TARGET_SPEED and response.result == Result.NOT_SUPPORTED:
            self.speed_control = False
            self.step = None
            if active:
                self._say_once("no_speed", self.words.NO_SPEED_CONTROL, Priority.ANSWER)
            return
        if response.result == Result.NOT_PERMITTED and active:
            self._say_once("not_permitted", self.words.NOT_PERMITTED)
        # not permitted, invalid or failed: not taken (_not_taken); the next request may try
        # again. A refused control is no more taken than a failure: the target goes back too
        if command.op is Op.SET_TARGET_SPEED:
            self.step = None
        elif command.op is Op.SET_TARGET_INCLINE:
            self.incline_step = None
        self._failed_writes.append((command, response.text()))

    def _taken(self, command: ftms.Command) -> None:
        """The treadmill answered ``command`` with success: its target is the belt's now."""
        # a later write not taken (or slow-down for a turn) is said again
        self._said -= {"not_taken", "not_started", "turn_not_slowed"}
        if command.op is Op.SET_TARGET_SPEED and command.value is not None:
            self.confirmed_kmh = self._from_raw(float(command.value))
        elif command.op is Op.SET_TARGET_INCLINE and command.value is not None:
            self.confirmed_incline = float(command.value)

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

    def _settle_not_taken(self) -> None:
        """The writes that failed in the last poll, once all its updates are in: with the
        link still up, each is a write the treadmill did not take (:meth:`_not_taken`); with
        the link gone, the lost link answers them (:meth:`_speed_after_link` when it is back)."""
        failed, self._failed_writes = self._failed_writes, []
        if self.link_up:
            for command, why in failed:
                self._not_taken(command, why)

    def _not_taken(self, command: ftms.Command, why: str) -> None:
        """A speed, incline or start the treadmill did not take, the link up (a Bluetooth
        error, or a failure answered). It is not taken as written and not written again on
        its own (the user asked once; a retry later could surprise them): the coach's target
        goes back to where the belt is, the treadmill's last confirmed target (the belt's
        reading, on the treadmill's grid, when none is known since a reconnect), said once, so
        the next "faster" climbs one step from the belt's real speed. Before, the target
        stayed at what failed and the next "faster" wrote two steps at once (1.0 -> 1.2 mph)."""
        coach = self.coach
        if not (self.drive and self.started) or self.halt_pending or self.winding_down \
                or coach.state not in ACTIVE:
            return
        words = self.words
        # the treadmill refusing control is said already (_write_done), and says what to do
        # (use the console): no second line for the same refusal
        refused = "not_permitted" in self._said
        if command.op is Op.START_RESUME:
            # the belt did not start: nothing climbs on it (a start from the console is
            # followed: _status); not started again on its own
            self.step, self.sent_kmh = None, self.want_kmh
            _LOGGER.warning("treadmill: the belt did not start (%s); not tried again", why)
            if not refused:
                self._say_once("not_started", words.BELT_NOT_STARTED, Priority.ANSWER)
            return
        if command.op is Op.SET_TARGET_SPEED:
            if coach.awaiting_turn and not self._turn_console:
                # the belt slowed for a turn is not the coach's target (once the console has
                # set the turn's speed, a speed not taken is any other's: the target goes back)
                self._turn_not_slowed(command, why)
                return
            self.step = None
            real = self.confirmed_kmh
            if real is None and self._belt_moving() and self.belt_kmh is not None:
                real = self._on_grid(self.belt_kmh)
            if real is None:  # a still belt, nothing confirmed: no speed to go back to
                return
            self.want_kmh = self.sent_kmh = real
            _LOGGER.warning("treadmill: %s not taken (%s); the target is the belt's %.2f km/h "
                            "again, not written again", command.describe(), why, real)
            coach.console_target(speed_mph=self._coach_mph(real), why="not_taken")
        elif command.op is Op.SET_TARGET_INCLINE:
            self.incline_step = None
            pct = self.confirmed_incline if self.confirmed_incline is not None \
                else self.belt_incline
            if pct is None:
                return
            self.want_incline = self.sent_incline = pct
            _LOGGER.warning("treadmill: %s not taken (%s); the target is the belt's %g %% "
                            "again, not written again", command.describe(), why, pct)
            coach.console_target(incline_pct=pct, why="not_taken")
        else:
            return
        if "not_started" not in self._said and not refused:  # that line says enough
            self._say_once("not_taken", words.BELT_NOT_TAKEN, Priority.ANSWER)

    def _turn_not_slowed(self, command: ftms.Command, why: str) -> None:
        """The slow-down for a turn (the coach has said "side rails, slow belt") not taken,
        the link up, the belt still faster than very slow: the user may be about to turn
        around on a belt at walking speed. Said at once (slow it on the console, or hold the
        rails and wait), and written again :data:`SLOW_RETRY_S` later, each wait twice the
        last, up to :data:`SLOW_RETRIES` times while the turn waits (BeltController._pump):
        unlike a "faster", this change was announced and is expected, and it only ever lowers
        the belt (written from where the belt is, never above it). A treadmill that still
        refuses will not take it: the coach says once that it has stopped asking (slow it at
        the console before turning) and writes no more this turn, rather than hammer the link
        every 0.5 s for up to a minute. The coach's target stays the phase's: only the turn's
        slow belt failed."""
        belt = self.belt_kmh
        if not self._belt_moving() or belt is None \
                or belt <= self._slow_kmh() + SPEED_TOLERANCE_KMH:
            return  # already slow: nothing to warn of (a "slower" under it failed: logged)
        self.step = None
        self.sent_kmh = self._on_grid(belt)  # where the belt is: the retry writes down from it
        if self._slow_retries < SLOW_RETRIES:
            wait = SLOW_RETRY_S * 2 ** self._slow_retries
            self._slow_retries += 1
            self._slow_retry_at = self.coach.now + wait
            _LOGGER.warning("treadmill: %s for the turn not taken (%s); the belt is at %.2f "
                            "km/h; written again in %g s while the turn waits (%d of %d)",
                            command.describe(), why, belt, wait, self._slow_retries,
                            SLOW_RETRIES)
            self._say_once("turn_not_slowed", self.words.TURN_NOT_SLOWED)
            return
        self._slow_given_up = True
        _LOGGER.warning("treadmill: %s for the turn not taken (%s) after %d retries; the belt is "
                        "at %.2f km/h; not written again this turn", command.describe(), why,
                        SLOW_RETRIES, belt)
        if "turn_slow_given_up" not in self._said:
            self._problem("turn slow-down given up", belt_kmh=belt)
        self._say_once("turn_not_slowed", self.words.TURN_NOT_SLOWED)
        self._say_once("turn_slow_given_up", self.words.TURN_SLOW_GIVEN_UP)

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
