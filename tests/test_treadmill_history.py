"""What the treadmill measured goes into the history, and progression plans from the walked speed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from belt_helpers import BeltRun, with_quirks

from voicecoach.history.db import HistoryDB
from voicecoach.history.progression import plan_next_session
from voicecoach.history.recorder import SessionRecorder
from voicecoach.settings import CoachSettings
from voicecoach.workout.plan import programme_week

WEEK = 3  # 10 backward minutes at 1.0 mph (window 1.0 - 1.3)


def _recorded(tmp_path: Path, run: BeltRun, ended_m: list[float] | None = None) -> HistoryDB:
    """Run the session to its end with the history recording it; ``ended_m`` gets the belt's
    distance counter at the moment the session ended."""
    ended = [] if ended_m is None else ended_m
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, run.coach.plan, "run",
                                    started_at=dt.datetime(2026, 11, 30, 9, 0))
    run.coach.listeners.append(recorder.on_event)
    run.coach.tick_hooks.append(recorder.heartbeat)
    run.coach.listeners.append(lambda e: ended.append(run.model.distance_m)
                               if e.type.value == "session_ended" else None)
    run.walking().finish()
    recorder.close()
    return db


def test_measured_belt_speed_incline_and_distance_are_recorded(tmp_path: Path) -> None:
    run = BeltRun(plan=programme_week(WEEK, CoachSettings()))
    ended_m: list[float] = []
    with _recorded(tmp_path, run, ended_m) as db:
        [session] = db.sessions()
    assert session.status == "finished"
    assert session.belt_speed_mph == pytest.approx(1.0, abs=0.05)
    assert session.belt_max_speed_mph == pytest.approx(1.0, abs=0.06)
    assert session.belt_incline_pct == pytest.approx(0.0)
    [walked_m] = ended_m
    assert session.belt_distance_m == pytest.approx(walked_m, abs=5.0)
    assert session.belt_distance_m > 10 * 60 * 1.0 * 0.44704 * 0.9  # ten minutes at 1.0 mph


def test_progression_goes_on_from_the_walked_speed(tmp_path: Path) -> None:
    # A pad that refuses speed control: the belt ran at its slowest (0.8 km/h, 0.5 mph) while
    # the coach asked for 1.0 mph. Next time starts from what was walked, and says so.
    run = BeltRun(with_quirks(refuses_speed=True), plan=programme_week(WEEK, CoachSettings()))
    with _recorded(tmp_path, run) as db:
        [session] = db.sessions()
        assert session.backward_speed_mph == pytest.approx(1.0)  # the target
        assert session.belt_speed_mph == pytest.approx(0.5, abs=0.02)  # what was walked
        nxt = plan_next_session(db, CoachSettings(), dt.date(2026, 12, 1))
    backward = [p for p in nxt.phases if p.kind == "backward"]
    assert backward[0].speed_mph < 1.0  # not the 1.1 a target-only history would give
    assert any("at 0.5 miles" in note or "0.5 mph" in note for note in nxt.notes), nxt.notes


def test_without_a_treadmill_nothing_is_measured(tmp_path: Path) -> None:
    with HistoryDB.open(tmp_path) as db:
        recorder = SessionRecorder.open(db, programme_week(1, CoachSettings()), "run")
        recorder.close("stopped")
        [session] = db.sessions()
    assert session.belt_speed_mph is None and session.belt_distance_m is None


def test_a_pause_the_treadmill_did_not_take_is_in_the_history_and_nothing_is_lost(
        tmp_path: Path) -> None:
    """A pause answered "failed" for a while, then taken: the history (real SQLite) has the
    pause, the treadmill's failure naming it, the warning said once, and the session walked to
    its end with the belt's distance."""
    from belt_helpers import BELT_PLAN

    from voicecoach.device import sayings

    run = BeltRun(plan=BELT_PLAN)
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, run.coach.plan, "run",
                                    started_at=dt.datetime(2026, 12, 6, 9, 0))
    run.coach.listeners.append(recorder.on_event)
    run.coach.tick_hooks.append(recorder.heartbeat)
    run.walking()
    run.sim.schedule(run.t, "fail", 2.0)
    run.say("pause")
    run.at(run.t + 10)
    assert run.belt_mph() < 0.01
    run.say("resume")
    run.finish()
    recorder.close()
    with db:
        [session] = db.sessions()
        events = db.events(session.id)
    assert session.status == "finished" and session.belt_distance_m
    assert any(e["type"] == "state_changed" and e["dest"] == "paused" for e in events)
    assert any(e["type"] == "device_problem" and e["extra"].get("command") == "pause"
               for e in events)
    assert sum(e["type"] == "cue_spoken" and e["text"] == sayings.STOP_UNCONFIRMED
               for e in events) == 1
