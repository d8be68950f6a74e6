"""The device loop's workout faults: an exception inside the workout (the coach, its state
machine's callbacks, the belt controller it drives) ends that session, not the device (a part
of :class:`~voicecoach.device.loop.DeviceLoop`).

The belt is halted first, as any stop is; one line goes to the log (the traceback only at
DEBUG); the fault goes into the session's record, which ends as stopped; one sentence is said;
and the coach is back to idle, listening for "start". The hardware's own faults (the
microphone, the speaker, the treadmill's link) keep their own handling: they never reach here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from voicecoach import events as ev
from voicecoach.device.audio_clock import AudioClock
from voicecoach.device.belt import stop_belts
from voicecoach.errors import VoicecoachError, describe, where_raised
from voicecoach.events import Priority
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import State

_LOGGER = logging.getLogger(__name__)

#: This many workout faults within FAULT_WINDOW_S of audio time end the program instead
#: (WorkoutFaults, exit FAULTS_EXIT): a fault that comes back at once is not one that a new
#: session gets past, and a fresh process (systemd restarts the unit) is the next thing to try.
FAULT_LIMIT = 3
FAULT_WINDOW_S = 300.0
#: The exit code then: sysexits' EX_SOFTWARE ("an internal software error"). systemd restarts
#: the unit on it (Restart=on-failure; only NEEDS_A_PERSON is not restarted).
FAULTS_EXIT = 70


class WorkoutFaults(VoicecoachError):
    """The device loop gives up after a workout fault: too many at once, or no session left to
    run (``start``, ``run --audio-in``). One line, exit FAULTS_EXIT; the belt is halted and the
    session's record ended before it is raised."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, hint, exit_code=FAULTS_EXIT)


class LoopFaults:
    """The loop's steps into the workout, each run by :meth:`_workout`: a fault in one is
    handled by :meth:`_fault`."""

    # set by DeviceLoop.__init__
    coach: Coach
    clock: AudioClock
    belt: Any
    sessions: int | None
    completed: int
    _session: ExitStack | None
    #: The audio times of the workout faults so far.
    faults: list[float]

    if TYPE_CHECKING:  # provided by LoopSessions
        def _end_record(self, outcome: str, label: str) -> None: ...

    def _workout(self, where: str, step: Callable[..., object], *args: Any,
                 **kwargs: Any) -> None:
        """Run one step of the workout (``where``: what the loop was doing, for the log)."""
        try:
            step(*args, **kwargs)
        except WorkoutFaults:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one workout must not end the device
            self._fault(exc, where)

    def _fault(self, exc: Exception, where: str) -> None:
        """A fault inside the workout: (1) the belt halted, (2) one line in the log, the
        traceback at DEBUG, (3) the fault and what is said about it in the session's record,
        which ends as stopped, (4) the coach back to idle. The loop then listens for "start"
        again, unless FAULT_LIMIT faults came within FAULT_WINDOW_S or no session is left to
        run: then WorkoutFaults ends it. KeyboardInterrupt and SystemExit never come here."""
        now = self.clock.audio_s
        self.faults.append(now)
        recent = [t for t in self.faults if now - t < FAULT_WINDOW_S]
        what, at = describe(exc), where_raised(exc)
        in_session = self._session is not None
        too_many = len(recent) >= FAULT_LIMIT
        last = in_session and self.sessions is not None and self.completed + 1 >= self.sessions
        halted = self._halt_for_fault(exc, where, what, at)
        done = [*(["the belt is halted"] if halted else []),
                *(["the session is ended as stopped"] if in_session else []),
                f"{len(recent)} faults within {FAULT_WINDOW_S / 60:g} minutes: giving up"
                if too_many else "no session is left to run" if last
                else "listening for start again"]
        _LOGGER.error("workout fault %s: %s (at %s); %s", where, what, at, "; ".join(done))
        _LOGGER.debug("the workout fault's traceback:", exc_info=exc)
        try:
            if in_session or halted:
                self._tell_fault(where, what, at, halted, again=not (too_many or last))
            if in_session:
                self._end_record("stopped", "fault")
            was = self.coach.force_idle()
            if was is not State.IDLE:
                self.coach.emit(ev.StateChanged(t=self.coach.now, state=State.IDLE.value,
                                                source=was.value, dest=State.IDLE.value,
                                                trigger="fault"))
        except Exception as again:  # noqa: BLE001 - the coach cannot be brought back: end
            raise WorkoutFaults(
                f"workout fault {where}: {what} (at {at}), and the coach could not be brought "
                f"back to idle ({describe(again)} at {where_raised(again)})",
                "the belt is halted; run with --debug for the tracebacks") from exc
        belt = "the belt is halted; " if halted else ""
        if too_many:
            raise WorkoutFaults(
                f"the workout failed {len(recent)} times within {FAULT_WINDOW_S / 60:g} "
                f"minutes, the last {where}: {what} (at {at})",
                f"{belt}each session is recorded as stopped; the log has every fault (with "
                "--debug, their tracebacks)") from exc
        if last:
            raise WorkoutFaults(
                f"the session stopped on a fault {where}: {what} (at {at})",
                f"{belt}it is recorded as stopped; run with --debug for the traceback") from exc

    def _halt_for_fault(self, exc: Exception, where: str, what: str, at: str) -> bool:
        """Halt the belt the coach drives, as the end of the program does (a session, or a
        belt it started): True when a stop was written or is pending. If even that fails,
        nobody can vouch for the belt: the loop ends (the link's close writes what is
        queued, then the treadmill's own watchdog)."""
        belt = self.belt
        if belt is None or not (self._session is not None or belt.started):
            return False
        try:
            stop_belts(self.coach)
        except Exception as again:  # noqa: BLE001 - said in one line, then the loop ends
            raise WorkoutFaults(
                f"workout fault {where}: {what} (at {at}), and the belt could not be halted "
                f"({describe(again)} at {where_raised(again)})",
                "halt the belt on the console or pull the safety key; run with --debug for "
                "the tracebacks") from exc
        return bool(belt.drive)

    def _tell_fault(self, where: str, what: str, at: str, halted: bool, again: bool) -> None:
        """The fault into the session's record (a DeviceProblem of the "coach"), and one
        sentence said (a CueSpoken, so the record and the printed output have it too)."""
        coach, words = self.coach, self.coach.words
        state = coach.state.value
        coach.emit(ev.DeviceProblem(t=coach.now, state=state, device="coach",
                                    problem=f"internal fault {where}: {what}",
                                    extra={"at": at}))
        text = words.FAULT_HALTED if halted else words.FAULT_ENDED
        if again:
            text = f"{text} {words.FAULT_START_AGAIN}"
        coach.emit(ev.CueSpoken(t=coach.now, state=state, text=text, kind="warning",
                                priority=Priority.URGENT))
