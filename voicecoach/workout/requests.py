"""The coach's answers to commands that keep the state: targets, answers, and requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transitions import EventData

from voicecoach import events as ev
from voicecoach.events import Event, Priority
from voicecoach.grammar import STOP, Grammar
from voicecoach.phrases import Phrases
from voicecoach.settings import CoachSettings
from voicecoach.workout.machine import AT_REST, State
from voicecoach.workout.plan import Phase, Plan

#: The lowest target the coach ever asks for, even after a pain report (mph).
FLOOR_MPH = 0.3
#: Tolerance for comparing speeds and times.
EPS = 1e-6


class CoachRequests:
    """Callbacks of the internal transitions (faster, slower, incline, yes/no, pain, repeat,
    time left, louder, quieter, help); mixed into :class:`voicecoach.workout.coach.Coach`."""

    settings: CoachSettings
    grammar: Grammar | None
    plan: Plan
    state: State
    now: float
    speed_mph: float
    incline_pct: float
    phase_elapsed: float
    volume: float
    question: str | None
    last_said: str | None
    words: Phrases

    if TYPE_CHECKING:  # provided by Coach and by the state machine
        @property
        def phase(self) -> Phase | None: ...
        @property
        def units(self) -> str: ...
        def say(self, text: str, kind: str, priority: Priority = Priority.ANSWER,
                cue_id: str = "", remember: bool = True) -> None: ...
        def emit(self, event: Event) -> None: ...
        def _refuse(self, command: str, reason: str) -> None: ...
        def _target_changed(self, why: str) -> None: ...
        def _ask(self, question: str, text: str) -> None: ...
        def _turned(self, said: bool = True) -> None: ...
        def accepted_commands(self) -> tuple[str, ...]: ...
        def stop(self, **kwargs: object) -> bool: ...

    def _speed(self) -> str:
        """The current target speed as spoken, in the coach's language and units."""
        return self.words.speed_text(self.speed_mph, self.units)

    # targets ---------------------------------------------------------------
    def _speed_limits(self) -> tuple[float, float]:
        phase = self.phase
        assert phase is not None
        return phase.min_speed_mph, min(phase.max_speed_mph, self.settings.top_speed_mph)

    def can_faster(self, event: EventData) -> bool:
        return self.speed_mph + self.settings.speed_step_mph <= self._speed_limits()[1] + EPS

    def can_slower(self, event: EventData) -> bool:
        return self.speed_mph - self.settings.speed_step_mph >= self._speed_limits()[0] - EPS

    def _incline_top(self) -> float:
        phase = self.phase
        assert phase is not None
        return min(phase.max_incline_pct, self.settings.max_incline_pct)

    def can_incline_up(self, event: EventData) -> bool:
        return self.incline_pct + self.settings.incline_step_pct <= self._incline_top() + EPS

    def can_incline_down(self, event: EventData) -> bool:
        return self.incline_pct - self.settings.incline_step_pct >= -EPS

    def _set_speed(self, mph: float, why: str) -> None:
        self.speed_mph = round(mph, 2)
        self._target_changed(why)
        self.say(self.words.TARGET_NOW.format(speed=self._speed()), "answer")

    def apply_faster(self, event: EventData) -> None:
        self._set_speed(self.speed_mph + self.settings.speed_step_mph, "faster")

    def apply_slower(self, event: EventData) -> None:
        self._set_speed(self.speed_mph - self.settings.speed_step_mph, "slower")

    def refuse_faster(self, event: EventData) -> None:
        phase_top = self.phase.max_speed_mph if self.phase else 0.0
        if phase_top <= self.settings.top_speed_mph:
            self._refuse("faster", self.words.TOP_SPEED_TODAY)
        else:
            self._refuse("faster", self.words.TOP_SPEED_SETTINGS)

    def refuse_slower(self, event: EventData) -> None:
        self._refuse("slower", self.words.SLOWEST)

    def _set_incline(self, pct: float, why: str) -> None:
        self.incline_pct = round(pct, 1)
        self._target_changed(why)
        self.say(self.words.incline_text(self.incline_pct), "answer")

    def apply_incline_up(self, event: EventData) -> None:
        self._set_incline(self.incline_pct + self.settings.incline_step_pct, "incline_up")

    def apply_incline_down(self, event: EventData) -> None:
        self._set_incline(self.incline_pct - self.settings.incline_step_pct, "incline_down")

    def refuse_incline_up(self, event: EventData) -> None:
        self._refuse("incline_up", self.words.MOST_INCLINE)

    def refuse_incline_down(self, event: EventData) -> None:
        self._refuse("incline_down", self.words.FLAT)

    # answers ---------------------------------------------------------------
    def answer_yes(self, event: EventData) -> None:
        if self.question == "turn":
            self._turned()
            self.say(self.words.CLOCK_RUNNING, "answer", Priority.ANSWER, remember=False)
        elif self.question == "pain_end":
            self.question = None
            self.stop()
        elif self.question == "checkin":
            self.answer_good(event)
        else:
            self._refuse("yes", self.words.NOT_ASKED)

    def answer_no(self, event: EventData) -> None:
        if self.question == "pain_end":
            self.question = None
            self.say(self.words.PAIN_CARRY_ON, "answer")
        elif self.question == "turn":
            self.say(self.words.TURN_AGAIN, "prompt")
        elif self.question == "checkin":
            self.say(self.words.CHECKIN, "prompt")
        else:
            self._refuse("no", self.words.NOT_ASKED)

    def answer_good(self, event: EventData) -> None:
        if self.question == "checkin":
            self.question = None
        self.say(self.words.CHECKIN_GOOD, "answer", remember=False)

    def report_pain(self, event: EventData) -> None:
        phrase = event.kwargs.get("phrase", "pain")
        self.emit(ev.PainReported(t=self.now, state=self.state.value, phrase=phrase))
        self.speed_mph = max(FLOOR_MPH, round(self.speed_mph - 2 * self.settings.speed_step_mph, 2))
        self._target_changed("pain")
        self.say(self.words.PAIN_SLOWER.format(speed=self._speed()), "answer",
                 Priority.URGENT)
        self._ask("pain_end", self.words.PAIN_OFFER_END)

    # things that work everywhere -------------------------------------------
    def say_repeat(self, event: EventData) -> None:
        self.say(self.last_said or self.words.NOTHING_TO_REPEAT, "repeat", remember=False)

    def say_time_left(self, event: EventData) -> None:
        phase = self.phase
        if phase is None or self.state in AT_REST or self.state is State.BRIEFING:
            self.say(self.words.NOT_STARTED if self.state is State.BRIEFING
                     else self.words.NOTHING_RUNNING, "answer", remember=False)
            return
        left = self.words.duration_text(max(0.0, phase.duration_s - self.phase_elapsed))
        text = self.words.TIME_LEFT_PAUSED if self.state is State.PAUSED else self.words.TIME_LEFT
        self.say(text.format(left=left, speed=self._speed()), "answer", remember=False)

    def _set_volume(self, step: float) -> None:
        new = round(min(1.0, max(0.1, self.volume + step)), 2)
        if new == self.volume:
            self.say(self.words.VOLUME_MAX if step > 0 else self.words.VOLUME_MIN, "answer", remember=False)
            return
        self.volume = new
        self.emit(ev.VolumeChanged(t=self.now, state=self.state.value, volume=new))
        self.say(self.words.VOLUME_UP if step > 0 else self.words.VOLUME_DOWN, "answer", remember=False)

    def say_louder(self, event: EventData) -> None:
        self._set_volume(+0.1)

    def say_quieter(self, event: EventData) -> None:
        self._set_volume(-0.1)

    def say_help(self, event: EventData) -> None:
        names = [c for c in self.accepted_commands() if c != STOP]
        if self.grammar is not None:
            words = [self.grammar.phrases[c][0] for c in names]
        else:
            words = [c.replace("_", " ") for c in names]
        self.say(self.words.HELP.format(words=self.words.HELP_JOIN.join(words)), "help",
                 remember=False)
        self.say(self.words.BRIEFING_STOP, "help", remember=False)
