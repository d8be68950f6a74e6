"""The device-fault tests' (test_loop_faults.py, test_listen_faults.py) walk in the simulated
room and what they read back: the history's sessions and device problems, the fault log lines."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from replay_helpers import PLAN

from voicecoach.commands._common import recorded_session
from voicecoach.device import loop_faults
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.events import Event
from voicecoach.grammar import load_grammar
from voicecoach.lab.cached import CachedRenderer
from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, PoliteUser
from voicecoach.settings import Settings, SpeechSettings, TreadmillSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.machine import State
from voicecoach.workout.plan import Plan


def pocketsphinx() -> Any:
    from voicecoach.listening.engines import make_recogniser

    # faults are under test here, not recognition: pocketsphinx hears the fixture voice's
    # briefing answers reliably (as in test_treadmill_replay)
    return make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))


def sessions(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "history.sqlite3") as db:
        return list(db.execute("SELECT source, status FROM sessions ORDER BY id"))


def problems(home: Path) -> list[tuple[int, dict[str, Any]]]:
    with sqlite3.connect(home / "history.sqlite3") as db:
        rows = db.execute("SELECT session_id, data FROM events WHERE type = 'device_problem' "
                          "ORDER BY session_id, seq")
        return [(sid, json.loads(data)) for sid, data in rows]


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == loop_faults.__name__ and r.levelno >= logging.WARNING]


def no_traceback_above_debug(caplog: pytest.LogCaptureFixture, err: str) -> None:
    assert "Traceback" not in err
    loud = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]
    assert loud == []


@dataclass
class Walk:
    """A served walk in the simulated room (no echo: the echo is not under test) on a driven
    simulated treadmill, a polite fixture-voice user who says "start" again once the coach is
    back to idle after a fault, and the belt's speed at every chunk."""

    settings: Settings
    renderer: CachedRenderer
    speaker: EchoWavSpeaker
    room: ClosedLoopSource
    sim: SimTreadmill
    events: list[Event]
    loop: DeviceLoop
    polite: PoliteUser
    speeds: list[tuple[float, float]] = field(default_factory=list)  # (audio time, km/h)
    fault: dict[str, float] = field(default_factory=dict)  # when it came, the belt's speed


def walk(home: Path, seconds: float = 130.0, plan: Plan = PLAN) -> Walk:
    """:class:`Walk` of ``plan`` over ``seconds`` of audio with its history in ``home``."""
    settings = Settings(data_dir=home)
    clock = AudioClock()
    renderer = CachedRenderer(EspeakNgRenderer())
    speaker = EchoWavSpeaker(renderer, clock=clock)
    room = ClosedLoopSource(speaker, seconds, echo_gain_db=-200.0)
    sources = iter([room])
    sim = SimTreadmill()
    events: list[Event] = []
    loop = DeviceLoop(settings, load_grammar("en"), pocketsphinx(), speaker,
                      lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=plan,
                      listeners=[events.append], clock=clock, canceller=None, treadmill=sim,
                      treadmill_settings=TreadmillSettings(control="drive"))
    w = Walk(settings, renderer, speaker, room, sim, events, loop,
             PoliteUser(loop.coach, speaker, room))

    def react(t: float) -> None:
        w.speeds.append((t, sim.model.speed_kmh))
        if w.fault and w.polite._started and loop.coach.state is State.IDLE:
            w.polite._started = False  # the user says "start" again after the fault
        w.polite(t)
    room.react = react
    return w
