"""Halting the belt: a stop or pause written at once and held until the treadmill confirms
it, written again while it does not (a part of :class:`~voicecoach.device.belt.BeltController`)."""

from __future__ import annotations

import logging

from voicecoach.device.belt_state import BeltState
from voicecoach.treadmill import ftms
from voicecoach.workout.machine import ACTIVE

_LOGGER = logging.getLogger(__name__)

#: A stop (or pause) the treadmill did not confirm (a failed or refused write) is written again
#: after this long, for as long as it is not confirmed
STOP_RETRY_S = 0.5
#: A belt read at 0 within this long (workout seconds), the link up, is known to be still: a
#: stop or pause not confirmed on it is said as such (the treadmill's data comes about every
#: second; an older reading, or none, is no knowledge: the belt may still be moving)
STILL_READING_S = 3.0


class BeltHalting(BeltState):
    """Stops and pauses: written now, held until confirmed, never weakened."""

    def halt(self) -> None:
        """Stop the belt, whatever the coach's state: written now if the link is up (and no stop
        is on its way already), else as soon as it is; pending until the treadmill confirms it
        (:meth:`_stop_done`). Also what the program calls when it ends under a session."""
        self.winding_down = False
        if not self.drive:
            return
        self._hold(ftms.stop())

    def _hold(self, command: ftms.Command) -> None:
        """Write ``command`` (a stop or a pause: the belt halts), pending until the treadmill
        confirms it (:meth:`_stop_done`): now if the link is up and it is not on its way
        already, again :data:`STOP_RETRY_S` after a failure, at once when a lost link is back.
        A pause is held by the same path as a stop: a pause the treadmill does not take leaves
        the belt running under a user who believes it is halting. A pending stop is not
        weakened by a pause; a stop overtakes a pending pause (written at once)."""
        if self.halt_pending and self.halt_command == ftms.stop() and command != ftms.stop():
            return
        if command != self.halt_command:
            self._stop_in_flight = False  # the pause on its way does not hold back the stop
        self.halt_command = command
        self.halt_pending = True
        if self.link_up and not self._stop_in_flight:
            self._stop_in_flight = True
            self._write(command)
        elif not self.link_up and (self.started or self._belt_moving()):
            # said with the link away: the stop cannot reach the belt until it is back, and the
            # session this stop ends no longer tells of the lost link (once per stop)
            _LOGGER.warning("treadmill: %s while the link is away; the belt may still be "
                            "moving; written when the link is back", command.describe())
            self._say_once("stop_unconfirmed", self.words.STOP_UNCONFIRMED)

    def _end_pending_pause(self) -> None:
        """A pending pause is over without its confirmation (a "resume", the console)."""
        self.halt_pending = self._stop_in_flight = False
        self.halt_command = ftms.stop()
        self._said -= {"stop_unconfirmed", "stop_unconfirmed_still"}

    def _known_still(self) -> bool:
        """The belt is known not to move: the link up and a reading of 0 within
        :data:`STILL_READING_S`."""
        return self.link_up and self.belt_kmh is not None and not self._belt_moving() \
            and self.coach.now - self.belt_t <= STILL_READING_S

    def _stop_done(self, command: ftms.Command, ok: bool, lost: bool = False) -> None:
        """The treadmill's answer to a stop or pause: confirmed, or written again
        :data:`STOP_RETRY_S` later (by BeltController.tick; at once when a lost link comes back).
        ``lost``: the write went with the link (the lost link's line says what to do)."""
        if self.halt_pending and command != self.halt_command:
            return  # a pause a stop overtook: the stop's own answer settles it
        if not self.halt_pending and command != ftms.stop():
            return  # a pause given up ("resume", the console): nothing to settle
        self._stop_in_flight = False
        if not ok:
            self._stop_retry_at = self.coach.now + STOP_RETRY_S
            if not lost and self._known_still():
                # the belt is read at 0: it is not moving, whatever the answer; said so (and
                # what to do if it moves: BeltReports._reading says it if it does), once
                _LOGGER.warning("treadmill: the %s was not confirmed; the belt is still; "
                                "written again in %g s", command.describe(), STOP_RETRY_S)
                if "stop_unconfirmed" not in self._said:
                    self._say_once("stop_unconfirmed_still", self.words.STOP_UNCONFIRMED_STILL)
                return
            # refused or failed with the link up: the user hears at once that the belt may
            # still move and how to halt it, as when the link goes (once per stop or pause)
            _LOGGER.warning("treadmill: the %s was not confirmed; the belt may still be moving; "
                            "written again in %g s", command.describe(), STOP_RETRY_S)
            self._say_once("stop_unconfirmed", self.words.STOP_UNCONFIRMED)
            return
        self.halt_pending = False
        self.halt_command = ftms.stop()
        self.confirmed_kmh = None  # a halted belt has no target speed
        # a later stop not confirmed is said again
        self._said -= {"stop_unconfirmed", "stop_unconfirmed_still"}
        if self.start_pending and self.link_up and self.coach.state in ACTIVE:
            self._start_belt()  # the user said ready while the stop was on its way
