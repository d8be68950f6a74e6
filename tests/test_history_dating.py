"""Sessions on a device whose clock may be wrong (a Raspberry Pi has no real-time clock):
listed in the order they were recorded, and an impossible date is "date unknown", never a
reason to move a session (voicecoach.history.dating)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from history_helpers import Device, record_finished

from voicecoach.cli import main
from voicecoach.events import SessionEnded
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder, dating
from voicecoach.history.schema import MIGRATIONS, SCHEMA_VERSION, user_version
from voicecoach.workout.plan import programme_week

#: What a Pi's clock says before NTP has set it, when nothing saved the time at shutdown.
UNSET = dt.datetime(1970, 1, 1, 0, 1).astimezone()


def record(db: HistoryDB, started: dt.datetime, week: int = 1, backward_s: float = 300.0) -> int:
    """One finished session started at ``started`` (as the clock said then)."""
    return record_finished(db, week, backward_s, started=started, speeds_mph=(0.5, 0.5, 0.8),
                           close=False)


def day(n: int, hour: int = 7) -> dt.datetime:
    return dt.datetime(2026, 12, n, hour, 30).astimezone()


def test_sessions_are_listed_in_the_order_they_were_recorded(tmp_path: Path) -> None:
    """A session recorded before NTP set the clock is stamped 1970: it sorted as the oldest
    of all, before sessions walked weeks earlier. It is the third one walked, and its date
    is unknown."""
    with HistoryDB.open(tmp_path) as db:
        ids = [record(db, day(1)), record(db, day(3)), record(db, UNSET), record(db, day(5))]
        sessions = db.sessions()
    assert [s.id for s in sessions] == ids
    assert [s.date_known for s in sessions] == [True, True, False, True]


def test_a_clock_behind_the_sessions_before_it_is_date_unknown(tmp_path: Path) -> None:
    """fake-hwclock restores a time saved long ago (an SD card restored from an old image):
    past 2026, but before the sessions already recorded."""
    with HistoryDB.open(tmp_path) as db:
        record(db, day(1))
        record(db, day(3))
        record(db, dt.datetime(2026, 6, 1, 9, 0).astimezone())
        record(db, day(4))
        assert [s.date_known for s in db.sessions()] == [True, True, False, True]


def test_one_date_ahead_does_not_make_the_sessions_after_it_unknown(tmp_path: Path) -> None:
    """A clock once set ahead (a typo in `date -s`): that session's date is the odd one out,
    not those of every session recorded after it."""
    with HistoryDB.open(tmp_path) as db:
        for started in (day(1), dt.datetime(2031, 1, 1, 9, 0).astimezone(), day(3), day(5)):
            record(db, started)
        assert [s.date_known for s in db.sessions()] == [True, False, True, True]


def test_two_sessions_that_disagree_keep_the_earlier_recorded_date(tmp_path: Path) -> None:
    """With nothing else to go by, the clock that is behind (the usual fault) is the later
    one."""
    with HistoryDB.open(tmp_path) as db:
        record(db, day(5))
        record(db, day(2))
        assert [s.date_known for s in db.sessions()] == [True, False]


def test_history_shows_an_unknown_date_in_its_place_and_totals_it_under_no_week(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HistoryDB.open(tmp_path) as db:
        record(db, day(1))
        record(db, UNSET)
        record(db, day(3))
    assert main(["--data-dir", str(tmp_path), "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:16] for line in lines[1:4]] == ["2026-12-01 07:30", "date unknown    ",
                                                  "2026-12-03 07:30"]
    weeks = [line.split()[0] for line in lines[lines.index("") + 2:]]
    assert weeks == ["2026-W49", "unknown"] and not any("1970" in line for line in lines)
    assert main(["--data-dir", str(tmp_path), "history", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["date_known"] for s in data["sessions"]] == [True, False, True]
    assert [w["sessions"] for w in data["weekly"]] == [2, 1]
    target = tmp_path / "out.csv"
    assert main(["--data-dir", str(tmp_path), "history", "--export", str(target)]) == 0
    with target.open(newline="", encoding="utf-8") as handle:
        assert [r["date_known"] for r in csv.DictReader(handle)] == ["True", "False", "True"]


def test_weeks_keeps_an_unknown_date_recorded_between_recent_sessions(tmp_path: Path) -> None:
    """``--weeks N`` keeps a session of unknown date unless a session recorded after it is
    already older than the window (then it is older too)."""
    now = dt.datetime.now().astimezone()
    with HistoryDB.open(tmp_path) as db:
        old = record(db, now - dt.timedelta(days=60))
        lost = record(db, UNSET)
        record(db, now - dt.timedelta(days=40))
        recent = record(db, UNSET)
        last = record(db, now - dt.timedelta(days=1))
        since = now - dt.timedelta(weeks=2)
        assert old != lost and [s.id for s in db.sessions(since=since)] == [recent, last]


# ---------------------------------------------------------------- re-dating within a boot
def walk_now(db: HistoryDB, device: Device, seconds: float = 600.0) -> int:
    """A session started now by the wall clock (as `run` and `serve` start one), ``seconds``
    long."""
    rec = SessionRecorder.open(db, programme_week(2), "serve", wall_clock=device.monotonic)
    device.wait(seconds)
    rec.on_event(SessionEnded(t=seconds, state="done", outcome="finished", backward_s=420.0,
                              total_s=seconds, min_speed_mph=0.8, max_speed_mph=1.0,
                              summary=""))
    rec.close()
    return rec.session_id


#: fake-hwclock's time at boot: the last shutdown, two evenings before the real morning.
SAVED = dt.datetime(2026, 12, 1, 20, 0).astimezone()
REAL = dt.datetime(2026, 12, 3, 7, 30).astimezone()


@pytest.mark.parametrize("clock_at_boot", [SAVED, UNSET])
def test_a_session_walked_before_ntp_is_redated_once_the_clock_is_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        clock_at_boot: dt.datetime) -> None:
    """The session began and ended before NTP set the clock: it kept the boot clock's date
    (two days early, or 1970) for ever. Its start and the seconds since boot were stored,
    so once the clock is set (the next start of the same boot: `serve`'s next "start",
    `history`), its dates are worked out again from them."""
    device = Device(monkeypatch, clock_at_boot)
    with HistoryDB.open(tmp_path) as db:
        walk_now(db, device)
    device.wait(300)
    device.wall = REAL + dt.timedelta(seconds=900)  # NTP: 15 min after the session began
    with HistoryDB.open(tmp_path) as db:
        [s] = db.sessions()
    assert (s.started_at, s.ended_at, s.date_known) == (
        REAL, REAL + dt.timedelta(seconds=600), True)
    assert "the clock was set since session 1" in caplog.text


def test_a_session_start_redates_this_boots_sessions_before_it_plans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` and `serve`'s "start" open the history through ``recorded_session`` (which does
    not wait for a locked history): that opening too dates this boot's earlier sessions
    again once the clock is set, before the next session is planned from them."""
    from voicecoach.commands._common import recorded_session
    from voicecoach.settings import Settings

    device = Device(monkeypatch, SAVED)
    with HistoryDB.open(tmp_path) as db:
        walk_now(db, device)
    device.wait(300)
    device.wall = REAL + dt.timedelta(seconds=900)  # NTP: 15 min after the session began
    with recorded_session(Settings(data_dir=tmp_path), None, "serve") as (_plan, recorder):
        recorder.on_event(SessionEnded(t=1.0, state="done", outcome="stopped", backward_s=0.0,
                                       total_s=1.0, min_speed_mph=0.0, max_speed_mph=0.0,
                                       summary=""))
        first = recorder.db.sessions()[0]
    assert (first.started_at, first.date_known) == (REAL, True)


