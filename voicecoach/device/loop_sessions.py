"""The device loop's sessions: one opened on "start" with its history record, ended when the
coach is done, its record written once the history takes it, closed when the loop ends (a part of
:class:`~voicecoach.device.loop.DeviceLoop`).

An unexpected exception in that history work (a bug in writing a record or in the history's
upkeep, not the lock or the read-only folder the history itself answers for) is not a fault of
the workout: the belt and the coach go on, the record stays in memory and is tried again at the
next heartbeats (:meth:`LoopSessions._history`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from voicecoach.errors import VoicecoachError, describe, where_raised
from voicecoach.events import Priority
from voicecoach.history import recorder as history_recorder
from voicecoach.speaking.speaker import Speaker
from voicecoach.workout.coach import Coach
from voicecoach.workout.plan import Plan

_LOGGER = logging.getLogger(__name__)

#: Opens one session's history record: (plan or None) -> context giving (plan, recorder).
SessionOpener = Callable[[Plan | None], AbstractContextManager[tuple[Plan, Any]]]
#: Seconds of audio between two tries of the loop's upkeep (DeviceLoop ``upkeep``).
UPKEEP_S = 1.0

#: The history work an unexpected exception can come from (LoopSessions._history), as the log
#: names it, and what then becomes of it.
WRITING = "while writing a session's record"
KEPT = "the record is kept in memory and tried again each second; the coach goes on"
UPKEEP = "in the history's upkeep"
LEFT = "it is left to the history's next opening; the coach goes on"
CLOSING = "while closing a session's record"
LOST = "what the history had not taken of it is lost; the other records are closed"


class LoopSessions:
    """Opening, ending and closing the loop's sessions and their history records."""

    # set by DeviceLoop.__init__
    speaker: Speaker
    open_session: SessionOpener
    chosen_plan: Plan | None
    sessions: int | None
    coach: Coach
    completed: int
    outcomes: list[str]
    _session: ExitStack | None
    _recorder: Any
    _ending: list[tuple[ExitStack, Any]]
    _upkeep: Callable[[], bool] | None
    _upkeep_t: float
    #: The unexpected exception last logged for each history work (LoopSessions._history).
    _history_faults: dict[str, str]

    # ------------------------------------------------------------------ sessions
    def _start_session(self, t: float, phrase: str, confidence: float, source: str) -> None:
        stack = ExitStack()
        try:
            plan, recorder = stack.enter_context(self.open_session(self.chosen_plan))
        except VoicecoachError as exc:
            # The history cannot take a session (damaged, read-only, disk full): say so
            # aloud, log the fix, and keep listening (it may be fixed without a restart).
            _LOGGER.error("%s", exc.one_line())
            self.speaker.say(self.coach.words.NO_HISTORY, Priority.URGENT, t)
            return
        self._session, self._recorder = stack, recorder
        if hasattr(recorder, "on_problem"):  # the history stops taking it: said once
            told = recorder.on_problem  # the opener's own telling (a line on stderr), if any

            def on_problem(exc: Exception) -> None:
                try:
                    if told is not None:
                        told(exc)
                finally:  # said aloud even when the line could not be (one ERROR line:
                    # SessionWriter._tell)
                    self.coach.say(self.coach.words.HISTORY_FAILING, "warning",
                                   Priority.URGENT, remember=False)
            recorder.on_problem = on_problem
        self.coach.plan = plan
        self.coach.listeners.append(recorder.on_event)
        self.coach.tick_hooks.append(recorder.heartbeat)
        self.coach.command("start", t, phrase=phrase, confidence=confidence, source=source)

    def _end_session(self) -> None:
        """The session is over: its record is ended (:meth:`_end_record`) as the coach says it
        ended, and the coach is back to idle."""
        self._end_record(self.coach.outcome or "interrupted", self.coach.outcome or "")
        self.coach.reset()

    def _end_record(self, outcome: str, label: str) -> None:
        """The session's record ends as ``outcome`` if the coach recorded no end of its own
        (``label``: how :attr:`outcomes` counts it): closed now if the history takes the rest
        at once; if not (another program holds it locked), the loop goes on hearing and writes
        it at its heartbeats (:meth:`_write_ended`): closing would wait for the lock (up to
        about 43 s), and the microphone keeps only 2 s of what the user says meanwhile."""
        stack, recorder = self._session, self._recorder
        self._session = self._recorder = None
        if recorder is not None:
            self.coach.listeners.remove(recorder.on_event)
            self.coach.tick_hooks.remove(recorder.heartbeat)
        if stack is not None:
            end = getattr(recorder, "end", None)
            written: list[object] = []
            if end is None:
                stack.close()
            elif not self._history(WRITING, KEPT, lambda: written.append(end(outcome))):
                self._ending.append((stack, recorder))
            elif not written[0]:
                _LOGGER.info("history: the session's end is written once the history allows")
                self._ending.append((stack, recorder))
            else:
                stack.close()
        self.completed += 1
        self.outcomes.append(label)
        _LOGGER.info("session %d %s; listening for start again", self.completed, label)

    def _write_ended(self, t: float) -> None:
        """A heartbeat for the records of sessions over (never waits): each is closed once
        the history has taken it; one that raised is tried again at the next."""
        for item in list(self._ending):
            stack, recorder = item
            if not self._history(WRITING, KEPT, recorder.heartbeat, t) or not recorder.closed:
                continue
            self._ending.remove(item)
            self._history(CLOSING, LOST, stack.close)
            if not self._ending and self._history_faults.pop(WRITING, None) is not None:
                _LOGGER.warning("history: the records held back by the fault are written")

    def _heartbeat(self, t: float) -> None:
        """What waits for the history, tried without waiting: the records of sessions over
        (each second, by their recorders) and the upkeep (once a second of audio). Neither
        raises (:meth:`_history`): an upkeep that raised is left to the history's next
        opening, which does the same."""
        if self._ending:
            self._write_ended(t)
        if self._upkeep is not None and t - self._upkeep_t >= UPKEEP_S:
            self._upkeep_t = t
            done: list[bool] = []
            upkeep = self._upkeep
            if not self._history(UPKEEP, LEFT, lambda: done.append(upkeep())) or done[0]:
                self._upkeep = None

    def _history(self, what: str, then: str, step: Callable[..., object], *args: Any) -> bool:
        """Run one step of the history work beside the workout (``what``: which, ``then``:
        what becomes of it, for the log); False when it raised. Its expected failures (a
        lock, a read-only folder, a full disk) the history answers for itself; an unexpected
        exception here is a bug in writing the history, not in the workout: the belt and the
        coach go on, and one ERROR line says so (the traceback at DEBUG), once for each new
        error of that work (a write that fails each second is one line, not one a second).
        KeyboardInterrupt and SystemExit never come here."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - a history write failing must not end the device
            said = f"{describe(exc)} (at {where_raised(exc)})"
            if self._history_faults.get(what) != said:
                self._history_faults[what] = said
                _LOGGER.error("history fault %s: %s; %s", what, said, then)
                _LOGGER.debug("the history fault's traceback:", exc_info=exc)
            return False
        return True

    def close(self, exc: BaseException | None = None) -> None:
        """Close a session still open without waiting for it: recorded as stopped when
        ``exc`` is SystemExit/KeyboardInterrupt (SIGTERM, Ctrl-C), else as interrupted.
        Records of sessions over that are still unwritten are closed too, which waits for
        the history (the program is ending: nothing is left unsaid), all of them within
        one deadline of CLOSE_WORST_S, which the service's stop timeout leaves them: one
        after another, each waiting its own, a few would outlast it and be killed."""
        deadline = history_recorder.Deadline(history_recorder.CLOSE_WORST_S)
        for recorder in (self._recorder if self._session is not None else None,
                         *(recorder for _stack, recorder in self._ending)):
            if hasattr(recorder, "close_by"):
                recorder.close_by = deadline
        try:
            if self._session is not None:
                stack, self._session = self._session, None
                if exc is None:
                    self._history(CLOSING, LOST, stack.close)
                else:
                    self._history(CLOSING, LOST, stack.__exit__, type(exc), exc,
                                  exc.__traceback__)
        finally:
            while self._ending:
                stack, _recorder = self._ending.pop(0)
                self._history(CLOSING, LOST, stack.close)

    @property
    def finished(self) -> bool:
        return self.sessions is not None and self.completed >= self.sessions
