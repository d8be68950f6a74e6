"""The coach's state callbacks: what it does on entering each state of the machine (the
briefing, each phase of the plan with its turns, pause, the end); mixed into
:class:`voicecoach.workout.coach.Coach`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from transitions import EventData

from voicecoach import events as ev
from voicecoach.events import Event, Priority
from voicecoach.phrases import Phrases
from voicecoach.workout.cues import CueEngine
from voicecoach.workout.machine import ACTIVE, PHASE_STATE, State
from voicecoach.workout.plan import Phase, Plan

_LOGGER = logging.getLogger(__name__)


def _forward(kind: str) -> bool:
    return kind != "backward"


class CoachPhases:
    """Callbacks the state machine calls by name (``on_enter_<STATE>``, ``begin_phase``, the
    table's conditions); mixed into :class:`voicecoach.workout.coach.Coach`."""

    plan: Plan
    state: State
    now: float
    words: Phrases
    phase_index: int
    phase_elapsed: float
    speed_mph: float
    incline_pct: float
    briefing_step: int
    briefing_checks: tuple[tuple[str, str], ...]
    ready_prompt: str | None
    question: str | None
    awaiting_turn: bool
    turn_asks: int
    paused_from: State | None
    announced: set[str]
    backward_s: float
    active_s: float
    backward_speeds: list[float]
    speed_by_kind: dict[str, float]
    outcome: str | None
    cues: CueEngine

    if TYPE_CHECKING:  # provided by Coach and by the state machine
        @property
        def phase(self) -> Phase | None: ...
        @property
        def units(self) -> str: ...
        def say(self, text: str, kind: str, priority: Priority = Priority.ANSWER,
                cue_id: str = "", remember: bool = True) -> None: ...
        def emit(self, event: Event) -> None: ...
        def _ask(self, question: str, text: str) -> None: ...
        def _target_changed(self, why: str) -> None: ...
        def _reset_session(self) -> None: ...
        def advance(self, **kwargs: object) -> bool: ...

    def state_entered(self, event: EventData) -> None:
        """First callback on entering any state: report the change before anything is said."""
        transition = event.transition
        source = State[transition.source] if transition and transition.source else None
        self.emit(ev.StateChanged(t=self.now, state=self.state.value,
                                  source=source.value if source else "",
                                  dest=self.state.value, trigger=event.event.name))
        if source is State.PAUSED and self.state in ACTIVE:
            # a belt the coach does not drive is the user's to restart: very slowly first
            # (COACHING.md); a driven one restarts slowly by itself (voicecoach.device.belt)
            self.say(self.words.RESUMED if self.ready_prompt else self.words.RESUMED_BY_HAND,
                     "answer", Priority.ANSWER, remember=False)

    def on_enter_BRIEFING(self, event: EventData) -> None:
        self._reset_session()
        for note in self.plan.notes:
            self.say(note, "announcement", Priority.ANNOUNCEMENT)
        self.say(self.words.BRIEFING_INTRO, "announcement", Priority.ANNOUNCEMENT)
        self.say(self.words.BRIEFING_STOP, "announcement", Priority.ANNOUNCEMENT)
        self._ask("briefing", self.briefing_checks[0][0])

    def briefing_yes(self, event: EventData) -> None:
        self.briefing_step += 1
        if self.briefing_step < len(self.briefing_checks):
            self._ask("briefing", self.briefing_checks[self.briefing_step][0])
        else:
            self.question = None
            # COACHING.md's safety points spoken before the first step: when to end at once,
            # and someone standing by for poor balance (after the checks, before the belt)
            self.say(self.words.BRIEFING_WHEN_TO_END, "announcement", Priority.ANNOUNCEMENT)
            self.advance()

    def briefing_no(self, event: EventData) -> None:
        self.say(self.briefing_checks[self.briefing_step][1], "prompt", Priority.ANSWER)

    def _next_phase(self) -> Phase | None:
        index = self.phase_index + 1
        return self.plan.phases[index] if index < len(self.plan.phases) else None

    def __getattr__(self, name: str) -> Any:
        # conditions of the table: next_is_<kind>, paused_from_<state>
        if name.startswith("next_is_"):
            kind = name[len("next_is_"):]
            return lambda event=None: (nxt := self._next_phase()) is not None and nxt.kind == kind
        if name.startswith("paused_from_"):
            value = name[len("paused_from_"):]
            return lambda event=None: self.paused_from is not None and \
                self.paused_from.value == value
        raise AttributeError(name)

    def plan_done(self, event: EventData | None = None) -> bool:
        return self._next_phase() is None

    def begin_phase(self, event: EventData) -> None:
        previous = self.phase
        self.phase_index += 1
        phase = self.phase
        assert phase is not None and PHASE_STATE[phase.kind] is self.state
        self.phase_elapsed = 0.0
        self.announced = set()
        self.cues.new_phase()
        if previous is not None:
            self.speed_by_kind[previous.kind] = self.speed_mph
        carried = self.speed_by_kind.get(phase.kind)
        if carried is not None and phase.min_speed_mph <= carried <= phase.max_speed_mph:
            self.speed_mph = carried
        else:
            self.speed_mph = phase.speed_mph
        incline_before, self.incline_pct = self.incline_pct, phase.incline_pct
        number = sum(1 for p in self.plan.phases[:self.phase_index + 1] if p.kind == phase.kind)
        of = sum(1 for p in self.plan.phases if p.kind == phase.kind)
        was_forward = True if previous is None else _forward(previous.kind)
        turn = was_forward != _forward(phase.kind)
        ready = previous is None and bool(self.ready_prompt)
        self.emit(ev.PhaseStarted(
            t=self.now, state=self.state.value, index=self.phase_index, kind=phase.kind,
            duration_s=phase.duration_s, speed_mph=self.speed_mph,
            min_speed_mph=phase.min_speed_mph, max_speed_mph=phase.max_speed_mph,
            incline_pct=self.incline_pct, awaits_turn=turn or ready))
        if turn or ready:  # before the new target is told: a driven belt slows for the turn
            self.awaiting_turn, self.turn_asks = True, 0
        self._target_changed("phase")
        self.say(self.words.phase_intro(phase.kind, number, of, phase.duration_s, self.speed_mph,
                                 self.units), "announcement", Priority.ANNOUNCEMENT)
        if abs(self.incline_pct - incline_before) > 1e-6:
            # the plan's incline changes here: said, so a user who sets the belt by hand knows
            # it (week 4 on), and a driven belt's climb is not a surprise
            self.say(self.words.incline_text(self.incline_pct), "announcement",
                     Priority.ANNOUNCEMENT)
        if turn:
            self._ask("turn", self.words.TURN_TO_FORWARD if _forward(phase.kind)
                      else self.words.TURN_TO_BACKWARD)
        elif ready and self.ready_prompt:
            self._ask("turn", self.ready_prompt)

    def remember_paused_state(self, event: EventData) -> None:
        self.paused_from = self.state

    def on_enter_PAUSED(self, event: EventData) -> None:
        if event.event.name == "lost_input":
            self.say(self.words.LOST_INPUT, "warning", Priority.URGENT, remember=False)
        else:
            self.say(self.words.PAUSED, "answer", Priority.ANSWER, remember=False)

    def on_enter_STOPPED(self, event: EventData) -> None:
        self.say(self.words.ENDED_SAFE, "warning", Priority.URGENT)
        self._end("stopped")

    def on_enter_FINISHED(self, event: EventData) -> None:
        self._end("finished")

    def _end(self, outcome: str) -> None:
        self.outcome = outcome
        self.question, self.awaiting_turn = None, False
        speeds = self.backward_speeds or [0.0]
        text = self.words.summary_text(self.backward_s, min(speeds), max(speeds), self.units,
                                       outcome)
        self.say(text, "summary", Priority.ANNOUNCEMENT)
        self.emit(ev.SessionEnded(t=self.now, state=self.state.value, outcome=outcome,
                                  backward_s=round(self.backward_s, 3),
                                  total_s=round(self.active_s, 3), min_speed_mph=min(speeds),
                                  max_speed_mph=max(speeds), summary=text))

    def stop_at_rest(self, event: EventData) -> None:
        """"stop" with nothing running: accepted, and the belt is already safe. The coach
        stays quiet: an idle device listening all day must not answer every stray "stop"
        (the duplex gate still cuts off anything being said)."""
        _LOGGER.info("stop heard with nothing running (%s)", self.state.value)