def test_only_this_boot_s_sessions_with_a_clock_start_are_redated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session of an earlier boot cannot be placed (its seconds since boot mean nothing
    now), nor one whose start the caller gave (an import, a replay): both are left alone,
    and a session already dated by the right clock does not move."""
    device = Device(monkeypatch, SAVED, boot_id="boot-0")
    with HistoryDB.open(tmp_path) as db:
        other_boot = walk_now(db, device)
        device.boot_id, device.since_boot = "boot-1", 30.0
        given = record(db, SAVED + dt.timedelta(hours=1))
        stale = walk_now(db, device)
        device.wall = REAL
        right = walk_now(db, device)
        before = {s.id: s.started_at for s in db.sessions()}
    device.wait(60)
    with HistoryDB.open(tmp_path) as db:
        after = {s.id: s.started_at for s in db.sessions()}
    assert after[other_boot] == before[other_boot] and after[given] == before[given]
    assert after[right] == before[right] == REAL
    assert after[stale] == REAL - dt.timedelta(seconds=600)


def test_a_v3_history_is_migrated_and_its_sessions_stay_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema v4 only adds the boot columns: a v3 file keeps every row, and a row written
    before them is never re-dated."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    for step in MIGRATIONS[:3]:
        step(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO sessions (started_at, plan, week, source, status, ended_at,"
                 " backward_s, total_s) VALUES ('2026-11-30T07:30:00+00:00', 'week 1', 1,"
                 " 'run', 'finished', '2026-11-30T07:40:00+00:00', 300, 600)")
    conn.commit()
    conn.close()
    Device(monkeypatch, REAL)
    with HistoryDB.open(tmp_path) as db:
        assert user_version(db.conn) == SCHEMA_VERSION == 4
        [s] = db.sessions()
        assert db.query("SELECT boot_id, boot_s FROM sessions") == [("", None)]
    assert s.started_at == dt.datetime(2026, 11, 30, 7, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("stored", ["soon", -5.0, 1e300])
def test_a_boot_time_that_cannot_be_read_is_no_boot_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: object) -> None:
    """Progression counts the time since a session of this boot from its stored seconds
    since boot: a value no version wrote (a word, below zero, beyond any uptime) is read as
    no boot clock at all (the dose is held, never a day made up), and counted as a row with
    an impossible value."""
    from voicecoach.history import plan_next_session
    from voicecoach.settings import CoachSettings

    device = Device(monkeypatch, UNSET)
    with HistoryDB.open(tmp_path) as db:
        walk_now(db, device)
        db.conn.execute("UPDATE sessions SET boot_s = ?", (stored,))
        device.wait(30 * 3600)
        [s] = db.sessions()
        assert (s.boot_id, s.boot_s, db.unreadable_rows()) == ("", None, 1)
        plan = plan_next_session(db, CoachSettings(), device.wall.date())
    assert plan.notes[0] == "I cannot tell the date yet, so we keep the same dose."


def test_a_session_end_not_written_yet_is_dated_as_its_write_will_date_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NTP sets the clock while a session walked from 1970 ends with the history held by
    another program, and "start" plans before the lock is let go: the plan counts that
    session (from the recorder's memory) as its end will store it, its start worked back
    from the clock set by the time that passed, not at 1970 (date unknown: the plan went by
    the boot clock, "You walked less than a day ago", where the written one goes by the date,
    "You already walked today"). The same date, and the same plan, before and after the end
    is written."""
    from voicecoach.events import PhaseStarted
    from voicecoach.history import plan_next_session, session_writer
    from voicecoach.history.recorder import sessions_for_plan
    from voicecoach.settings import CoachSettings

    monkeypatch.setattr(session_writer, "SESSION_BUSY_MS", 5)
    device = Device(monkeypatch, UNSET)
    db = HistoryDB.open(tmp_path)
    recorder = SessionRecorder.open(db, programme_week(1), "run", wall_clock=device.monotonic)
    recorder.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                                   duration_s=300.0, speed_mph=0.5, min_speed_mph=0.5,
                                   max_speed_mph=0.8, incline_pct=0.0))
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    device.wait(120)
    device.wall = day(5, 8)  # NTP
    device.wait(180)
    recorder.on_event(SessionEnded(t=300.0, state="done", outcome="finished", backward_s=300.0,
                                   total_s=300.0, min_speed_mph=0.5, max_speed_mph=0.5,
                                   summary=""))
    assert not recorder.end("finished")  # held: the end waits in memory
    boot = (device.boot_id, device.since_boot)

    def planned() -> tuple[dt.datetime, bool, list[str]]:
        [session] = dating.in_recorded_order(sessions_for_plan(db))
        plan = plan_next_session([session], CoachSettings(), device.wall.date(), boot=boot)
        return session.started_at, session.date_known, plan.notes

    pending = planned()
    other.execute("COMMIT")
    other.close()
    recorder.heartbeat(400.0)
    assert recorder.closed and not recorder.incomplete
    written = planned()
    db.close()
    assert written[:2] == (day(5, 8) - dt.timedelta(seconds=120), True)
    assert pending == written
