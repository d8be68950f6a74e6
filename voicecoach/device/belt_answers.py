"""The treadmill's answers to the belt controller's writes: taken, or not taken (the target
goes back; a turn's slow-down retried a few times) (a part of
:class:`~voicecoach.device.belt.BeltController`)."""

from __future__ import annotations

import logging

from voicecoach.device.belt_state import SPEED_TOLERANCE_KMH, BeltState
from voicecoach.events import Priority
from voicecoach.treadmill import ftms
from voicecoach.treadmill.ftms import Op, Result
from voicecoach.treadmill.link import WriteDone, says_not_connected
from voicecoach.workout.machine import ACTIVE, State

_LOGGER = logging.getLogger(__name__)

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


class BeltAnswers(BeltState):
    """What each write's answer (or failure) means for the coach's target."""

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

    def _settle_not_taken(self) -> None:
        """The writes that failed in the last poll, once all its updates are in: with the
        link still up, each is a write the treadmill did not take (:meth:`_not_taken`); with
        the link gone, the lost link answers them (BeltReports._speed_after_link when it is back)."""
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
