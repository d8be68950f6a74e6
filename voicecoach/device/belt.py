"""Keeps the belt in step with the coach, safely: the coach's events in, FTMS writes out.

The controller is one object in parts: its state and shared helpers (belt_state.py), halting
(belt_halt.py), the steps it writes (belt_steps.py), what the treadmill reports
(belt_reports.py) and the answers to its writes (belt_answers.py); here, the coach's events,
starting the belt, the wind-down and the tick."""

from __future__ import annotations

import logging
from collections.abc import Callable

from voicecoach import events as ev
from voicecoach.device.belt_answers import BeltAnswers
from voicecoach.device.belt_halt import BeltHalting
from voicecoach.device.belt_reports import BeltReports
from voicecoach.device.belt_state import SPEED_TOLERANCE_KMH, _Step
from voicecoach.device.belt_steps import BeltSteps
from voicecoach.events import Event, Priority
from voicecoach.settings import TreadmillSettings
from voicecoach.treadmill import ftms
from voicecoach.treadmill.link import Treadmill
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import ACTIVE, AT_REST, State

_LOGGER = logging.getLogger(__name__)

#: At the end of a session the belt is first brought down to this (km/h, or the treadmill's
#: slowest), then halted.
WIND_DOWN_KMH = 1.0


class BeltController(BeltReports, BeltAnswers, BeltHalting, BeltSteps):
    """Drives (or, in "announce" mode, only watches) the belt for one :class:`Coach`.

    Rules: the belt starts only after the briefing and "ready"; every speed written stays
    inside the phase window, both top speeds and the treadmill's range; speed goes up one
    step at a time and the next step waits until the reported speed shows the last one (or
    belt_steps.STEP_TIMEOUT_S); a write happens only because the coach asked for it (a
    command or a phase), never because the link came back; the console, the safety key and
    the link going away win over the coach.
    """

    @classmethod
    def follow(cls, treadmill: Treadmill, settings: TreadmillSettings
               ) -> Callable[[Coach], BeltController]:
        """What a Coach is given to make its belt controller: ``Coach(..., followers=[
        BeltController.follow(link, settings)])``; the coach hands it every event and tick."""
        return lambda coach: cls(coach, treadmill, settings)

    def briefing(self) -> tuple[tuple[tuple[str, str], ...], str] | None:
        """A driven belt is not running yet at the briefing, and the first phase waits for
        "ready" once it moves; announcing or off: the usual briefing."""
        if not self.drive:
            return None
        return self.words.driven_checks, self.words.READY_TO_START

    # ------------------------------------------------------------------ the coach's events
    def on_event(self, event: Event) -> None:
        """Listener for the coach's events."""
        if isinstance(event, ev.StateChanged):
            self._state_changed(event)
        elif isinstance(event, ev.CommandHeard):
            if event.command == "stop" and State(event.state) in AT_REST \
                    and event.source != "console" and (self._belt_moving() or self.winding_down):
                # nothing is running as far as the coach knows, but the belt moves (started on
                # the console, or being wound down) and the user says stop: stop it now. A
                # still belt is not written to (an idle device hears stray stops all day)
                self.halt()
        elif isinstance(event, ev.PhaseStarted):
            self._new_turn()
        elif isinstance(event, ev.WalkerReady):
            if event.said and self.briefed and not self.started and self.coach.state in ACTIVE:
                self._start_belt()
        elif isinstance(event, ev.TargetChanged):
            if event.why in ("console", "link", "not_taken"):  # the belt's own: nothing to write
                return
            if event.why != "phase":
                # the user asked for a speed while a turn's slow-down is given up: written once
                # (the turn's slow belt, if lower), not retried
                self._slow_given_up = False
            self.want_kmh = self.clamp_kmh(event.speed_mph)
            top = min(self.coach.phase.max_incline_pct if self.coach.phase else 0.0,
                      self.coach.settings.max_incline_pct)
            self.want_incline = self.incline_range.clamp(min(event.incline_pct, top))
            self._pump()

    def _state_changed(self, event: ev.StateChanged) -> None:
        dest = State(event.dest)
        source = State(event.source) if event.source else None
        if dest in (State.STOPPED, State.FINISHED):
            self._report(force=True)  # the history's last word on speed and distance
        if dest is State.BRIEFING:
            self._reset_session()
        elif source is State.BRIEFING and dest in ACTIVE:
            self.briefed = True
        elif dest is State.PAUSED:
            self.step = self.incline_step = None
            if not self._console and self.drive:
                self._hold(ftms.pause())
        elif source is State.PAUSED and dest in ACTIVE:
            if self.halt_pending and self.halt_command == ftms.pause():
                # "resume" over a pause never confirmed: the user wants to walk; a pause
                # written later would halt the belt under them by surprise
                _LOGGER.warning("treadmill: resumed before the pause was confirmed; the pause "
                                "is not written again")
                self._end_pending_pause()
            if not self._console and self.started and not self._belt_moving():
                self._write(ftms.start_resume())  # never while running (toggle pads)
                self._restart_slowly()
        elif dest is State.STOPPED:
            self.step = None
            if not self._console:
                self.halt()
        elif dest is State.FINISHED:
            self._wind_down()

    def _start_belt(self) -> None:
        self.started = True
        if not self.drive:
            return
        if self.halt_pending:  # started once the last stop is confirmed (_stop_done)
            self.start_pending = True
            if not self.link_up:
                self._say_once("not_connected", self.words.NOT_CONNECTED, Priority.ANSWER)
            return
        if not self.link_up:  # started when the link is up (the user did say ready)
            self.start_pending = True
            self._say_once("not_connected", self.words.NOT_CONNECTED, Priority.ANSWER)
            return
        self.start_pending = False
        if self.clamp_kmh(self.coach.speed_mph) is None:
            self._say_once("too_fast", self.words.TOO_FAST_FOR_PLAN)
            self.started = False
            return
        self.coach.say(self.words.BELT_STARTING, "announcement", Priority.ANNOUNCEMENT, remember=False)
        self.want_kmh = self.clamp_kmh(self.coach.speed_mph)
        self.sent_kmh = None
        if not self._belt_moving():
            self._write(ftms.start_resume())
            self._restart_slowly()
        self._pump()

    def _restart_slowly(self) -> None:
        """A still belt (the start, or after a pause) never goes straight to the target: it
        starts very slowly and climbs one step at a time (:meth:`_next_speed`), as COACHING.md
        says a belt is started."""
        if not (self.drive and self.link_up and self.speed_control) or self.want_kmh is None:
            return
        first = min(self._slow_kmh(), self.want_kmh)
        self.sent_kmh = first
        self.step = _Step(first, self.coach.now)
        self._write(ftms.target_speed(self._to_raw(first)))

    def _wind_down(self) -> None:
        slow = max(WIND_DOWN_KMH, self.speed_range.minimum)
        if self.drive and self.started and self.speed_control and self._belt_moving() \
                and (self.belt_kmh or 0.0) > slow + SPEED_TOLERANCE_KMH and self.link_up:
            self.coach.say(self.words.WINDING_DOWN, "announcement", Priority.ANNOUNCEMENT,
                           remember=False)
            self.winding_down = True
            self.sent_kmh = slow
            self.step = _Step(slow, self.coach.now)
            self._write(ftms.target_speed(self._to_raw(slow)))
        else:
            self.halt()

    # ------------------------------------------------------------------ the treadmill's updates
    def tick(self, t: float) -> None:
        """Tick hook: take in the link's updates, then write the next step if one is due."""
        for update in self.treadmill.poll(t):
            self.handle(update)
        self._settle_not_taken()
        if self.halt_pending and self.link_up and not self._stop_in_flight \
                and self.coach.now >= self._stop_retry_at:
            _LOGGER.warning("treadmill: the %s was not confirmed; writing it again",
                            self.halt_command.describe())
            self._hold(self.halt_command)
        if self.winding_down and self._step_done(self.coach.now):
            self.halt()
        self._pump()


def stop_belts(coach: Coach) -> bool:
    """Stop every belt ``coach`` drives, now, whatever its state: the program is ending under
    a session (the link's ``close`` then writes what is queued). True if there was one."""
    belts = [f for f in coach.followers if isinstance(f, BeltController)]
    for belt in belts:
        belt.halt()
    return bool(belts)
