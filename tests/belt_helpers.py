"""A real Coach and BeltController on a simulated treadmill, stepped on workout time."""

from __future__ import annotations

from dataclasses import replace

from voicecoach.device.belt import BeltController
from voicecoach.events import BeltReported, CueSpoken, Event
from voicecoach.grammar import load_grammar
from voicecoach.settings import CoachSettings, TreadmillSettings
from voicecoach.treadmill import ftms
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op
from voicecoach.treadmill.sim import BeltModel, SimTreadmill
from voicecoach.workout.coach import Coach
from voicecoach.workout.plan import Phase, Plan

BELT_PLAN = Plan("belt", (
    Phase("warmup", 60.0, 1.0, 0.8, 1.5, cues="warmup"),
    Phase("backward", 120.0, 0.6, 0.5, 1.0, 0.0, 2.0, "technique"),
    Phase("cooldown", 40.0, 1.0, 0.8, 1.5, cues="cooldown"),
))
DRIVE = TreadmillSettings(control="drive")


class BeltRun:
    """Coach + controller + SimTreadmill; ``at(t)`` steps 0.1 s at a time up to ``t``."""

    def __init__(self, model: BeltModel | None = None, plan: Plan = BELT_PLAN,
                 settings: TreadmillSettings = DRIVE, coach: CoachSettings | None = None,
                 sim: SimTreadmill | None = None) -> None:
        self.events: list[Event] = []
        self.sim = sim or SimTreadmill(model or BeltModel())
        self.coach = Coach(plan, coach or CoachSettings(), load_grammar("en"), [self.events.append],
                           followers=[BeltController.follow(self.sim, settings)])
        self.belt = self.coach.followers[0]
        assert isinstance(self.belt, BeltController)
        self.t = 0.0

    @property
    def model(self) -> BeltModel:
        return self.sim.model

    def at(self, t: float) -> BeltRun:
        while self.t < t - 1e-9:
            self.t = round(self.t + 0.1, 3)
            self.coach.tick(self.t)
        return self

    def say(self, command: str, phrase: str = "") -> bool:
        return self.coach.command(command, self.t, phrase=phrase, source="test")

    def briefed(self) -> BeltRun:
        self.coach.begin(self.t)
        for _ in range(3):
            self.at(self.t + 2)
            self.say("yes")
        return self

    def started_again(self) -> BeltRun:
        """A new session by voice after the last one ended: "start", the briefing's three
        answers, then "ready"."""
        self.coach.reset()
        self.say("start")
        for _ in range(3):
            self.at(self.t + 2)
            self.say("yes")
        self.at(self.t + 2)
        self.say("yes", "ready")
        return self

    def ready(self) -> BeltRun:
        self.at(self.t + 2)
        assert self.coach.awaiting_turn
        self.say("yes", "ready")
        return self

    def walking(self) -> BeltRun:
        """Briefed, ready, and the belt at the warm-up speed."""
        return self.briefed().ready().at(self.t + 6)

    def finish(self, limit: float = 2000.0) -> BeltRun:
        while not self.coach.done and self.t < limit:
            self.at(self.t + 1)
            if self.coach.awaiting_turn and self.t - self.coach.question_t >= 2:
                self.say("yes", "ready")
        return self.at(self.t + 15)

    # ------------------------------------------------------------------ what happened
    def writes(self, op: Op | None = None) -> list[tuple[float, ftms.Command]]:
        return [(t, c) for t, c in self.sim.log.writes if op is None or c.op == op]

    def speeds_written_mph(self) -> list[float]:
        return [round(float(c.value or 0) / KMH_PER_MPH, 1) for _, c in
                self.writes(Op.SET_TARGET_SPEED)]

    def said(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, CueSpoken)]

    def belt_mph(self) -> float:
        return self.model.speed_kmh / KMH_PER_MPH

    def reported(self) -> list[float]:
        return [e.speed_mph for e in self.events if isinstance(e, BeltReported)]


def with_quirks(**quirks: bool) -> BeltModel:
    from voicecoach.treadmill.sim import Quirks

    return BeltModel(quirks=replace(Quirks(), **quirks))
