"""Runs a session end to end: command sources and a clock feed the coach; events go to sinks."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from voicecoach.clock import Clock, SimClock
from voicecoach.errors import OutputLost
from voicecoach.events import (
    BeltReported,
    CommandHeard,
    CommandRefused,
    CueSpoken,
    Event,
    PainReported,
    PhaseStarted,
    SessionEnded,
    StateChanged,
    TargetChanged,
)
from voicecoach.grammar import Grammar, normalise
from voicecoach.workout.coach import Coach
from voicecoach.workout.cues import speed_text
from voicecoach.workout.machine import TRIGGERS

_LOGGER = logging.getLogger(__name__)

#: Simulated seconds a session may run past its plan before the runner gives up (safety net).
OVERRUN_S = 3600.0


def clock_text(t: float) -> str:
    """Workout time as m:ss."""
    minutes, seconds = divmod(int(t), 60)
    return f"{minutes:3d}:{seconds:02d}"


class EventPrinter:
    """Human-readable console output: what the coach says, hears and does, with times."""

    def __init__(self, stream: TextIO, units: str = "mph") -> None:
        self.stream = stream
        self.units = units
        self._belt = ""

    def __call__(self, event: Event) -> None:
        line = self.format(event)
        if line:
            try:
                print(f"[{clock_text(event.t)}] {line}", file=self.stream, flush=True)
            except OSError as exc:  # a closed pipe, a full disk: the session stops, one line
                raise OutputLost(exc) from None

    def format(self, event: Event) -> str | None:
        if isinstance(event, CueSpoken):
            return f"coach: {event.text}"
        if isinstance(event, CommandHeard):
            return f"heard: {event.phrase} -> {event.command}"
        if isinstance(event, CommandRefused):
            return f"refused: {event.command} ({event.reason})"
        if isinstance(event, StateChanged):
            return f"state: {event.source or '-'} -> {event.dest} ({event.trigger})"
        if isinstance(event, PhaseStarted):
            return (f"phase {event.index + 1}: {event.kind}, {event.duration_s / 60:g} min, "
                    f"{speed_text(event.speed_mph, self.units)}")
        if isinstance(event, TargetChanged) and event.why != "phase":
            return f"target: {speed_text(event.speed_mph, self.units)}, incline {event.incline_pct:g}%"
        if isinstance(event, PainReported):
            return f"pain reported: {event.phrase}"
        if isinstance(event, BeltReported):
            unit = "km/h" if self.units == "kmh" else "mph"
            line = f"belt: {speed_text(event.speed_mph, self.units).split()[0]} {unit}"
            line += f", incline {event.incline_pct:g}%" if event.incline_pct else ""
            if line == self._belt:  # a distance report: nothing new to show
                return None
            self._belt = line
            return line
        if isinstance(event, SessionEnded):
            return f"session {event.outcome}: {event.backward_s / 60:.1f} min backward"
        return None


class JsonLines:
    """One JSON line per event (``--json-events``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        try:
            print(event.to_json(), file=self.stream, flush=True)
        except OSError as exc:
            raise OutputLost(exc) from None


def parse_typed(text: str, grammar: Grammar) -> str | None:
    """A typed line -> command name: any grammar phrase, or a command's own name."""
    norm = normalise(text)
    command = grammar.lookup(norm)
    if command:
        return command
    name = norm.replace(" ", "_")
    if name in grammar.commands and name in TRIGGERS:
        return name
    return None


@dataclass(frozen=True)
class Scripted:
    """A command to give at a workout time (the demo and tests)."""

    t: float
    command: str


def run_script(coach: Coach, script: Iterable[Scripted], *, step_s: float = 0.5,
               pace_s: float = 0.0, answer_turns_after: float | None = 3.0) -> None:
    """Drive ``coach`` on a simulated clock with scripted commands until the session ends.

    ``pace_s`` real seconds are slept per step (0 runs as fast as possible); turn prompts are
    answered "yes" after ``answer_turns_after`` seconds, as a user on the belt would.
    """
    clock = SimClock()
    pending = sorted(script, key=lambda s: s.t)
    if coach.state.value == "idle":
        coach.begin(clock.now())
    limit = coach.plan.total_s + OVERRUN_S
    while not coach.done and clock.now() < limit:
        now = clock.advance(step_s)
        while pending and pending[0].t <= now:
            coach.command(pending.pop(0).command, now, source="script")
        coach.tick(now)
        if (answer_turns_after is not None and coach.awaiting_turn
                and now - coach.question_t >= answer_turns_after):
            coach.command("yes", now, phrase="ready", source="script")
        if pace_s:
            time.sleep(pace_s)


def _read_lines(stream: TextIO, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def run_typed(coach: Coach, grammar: Grammar, clock: Clock, stream: TextIO,
              err: TextIO = sys.stderr, poll_s: float = 0.05) -> str:
    """Drive ``coach`` with commands typed on ``stream`` (stdin) on a real clock.

    Returns why the loop ended: "done", or "input-ended" when the input closed before the
    session could go on without answers (during the briefing).
    """
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(stream, lines), daemon=True).start()
    coach.begin(clock.now())
    input_open = True
    while not coach.done:
        now = clock.now()
        while input_open:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                input_open = False
                break
            if not line.strip():
                continue
            command = parse_typed(line, grammar)
            if command is None:
                known = ", ".join(p for c in coach.accepted_commands() for p in grammar.phrases[c][:1])
                print(f"voicecoach: unknown command {line.strip()!r}; type one of: {known}",
                      file=err, flush=True)
                continue
            coach.command(command, now, phrase=normalise(line), source="typed")
        coach.tick(now)
        if not input_open and coach.state.value in ("idle", "briefing"):
            return "input-ended"
        time.sleep(poll_s)
    return "done"
