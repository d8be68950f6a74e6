"""The device loop's faults: an exception inside the workout (the coach, its state machine's
callbacks, the belt controller it drives) or in the listening (the audio clock, the duplex gate,
the recogniser, the switch of its grammar) ends that session, not the device (a part of
:class:`~voicecoach.device.loop.DeviceLoop`).

The belt is halted first, as any stop is; after a listening fault the recogniser is reset; one
line goes to the log (the traceback only at DEBUG); the fault goes into the session's record,
which ends as stopped; one sentence is said; and the coach is back to idle, listening for
"start". The hardware's own faults (the microphone, the speaker, the treadmill's link) and the
parts that drop themselves when they fail (the echo canceller, the spotter's second look) keep
their own handling: they never reach here; nor does the loop's history work at its heartbeats
(loop_sessions.py), whose faults leave the belt and the coach alone, nor a write of the session's
record or its bookkeeping (an event's ``to_dict``, the tally at the recorder's heartbeat), which
its recorder keeps, retries and at the end keeps beside the history (history/session_writer.py,
history/recorder.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicecoach import events as ev
from voicecoach.device.audio_clock import AudioClock
from voicecoach.device.belt import stop_belts
from voicecoach.errors import VoicecoachError, describe, where_raised
from voicecoach.events import Priority
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import State

_LOGGER = logging.getLogger(__name__)

#: This many faults of one part (the workout, the listening) within FAULT_WINDOW_S of audio time
#: end the program instead (DeviceFaults, exit FAULTS_EXIT): a fault that comes back at once is
#: not one that a new session (or a reset recogniser) gets past, and a fresh process (systemd
#: restarts the unit) is the next thing to try.
FAULT_LIMIT = 3
FAULT_WINDOW_S = 300.0
#: The exit code then: sysexits' EX_SOFTWARE ("an internal software error"). systemd restarts
#: the unit on it (Restart=on-failure; only NEEDS_A_PERSON is not restarted).
FAULTS_EXIT = 70


class DeviceFaults(VoicecoachError):
    """The device loop gives up after a fault: too many at once, no session left to run
    (``start``, ``run --audio-in``), or a part that cannot be brought back. One line, exit
    FAULTS_EXIT; the belt is halted and the session's record ended before it is raised."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, hint, exit_code=FAULTS_EXIT)


class WorkoutFaults(DeviceFaults):
    """The device loop gives up after a fault inside the workout."""


class ListeningFaults(DeviceFaults):
    """The device loop gives up after a fault in the listening: deaf but running is the worst
    a device can be, so a recogniser that keeps failing ends the program (a fresh process is
    tried)."""


@dataclass(frozen=True)
class Part:
    """A part of the loop a fault can come from, as the log, the record and the last line
    name it."""

    #: "workout fault while ...", "listening fault in the recogniser: ..."
    name: str
    #: "the workout failed 3 times within 5 minutes", "listening failed ..."
    subject: str
    #: The session record's DeviceProblem names this device, unless the step that failed
    #: names its own part (:meth:`LoopFaults._listening`'s ``device``).
    device: str
    #: What the loop raises when it gives up.
    gives_up: type[DeviceFaults]


WORKOUT = Part("workout", "the workout", ev.COACH, WorkoutFaults)
LISTENING = Part("listening", "listening", ev.RECOGNISER, ListeningFaults)


