"""Recorded time is walked time: waits for "ready", pauses and prompts never count as backward
time, whatever ends the session, and recovering a row never invents minutes (issue 18, 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from history_helpers import recorded_run
from workout_helpers import Run

from voicecoach.history import HistoryDB, SessionRecorder
from voicecoach.history.tally import Tally
from voicecoach.workout.machine import State
from voicecoach.workout.plan import programme_week

DEAD_PID = 2**30 + 7  # no such process: its 'running' row is recovered at the next open


def _walk_week_one(tmp_path: Path) -> tuple[Run, HistoryDB, SessionRecorder]:
    """Week 1 recorded: the briefing, the warm-up, a 30 s wait for "ready" at the turn, a
    20 s pause, then walking until 10 s before the end of the 300 s block."""
    run, db, recorder = recorded_run(tmp_path)
    run.through_briefing()
    while not run.coach.awaiting_turn or run.coach.state is not State.BACKWARD:
        run.at(run.t + 1)
    run.at(run.t + 30)  # the user takes 30 s to turn and say "ready"
    assert run.coach.awaiting_turn and run.coach.backward_s == 0
    run.say("yes")
    run.at(run.t + 100)
    run.say("pause")
    run.at(run.t + 20)
    run.say("resume")
    while run.coach.backward_s < 290:
        run.at(run.t + 1)
    assert run.coach.state is State.BACKWARD and run.coach.backward_s == 290
    return run, db, recorder


def test_sigterm_late_in_a_block_records_the_walked_time_only(tmp_path: Path) -> None:
    run, db, recorder = _walk_week_one(tmp_path)
    recorder.close("stopped")  # what the SIGTERM handler's unwinding does
    [s] = db.sessions()
    db.close()
    assert s.status == "stopped" and s.backward_s == run.coach.backward_s == 290


def test_sigkill_late_in_a_block_is_recovered_with_the_walked_time_only(tmp_path: Path) -> None:
    run, db, recorder = _walk_week_one(tmp_path)
    with db.transaction() as conn:  # the process dies here: nothing more is written
        conn.execute("UPDATE sessions SET pid = ?, proc_token = ''", (DEAD_PID,))
    db.close()
    with HistoryDB.open(tmp_path) as again:
        [s] = again.sessions()
    # heartbeats are at most 1 s apart: at most a second is lost, none is added
    assert s.status == "interrupted" and 289 <= s.backward_s <= run.coach.backward_s == 290


def test_a_typed_stop_and_the_tally_agree(tmp_path: Path) -> None:
    run, db, recorder = _walk_week_one(tmp_path)
    run.say("stop")
    [s] = db.sessions()
    events = db.events(s.id)
    db.close()
    assert s.status == "stopped" and s.backward_s == 290
    assert Tally.of(events).backward_s == pytest.approx(290)


@pytest.mark.parametrize("outcome", ["finished", "stopped"])
def test_recovering_an_ended_row_set_back_to_running_adds_nothing(tmp_path: Path,
                                                                   outcome: str) -> None:
    plan = programme_week(4)  # two blocks: every turn wait and block end is in the log
    with HistoryDB.open(tmp_path) as db:
        recorder = SessionRecorder.open(db, plan, "run")
        run = Run(plan)
        run.coach.listeners.append(recorder.on_event)
        if outcome == "finished":
            run.finish()
        else:
            run.into(State.RECOVERY).at(run.t + 30).say("stop")
        [before] = db.sessions()
        with db.transaction() as conn:
            conn.execute("UPDATE sessions SET status = 'running', pid = ?, proc_token = '',"
                         " last_t = last_t + 600", (DEAD_PID,))
    with HistoryDB.open(tmp_path) as db:
        [after] = db.sessions()
    assert before.status == after.status == outcome
    assert (after.backward_s, after.total_s) == (before.backward_s, before.total_s)
    assert after.backward_s == run.coach.backward_s > 0


@pytest.mark.parametrize("jump_h", [72.0, -5.0])
def test_a_wall_clock_jump_mid_session_dates_the_session_by_the_later_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jump_h: float) -> None:
    """A Pi has no real-time clock: a session said "start" to before NTP set the clock is
    stamped with the clock saved at the last shutdown, days early; NTP then jumps it in the
    middle. The session was stored days early (and could end before it began when the
    clock went back), so progression and the weekly totals placed it wrongly. The clock read
    at the end is the one to trust: the start is worked back from it by elapsed time."""
    from datetime import datetime, timedelta

    from voicecoach.events import SessionEnded
    from voicecoach.history import recorder as recorder_module
    from voicecoach.history import session_writer

    boot = datetime(2026, 3, 1, 18, 0).astimezone()
    now = [boot]
    monkeypatch.setattr(recorder_module, "wall_now", lambda: now[0])
    monkeypatch.setattr(session_writer, "wall_now", lambda: now[0])
    mono = [100.0]
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(2), "serve", wall_clock=lambda: mono[0])
        mono[0] += 600.0  # ten minutes walked; NTP moved the wall clock meanwhile
        now[0] = boot + timedelta(hours=jump_h, seconds=600)
        rec.on_event(SessionEnded(t=600.0, state="done", outcome="finished", backward_s=420.0,
                                  total_s=600.0, min_speed_mph=0.8, max_speed_mph=1.0,
                                  summary=""))
        [s] = db.sessions()
    assert s.started_at == boot + timedelta(hours=jump_h)
    assert s.ended_at == now[0]
