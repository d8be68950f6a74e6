"""A history file replaced while a session writes it (a backup restored, `mv`, `cp` to a
temporary name and renamed): the session is added to the file now at the path, or, when that
is not a history, kept beside it; the user's file is never overwritten
(voicecoach.history.replaced)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest
from history_helpers import record_finished, recorded_run
from workout_helpers import Run

from voicecoach.errors import VoicecoachError
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder
from voicecoach.history.replaced import KEPT_SUFFIX, PART_SUFFIX
from voicecoach.history.schema import SCHEMA_VERSION
from voicecoach.workout.machine import State


def walk_with_the_file_replaced(data: Path, replacement: Path) -> tuple[Run, SessionRecorder]:
    """Record a session into ``data`` with an earlier one there; ``replacement`` is renamed
    over the history 20 s into the briefing's end, and the session walked to its end."""
    with HistoryDB.open(data) as db:
        record_finished(db, 1, 300.0)
    run, db, recorder = recorded_run(data)
    run.through_briefing().at(run.t + 20)
    os.replace(replacement, data / DB_NAME)
    run.into(State.BACKWARD).at(run.t + 30)
    run.finish()
    recorder.close()
    db.close()
    return run, recorder


def test_a_history_replaced_by_another_gets_the_session_added(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A backup restored over the history mid-session: the session went on into the old,
    unlinked file and was lost when it closed. It is added to the restored history, whose
    own sessions stay as they were."""
    backup = tmp_path / "backup"
    with HistoryDB.open(backup) as db:
        restored = [record_finished(db, 2, 420.0), record_finished(db, 2, 400.0)]
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        run, recorder = walk_with_the_file_replaced(data, backup / DB_NAME)
    assert not recorder.incomplete
    with HistoryDB.open(data) as db:
        sessions = db.sessions()
        assert [(s.id, s.backward_s) for s in sessions[:2]] == list(
            zip(restored, (420.0, 400.0), strict=True))
        [walked] = sessions[2:]
        seqs = [r[0] for r in db.conn.execute(
            "SELECT seq FROM events WHERE session_id = ? ORDER BY seq", (walked.id,))]
        assert db.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert recorder.session_id == walked.id == 3
    assert walked.status == "finished" and walked.backward_s == run.coach.backward_s == 300
    assert seqs == list(range(1, recorder.seq + 1))  # the events before the replacement too
    [line] = [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()]
    assert "added to it as session 3" in line
    assert not [n for n in os.listdir(data) if n.endswith((PART_SUFFIX, KEPT_SUFFIX))]


def _not_a_history(path: Path) -> None:
    path.write_text("date,minutes\n2026-12-01,5\n", encoding="utf-8")


def _newer_history(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make", [_not_a_history, _newer_history], ids=["csv", "newer"])
def test_a_history_replaced_by_something_else_is_left_alone_and_the_session_kept_beside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, make) -> None:  # type: ignore[no-untyped-def]
    """A file that is not a history this version can write (a CSV saved over it, a newer
    voicecoach's history): it is never written; the session, with the history it replaced,
    goes to a file beside it, and one line says where."""
    other = tmp_path / "other"
    make(other)
    before = other.read_bytes()
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        run, recorder = walk_with_the_file_replaced(data, other)
    assert not recorder.incomplete
    assert (data / DB_NAME).read_bytes() == before
    kept = data / (DB_NAME + KEPT_SUFFIX)
    with HistoryDB.open_file(kept) as db:
        earlier, walked = db.sessions()
    assert earlier.backward_s == 300.0 and walked.status == "finished"
    assert walked.backward_s == run.coach.backward_s == 300
    [line] = [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()]
    assert "\n" not in line and str(kept) in line and "left as it is" in line
    with pytest.raises(VoicecoachError):  # the next start says what is wrong with it
        HistoryDB.open(data)
    assert (data / DB_NAME).read_bytes() == before


def test_a_kept_file_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / (DB_NAME + KEPT_SUFFIX)).write_bytes(b"an earlier kept history")
    other = tmp_path / "other"
    _not_a_history(other)
    walk_with_the_file_replaced(data, other)
    assert (data / (DB_NAME + KEPT_SUFFIX)).read_bytes() == b"an earlier kept history"
    with HistoryDB.open_file(data / (DB_NAME + KEPT_SUFFIX + "-2")) as db:
        assert [s.status for s in db.sessions()] == ["finished", "finished"]