class LoopFaults:
    """The loop's steps into the workout, each run by :meth:`_workout`, and into the
    listening, each run by :meth:`_listening`: a fault in one is handled by :meth:`_fault`."""

    # set by DeviceLoop.__init__
    coach: Coach
    clock: AudioClock
    belt: Any
    recogniser: Any
    sessions: int | None
    completed: int
    _session: ExitStack | None
    _active: tuple[str, ...]
    #: The audio times of the workout faults so far.
    faults: list[float]
    #: The audio times of the listening faults so far.
    listen_faults: list[float]

    if TYPE_CHECKING:  # provided by LoopSessions
        def _end_record(self, outcome: str, label: str) -> None: ...

    def _workout(self, where: str, step: Callable[..., object], *args: Any,
                 **kwargs: Any) -> None:
        """Run one step of the workout (``where``: what the loop was doing, for the log)."""
        try:
            step(*args, **kwargs)
        except DeviceFaults:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one workout must not end the device
            self._fault(exc, where)

    def _listening(self, where: str, step: Callable[..., object], *args: Any,
                   device: str = ev.RECOGNISER) -> bool:
        """Run one step of the listening (``where``: which, for the log; ``device``: the part
        it runs, events.FAULT_DEVICES, for the record); False when it failed (then
        :meth:`_fault` has reset the recogniser, and the rest of the chunk goes unheard)."""
        try:
            step(*args)
        except DeviceFaults:
            raise
        except Exception as exc:  # noqa: BLE001 - a fault while hearing must not end the device
            self._fault(exc, where, LISTENING, device)
            return False
        return True

    def _fault(self, exc: Exception, where: str, part: Part = WORKOUT,
               device: str = "") -> None:
        """A fault inside the workout or in the listening: (1) the belt halted, (2) after a
        listening fault, the recogniser reset, (3) one line in the log, the traceback at
        DEBUG, (4) the fault and what is said about it in the session's record, which ends as
        stopped, (5) the coach back to idle. The loop then listens for "start" again, unless
        FAULT_LIMIT faults of that part came within FAULT_WINDOW_S, no session is left to run
        or the recogniser cannot be reset: then the part's DeviceFaults ends it. The record
        names ``device`` (default: the part's). KeyboardInterrupt and SystemExit never come
        here."""
        now = self.clock.audio_s
        times = self.listen_faults if part is LISTENING else self.faults
        times.append(now)
        recent = [t for t in times if now - t < FAULT_WINDOW_S]
        what, at = describe(exc), where_raised(exc)
        in_session = self._session is not None
        too_many = len(recent) >= FAULT_LIMIT
        last = in_session and self.sessions is not None and self.completed + 1 >= self.sessions
        halted = self._halt_for_fault(exc, where, what, at, part)
        deaf = self._reset_listening() if part is LISTENING else None
        done = [*(["the belt is halted"] if halted else []),
                *(["the session is ended as stopped"] if in_session else [])]
        if part is LISTENING:
            done.append("the recogniser is reset" if deaf is None else
                        f"the recogniser could not be reset ({describe(deaf)} at "
                        f"{where_raised(deaf)})")
        if deaf is not None:
            done.append("giving up")
        elif too_many:
            done.append(f"{len(recent)} faults within {FAULT_WINDOW_S / 60:g} minutes: giving up")
        else:
            done.append("no session is left to run" if last else "listening for start again")
        _LOGGER.error("%s fault %s: %s (at %s); %s", part.name, where, what, at,
                      "; ".join(done))
        _LOGGER.debug("the %s fault's traceback:", part.name, exc_info=exc)
        if deaf is not None:
            _LOGGER.debug("the recogniser's reset's traceback:", exc_info=deaf)
        ends = too_many or last or deaf is not None
        try:
            if in_session or halted:
                self._tell_fault(where, what, at, halted, again=not ends,
                                 device=device or part.device)
            if in_session:
                self._end_record("stopped", "fault")
            was = self.coach.force_idle()
            if was is not State.IDLE:
                self.coach.emit(ev.StateChanged(t=self.coach.now, state=State.IDLE.value,
                                                source=was.value, dest=State.IDLE.value,
                                                trigger="fault"))
        except Exception as again:  # noqa: BLE001 - the coach cannot be brought back: end
            raise part.gives_up(
                f"{part.name} fault {where}: {what} (at {at}), and the coach could not be "
                f"brought back to idle ({describe(again)} at {where_raised(again)})",
                "the belt is halted; run with --debug for the tracebacks") from exc
        belt = "the belt is halted; " if halted else ""
        if deaf is not None:
            raise part.gives_up(
                f"{part.name} fault {where}: {what} (at {at}), and the recogniser could not be "
                f"reset ({describe(deaf)} at {where_raised(deaf)})",
                f"{belt}a session under way is recorded as stopped; run with --debug for the "
                "tracebacks") from exc
        if too_many:
            raise part.gives_up(
                f"{part.subject} failed {len(recent)} times within {FAULT_WINDOW_S / 60:g} "
                f"minutes, the last {where}: {what} (at {at})",
                f"{belt}each session is recorded as stopped; the log has every fault (with "
                "--debug, their tracebacks)") from exc
        if last:
            raise part.gives_up(
                f"the session stopped on a fault {where}: {what} (at {at})",
                f"{belt}it is recorded as stopped; run with --debug for the traceback") from exc

    def _reset_listening(self) -> Exception | None:
        """After a listening fault: the recogniser forgets the utterance it failed in, and its
        grammar is set again at the next switch. The exception if even that fails (then the
        device would be deaf: the loop ends)."""
        self._active = ()
        reset = getattr(self.recogniser, "reset", None)
        if reset is None:
            return None
        try:
            reset()
        except Exception as exc:  # noqa: BLE001 - said in the fault's line, then the loop ends
            return exc
        return None

    def _halt_for_fault(self, exc: Exception, where: str, what: str, at: str,
                        part: Part = WORKOUT) -> bool:
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
            raise part.gives_up(
                f"{part.name} fault {where}: {what} (at {at}), and the belt could not be halted "
                f"({describe(again)} at {where_raised(again)})",
                "halt the belt on the console or pull the safety key; run with --debug for "
                "the tracebacks") from exc
        return bool(belt.drive)

    def _tell_fault(self, where: str, what: str, at: str, halted: bool, again: bool,
                    device: str = ev.COACH) -> None:
        """The fault into the session's record (a DeviceProblem of ``device``, the part that
        failed: one of events.FAULT_DEVICES; the history reads the session as ended by the
        device, not the user, from it), and one sentence said (a CueSpoken, so the record and
        the printed output have it too)."""
        coach, words = self.coach, self.coach.words
        state = coach.state.value
        coach.emit(ev.internal_fault(coach.now, state, device, where, what, at))
        text = words.FAULT_HALTED if halted else words.FAULT_ENDED
        if again:
            text = f"{text} {words.FAULT_START_AGAIN}"
        coach.emit(ev.CueSpoken(t=coach.now, state=state, text=text, kind="warning",
                                priority=Priority.URGENT))
