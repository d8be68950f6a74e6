"""The coach: the model the state machine drives, fed by commands and clock ticks, emitting events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from transitions import MachineError

from voicecoach import events as ev
from voicecoach.events import Event, Priority
from voicecoach.grammar import Grammar
from voicecoach.phrases import Phrases, load_phrases
from voicecoach.settings import CoachSettings
from voicecoach.workout.cues import CueEngine
from voicecoach.workout.machine import ACTIVE, AT_REST, TRIGGERS, State, build_machine
from voicecoach.workout.phases import CoachPhases
from voicecoach.workout.plan import Phase, Plan
from voicecoach.workout.requests import EPS, CoachRequests

_LOGGER = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class Follower(Protocol):
    """Something that follows the workout (the belt controller): it hears every event and
    every tick, and may ask for the briefing it needs. The coach wires it at construction;
    a follower never edits the coach."""

    def on_event(self, event: Event) -> None: ...

    def tick(self, t: float) -> None: ...

    def briefing(self) -> tuple[tuple[tuple[str, str], ...], str] | None:
        """(briefing checks, the prompt before the first phase), or None for the usual."""
#: Seconds an unanswered question (check-in, "end the session?") stays open.
QUESTION_TIMEOUT_S = 20.0
#: Times the coach asks "say ready" after a turn before it starts the clock anyway.
TURN_ASKS = 3


class Coach(CoachPhases, CoachRequests):
    """Runs one plan: the state machine's model. Feed it ``command()`` and ``tick()``."""

    state: State

    def __init__(self, plan: Plan, settings: CoachSettings | None = None,
                 grammar: Grammar | None = None, listeners: Iterable[Listener] = (),
                 volume: float = 0.8, words_per_minute: float = 160.0,
                 tick_hooks: Iterable[Callable[[float], None]] = (),
                 followers: Iterable[Callable[[Coach], Follower]] = ()) -> None:
        self.plan = plan
        self.settings = settings or CoachSettings()
        self.grammar = grammar
        self.listeners: list[Listener] = list(listeners)
        #: Called with the workout time after every tick (e.g. the history's heartbeat).
        self.tick_hooks: list[Callable[[float], None]] = list(tick_hooks)
        self.volume = volume
        self.words_per_minute = words_per_minute
        #: Everything the coach says, in its grammar's language (grammars/phrases/).
        self.words: Phrases = load_phrases(grammar.language if grammar is not None else "en")
        self.cues = CueEngine(self.settings, self.words.cue_sets)
        #: The briefing's (question, what to say on "no") checks; a driven belt has its own.
        self.briefing_checks: tuple[tuple[str, str], ...] = self.words.briefing_checks
        #: When set (a driven belt), the first phase waits for "ready" with this prompt.
        self.ready_prompt: str | None = None
        self.now = 0.0
        self._failed_listeners: set[int] = set()
        self._refusals = 0
        self._reset_session()
        self.machine = build_machine(self)
        #: Made with this coach (e.g. the belt controller). They hear every event and tick
        #: BEFORE the listeners and hooks given: a stop reaches the belt first, not after the
        #: history (which may wait for a locked database) or the printed output.
        self.followers: list[Follower] = []
        for make in followers:
            follower = make(self)
            self.listeners.insert(len(self.followers), follower.on_event)
            self.tick_hooks.insert(len(self.followers), follower.tick)
            self.followers.append(follower)
            asked = follower.briefing()
            if asked is not None:
                self.briefing_checks, self.ready_prompt = asked

    # ------------------------------------------------------------------ session data
    def _reset_session(self) -> None:
        self.phase_index = -1
        self.phase_elapsed = 0.0
        self.speed_mph = 0.0
        self.incline_pct = 0.0
        self.briefing_step = 0
        self.question: str | None = None
        self.question_t = 0.0
        self.awaiting_turn = False
        self.turn_asks = 0
        self.paused_from: State | None = None
        self.quiet_since = self.now
        self.last_said: str | None = None
        self.announced: set[str] = set()
        self.backward_s = 0.0
        self.active_s = 0.0
        self.backward_speeds: list[float] = []
        self.speed_by_kind: dict[str, float] = {}
        self.last_checkin_s = 0.0
        self.outcome: str | None = None

    @property
    def phase(self) -> Phase | None:
        """The phase being walked, if any."""
        if 0 <= self.phase_index < len(self.plan.phases):
            return self.plan.phases[self.phase_index]
        return None

    @property
    def done(self) -> bool:
        """True once the session has finished or been stopped."""
        return self.state in (State.FINISHED, State.STOPPED)

    @property
    def units(self) -> str:
        return self.settings.units

    # ------------------------------------------------------------------ output
    def emit(self, event: Event) -> None:
        """Send an event to every listener; a failing listener is logged once, never fatal."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the workout
                if id(listener) not in self._failed_listeners:
                    self._failed_listeners.add(id(listener))
                    # one line for the user; the traceback only in a debug log
                    _LOGGER.error("event listener %r failed (%s: %s); carrying on", listener,
                                  type(exc).__name__, exc)
                    _LOGGER.debug("the listener's traceback:", exc_info=exc)

    def say(self, text: str, kind: str, priority: Priority = Priority.ANSWER,
            cue_id: str = "", remember: bool = True) -> None:
        """Speak ``text`` (as an event for the speaker) and note how long it keeps us busy."""
        self.emit(ev.CueSpoken(t=self.now, state=self.state.value, text=text, kind=kind,
                               priority=priority, cue_id=cue_id))
        seconds = len(text.split()) * 60.0 / self.words_per_minute + 0.3
        self.quiet_since = max(self.quiet_since, self.now) + seconds
        if remember:
            self.last_said = text

    def _ask(self, question: str, text: str) -> None:
        self.question, self.question_t = question, self.now
        self.say(text, "prompt", Priority.ANSWER)

    def _refuse(self, command: str, reason: str) -> None:
        self._refusals += 1
        self.emit(ev.CommandRefused(t=self.now, state=self.state.value, command=command,
                                    reason=reason))
        self.say(reason, "refusal", Priority.ANSWER, remember=False)

    def _target_changed(self, why: str) -> None:
        if self.state is State.BACKWARD:
            self.backward_speeds.append(self.speed_mph)
        self.emit(ev.TargetChanged(t=self.now, state=self.state.value, speed_mph=self.speed_mph,
                                   incline_pct=self.incline_pct, why=why))

    # ------------------------------------------------------------------ input
    def command(self, name: str, t: float | None = None, phrase: str = "",
                confidence: float = 1.0, source: str = "voice") -> bool:
        """Act on a command heard at workout time ``t``; False if it was refused."""
        if t is not None:
            self.tick(t)
        if name not in TRIGGERS or name in ("advance", "reset", "lost_input"):
            self._refuse(name, self.words.UNKNOWN_COMMAND)
            return False
        self.emit(ev.CommandHeard(t=self.now, state=self.state.value, command=name,
                                  phrase=phrase or name, confidence=confidence, source=source))
        refusals = self._refusals
        try:
            getattr(self, name)(phrase=phrase or name)
        except MachineError:
            self._refuse(name, self._why_not(name))
            return False
        return self._refusals == refusals

    def _why_not(self, name: str) -> str:
        if self.state in AT_REST:
            return self.words.REFUSE_IDLE
        if self.state is State.BRIEFING:
            return self.words.REFUSE_BRIEFING
        if self.state is State.PAUSED:
            return self.words.REFUSE_PAUSED
        return (self.words.REFUSE_WALKING if name in ("start", "resume")
                else self.words.REFUSE_NOT_NOW)

    def begin(self, t: float | None = None) -> None:
        """Start a session (as the start command would)."""
        self.command("start", t, source="system")

    def lose_input(self, t: float | None = None) -> None:
        """The microphone went away: pause (if walking) and say so."""
        if t is not None:
            self.tick(t)
        if self.state in ACTIVE:
            self.lost_input()
        else:
            self.say(self.words.LOST_INPUT, "warning", Priority.URGENT, remember=False)

    def input_back(self, t: float | None = None) -> None:
        """The microphone is back."""
        if t is not None:
            self.tick(t)
        self.say(self.words.INPUT_BACK, "prompt", Priority.ANSWER, remember=False)

    def force_idle(self) -> State:
        """Back to idle at once, from any state, without the machine's callbacks; returns the
        state it was in. For the device loop after a fault inside the workout: the machine may
        have stopped half-way through a transition (transitions clears its queue), so its own
        "stop" and "reset" are not trusted to get it out."""
        was = self.state
        self.machine.set_state(State.IDLE, model=self)
        self._reset_session()
        return was

    def accepted_commands(self) -> tuple[str, ...]:
        """The commands the current state's grammar listens for."""
        if self.grammar is None:
            return tuple(t for t in TRIGGERS if t not in ("advance", "reset", "lost_input"))
        return self.grammar.commands_for(self.state.value)

    # ------------------------------------------------------------------ time
    def tick(self, t: float) -> None:
        """Move workout time to ``t`` seconds: count phase time, announce, cue, ask."""
        self._advance_time(t)
        for hook in self.tick_hooks:
            hook(self.now)

    def _advance_time(self, t: float) -> None:
        dt = max(0.0, t - self.now)
        self.now = max(self.now, t)
        if self.state not in ACTIVE:
            return
        phase = self.phase
        assert phase is not None
        if self.awaiting_turn:
            if self.now - self.question_t >= QUESTION_TIMEOUT_S:
                self._turn_reminder()
            return
        self.phase_elapsed += dt
        self.active_s += dt
        if self.state is State.BACKWARD:
            self.backward_s += dt
        if self.question and self.now - self.question_t >= QUESTION_TIMEOUT_S:
            self.question = None
        if self.phase_elapsed >= phase.duration_s - EPS:
            if phase.kind == "backward":
                last = not any(p.kind == "backward" for p in self.plan.phases[self.phase_index + 1:])
                self.say(self.words.LAST_BLOCK_DONE if last
                         else self.words.BLOCK_DONE, "announcement", Priority.ANNOUNCEMENT)
            self.advance()
            return
        self._time_announcements(phase)
        self._maybe_checkin()
        if self.question is None and self.cues.due(self.now, self.quiet_since, phase.cues):
            cue = self.cues.next(self.now, phase.cues)
            if cue:
                self.say(cue.text, "cue", Priority.CUE, cue_id=cue.cue_id)

    def _time_announcements(self, phase: Phase) -> None:
        if phase.kind != "backward" or phase.duration_s < 120:
            return
        left = phase.duration_s - self.phase_elapsed
        if "one_min" not in self.announced and left <= 60 + EPS:
            self.announced.update({"one_min", "half"})
            self.say(self.words.ONE_MINUTE_LEFT, "announcement", Priority.ANNOUNCEMENT)
        elif "half" not in self.announced and self.phase_elapsed >= phase.duration_s / 2:
            self.announced.add("half")
            if left > 75:  # not right before "one minute left"
                self.say(self.words.HALFWAY, "announcement", Priority.ANNOUNCEMENT)

    def _maybe_checkin(self) -> None:
        if (self.state is State.BACKWARD and self.question is None and self.phase_elapsed >= 60
                and self.backward_s - self.last_checkin_s >= self.settings.checkin_interval_s
                and self.now - self.quiet_since >= self.settings.min_gap_s):
            self.last_checkin_s = self.backward_s
            self._ask("checkin", self.words.CHECKIN)

    def _turn_reminder(self) -> None:
        self.turn_asks += 1
        if self.turn_asks >= TURN_ASKS:
            self.say(self.words.TURN_ASSUMED, "announcement", Priority.ANNOUNCEMENT)
            self._turned(said=False)
        else:
            self._ask("turn", self.words.TURN_AGAIN)

    def _turned(self, said: bool = True) -> None:
        self.awaiting_turn = False
        self.question = None
        self.quiet_since = max(self.quiet_since, self.now)
        self.emit(ev.WalkerReady(t=self.now, state=self.state.value, said=said))

    def console_target(self, speed_mph: float | None = None,
                       incline_pct: float | None = None, why: str = "console") -> None:
        """The treadmill's console set a new speed or incline: it becomes the target (``why``
        "link": the belt's measured speed, after a target was lost with the link)."""
        if speed_mph is not None:
            self.speed_mph = round(speed_mph, 2)
        if incline_pct is not None:
            self.incline_pct = round(incline_pct, 1)
        self._target_changed(why)
