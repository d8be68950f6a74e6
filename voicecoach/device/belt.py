"""Keeps the belt in step with the coach, safely: the coach's events in, FTMS writes out."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from voicecoach import events as ev
from voicecoach.device.belt_reports import SPEED_TOLERANCE_KMH, BeltReports, _Step
from voicecoach.events import Event, Priority
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
from voicecoach.workout.machine import ACTIVE, AT_REST, State

_LOGGER = logging.getLogger(__name__)

#: Seconds a step may take to show in the reported speed before the next one is allowed.
STEP_TIMEOUT_S = 10.0
#: Incline reached within this (percent).
INCLINE_TOLERANCE_PCT = 0.25
#: At the end of a session the belt is first brought down to this (km/h, or the treadmill's
#: slowest), then halted.
WIND_DOWN_KMH = 1.0
#: A still belt (the start, after a pause) starts at this (mph; COACHING.md's very slow start,
#: 0.8 km/h, or the treadmill's slowest) and climbs to the target one step at a time.
RESTART_MPH = 0.5
#: A stop (or pause) the treadmill did not confirm (a failed or refused write) is written again
#: after this long, for as long as it is not confirmed
STOP_RETRY_S = 0.5
#: A belt read at 0 within this long (workout seconds), the link up, is known to be still: a
#: stop or pause not confirmed on it is said as such (the treadmill's data comes about every
#: second; an older reading, or none, is no knowledge: the belt may still be moving)
STILL_READING_S = 3.0


class BeltController(BeltReports):
    """Drives (or, in "announce" mode, only watches) the belt for one :class:`Coach`.

    Rules: the belt starts only after the briefing and "ready"; every speed written stays
    inside the phase window, both top speeds and the treadmill's range; speed goes up one
    step at a time and the next step waits until the reported speed shows the last one (or
    :data:`STEP_TIMEOUT_S`); a write happens only because the coach asked for it (a command or
    a phase), never because the link came back; the console, the safety key and the link
    going away win over the coach.
    """

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
        #: as a later stop's or pause's (BeltReports._write_done). Both 0 on a new link.
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
        #: goes back to when a write fails with the link up (BeltReports._not_taken).
        self.confirmed_kmh: float | None = None
        self.confirmed_incline: float | None = None
        self.winding_down = False
        self.start_pending = False
        self.speed_control = True
        self._said = set()
        self._new_turn()

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

    def _new_turn(self) -> None:
        """A phase starts (a turn may wait for "ready"): its slow-down is the coach's to write,
        its failure said and retried afresh."""
        self._said -= {"turn_not_slowed", "turn_slow_given_up"}
        self._turn_console = self._slow_given_up = False
        self._slow_retries = 0
        self._slow_retry_at = -math.inf

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

    def _belt_moving(self) -> bool:
        return self.belt_kmh is not None and self.belt_kmh > 0.05

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

    def _slow_kmh(self) -> float:
        """COACHING.md's very slow belt (0.5 mph, or the treadmill's slowest), on its grid: what
        a still belt starts at, and what a turn is made over."""
        return self._on_grid(max(RESTART_MPH * KMH_PER_MPH, self.speed_range.minimum))

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
        :data:`STOP_RETRY_S` later (by :meth:`tick`; at once when a lost link comes back).
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

    # ------------------------------------------------------------------ writes, one step at a time
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
