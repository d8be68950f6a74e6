"""Sessions recorded into a real history for the history tests: one walked by the coach
(:func:`recorded_run`) and one finished in a few events (:func:`record_finished`); a Pi's
clocks moved by hand (:class:`Device`)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest
from workout_helpers import Run

from voicecoach.events import CueSpoken, PhaseStarted, SessionEnded
from voicecoach.history import HistoryDB, SessionRecorder, dating
from voicecoach.history import recorder as recorder_module
from voicecoach.workout.plan import programme_week


def recorded_run(data: Path) -> tuple[Run, HistoryDB, SessionRecorder]:
    """A week-1 session being recorded into ``data``'s history by the coach's own events and
    heartbeats (the recorder's wall clock counts one second a call)."""
    plan = programme_week(1)
    db = HistoryDB.open(data)
    db.conn.execute("PRAGMA synchronous = OFF")  # no fsync per heartbeat: these test logic
    wall = itertools.count()
    recorder = SessionRecorder.open(db, plan, "run", wall_clock=lambda: float(next(wall)))
    run = Run(plan)
    run.coach.listeners.append(recorder.on_event)
    run.coach.tick_hooks.append(recorder.heartbeat)
    return run, db, recorder


def record_finished(db: HistoryDB, week: int, backward_s: float, *,
                    started: dt.datetime | None = None,
                    speeds_mph: tuple[float, float, float] = (0.8, 0.8, 1.0),
                    close: bool = True) -> int:
    """One finished session of ``week`` with ``backward_s`` walked, started at ``started`` (as
    the clock said then; None: now); ``speeds_mph``: the block's speed, its lowest and highest
    allowed (the ending reports the first two)."""
    speed, low, high = speeds_mph
    rec = SessionRecorder.open(db, programme_week(week), "run", started_at=started)
    rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                              duration_s=backward_s, speed_mph=speed, min_speed_mph=low,
                              max_speed_mph=high, incline_pct=0.0))
    rec.on_event(CueSpoken(t=backward_s, state="backward", text="ok", kind="cue"))
    rec.on_event(SessionEnded(t=backward_s, state="done", outcome="finished",
                              backward_s=backward_s, total_s=backward_s, min_speed_mph=speed,
                              max_speed_mph=speed, summary=""))
    if close:
        rec.close()
    return rec.session_id


class Device:
    """A Pi's clocks, moved by hand: the wall clock (set by NTP when the test says so) and
    the seconds since boot, which only go forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, wall: dt.datetime,
                 boot_id: str = "boot-1") -> None:
        self.wall, self.since_boot, self.boot_id = wall, 40.0, boot_id
        monkeypatch.setattr(dating, "wall_now", lambda: self.wall)
        monkeypatch.setattr(recorder_module, "wall_now", lambda: self.wall)
        monkeypatch.setattr(dating, "boot_now", lambda: (self.boot_id, self.since_boot))

    def wait(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.since_boot += seconds

    def monotonic(self) -> float:
        return self.since_boot
