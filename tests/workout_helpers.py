"""Drive a real Coach on a simulated clock for the workout tests."""

from __future__ import annotations

from voicecoach.events import Event
from voicecoach.grammar import load_grammar
from voicecoach.settings import CoachSettings
from voicecoach.workout.coach import Coach
from voicecoach.workout.machine import State
from voicecoach.workout.plan import Phase, Plan

ALL_KINDS_PLAN = Plan("all kinds", (
    Phase("warmup", 120.0, 1.2, 1.0, 2.0, cues="warmup"),
    Phase("backward", 180.0, 0.6, 0.5, 0.8, 0.0, 2.0, "technique"),
    Phase("recovery", 60.0, 1.2, 0.8, 1.8, cues="cooldown"),
    Phase("backward", 180.0, 0.6, 0.5, 0.8, 0.0, 2.0, "technique"),
    Phase("cooldown", 120.0, 1.2, 0.8, 1.8, cues="cooldown"),
))


class Run:
    """A coach, the events it emitted, and a simulated clock you step by hand."""

    def __init__(self, plan: Plan = ALL_KINDS_PLAN, settings: CoachSettings | None = None):
        self.events: list[Event] = []
        self.coach = Coach(plan, settings or CoachSettings(), load_grammar("en"),
                           [self.events.append])
        self.t = 0.0

    def at(self, seconds: float) -> Run:
        """Step the clock (1 s steps) up to ``seconds``."""
        while self.t + 1.0 <= seconds:
            self.t += 1.0
            self.coach.tick(self.t)
        return self

    def say(self, command: str) -> bool:
        return self.coach.command(command, self.t, source="test")

    def through_briefing(self) -> Run:
        self.coach.begin(self.t)
        for _ in range(3):
            self.at(self.t + 2)
            self.say("yes")
        return self

    def answer_turn(self) -> Run:
        self.at(self.t + 2)
        assert self.coach.awaiting_turn
        self.say("yes")
        return self

    def into(self, state: State) -> Run:
        """Bring the coach into ``state`` by the real route."""
        if state is State.IDLE:
            return self
        if state in (State.FINISHED,):
            return self.finish()
        self.through_briefing() if state is not State.BRIEFING else self.coach.begin(self.t)
        if state in (State.BRIEFING, State.WARMUP):
            return self
        if state is State.STOPPED:
            self.say("stop")
            return self
        if state is State.PAUSED:
            self.say("pause")
            return self
        while self.coach.state is not state:
            self.at(self.t + 1)
            if self.coach.awaiting_turn and self.coach.state is not state:
                self.say("yes")
        return self

    def finish(self, limit: float = 10_000) -> Run:
        if self.coach.state is State.IDLE:
            self.through_briefing()
        while not self.coach.done and self.t < limit:
            self.at(self.t + 1)
            if self.coach.awaiting_turn and self.t - self.coach.question_t >= 2:
                self.say("yes")
        return self

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]
