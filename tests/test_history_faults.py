"""No stored value, read-only folder or full disk can lock a user out, and none looks "damaged"."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from config_helpers import empty_config

from voicecoach.events import CueSpoken, PhaseStarted, SessionEnded
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder
from voicecoach.workout.plan import programme_week


def vc(*args: str, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VOICECOACH_") or k == "VOICECOACH_UNIT"}  # not /etc's unit
    env["VOICECOACH_HOME"] = str(home)
    env["VOICECOACH_CONFIG"] = empty_config(home.parent)
    return subprocess.run([sys.executable, "-m", "voicecoach", *args], input=stdin, text=True,
                          capture_output=True, timeout=180, env=env)


def healthy_history(folder: Path) -> None:
    """One finished week-2 session, written by the real recorder."""
    with HistoryDB.open(folder) as db:
        rec = SessionRecorder.open(db, programme_week(2), "run")
        rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                                  duration_s=420.0, speed_mph=0.8, min_speed_mph=0.8,
                                  max_speed_mph=1.0, incline_pct=0.0))
        rec.on_event(CueSpoken(t=60.0, state="backward", text="tall posture", kind="cue"))
        rec.on_event(SessionEnded(t=420.0, state="done", outcome="finished", backward_s=420.0,
                                  total_s=420.0, min_speed_mph=0.8, max_speed_mph=1.0, summary=""))


DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: never a live process

#: Rows a crash, a bug of an earlier version (``run --speed-up inf``) or a hand edit could leave.
BAD_ROWS = [
    # the speed-up inf crash: a running session whose clock reached inf
    {"status": "running", "last_t": float("inf"), "total_s": float("inf"),
     "backward_s": float("inf")},
    {"status": "running", "last_t": -1e308, "total_s": "abc", "backward_s": "nan"},
    {"status": "running", "started_at": "not a time", "last_t": 30.0},
    {"status": "finished", "started_at": "2026-13-45T99:00:00", "ended_at": "yesterday"},
    {"status": "interrupted", "ended_at": "garbage", "week": "two", "min_speed_mph": 1e308,
     "max_speed_mph": -4.0, "backward_speed_mph": float("inf"), "incline_pct": float("-inf")},
    {"status": "exploded", "source": "alien", "total_s": 1e300, "planned_backward_s": -1.0},
    {"status": "running", "pid": "many", "last_t": 5.0},
    # a time without its offset (imported or hand-edited) beside the recorder's own
    {"status": "finished", "started_at": "2026-01-06T10:00:00", "total_s": 600.0,
     "backward_s": 300.0},
    # a start at the end of time: its end cannot be computed
    {"status": "running", "started_at": "9999-12-31T23:59:00+00:00", "last_t": 120.0},
]


def plant_bad_rows(folder: Path) -> None:
    conn = sqlite3.connect(folder / DB_NAME)
    host = socket.gethostname()
    for row in BAD_ROWS:
        values = {"started_at": "2026-01-05T10:00:00+00:00", "plan": "week 1", "source": "run",
                  "pid": DEAD_PID, "host": host, "proc_token": "x", **row}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cursor = conn.execute(f"INSERT INTO sessions ({names}) VALUES ({marks})",
                              list(values.values()))
        sid = cursor.lastrowid
        for seq, data in enumerate(['{"type": "phase_started", "t": "soon"}', "{broken json",
                                    "[1, 2]", '{"t": 1e999, "type": "cue_spoken"}',
                                    '{"type": "target_changed", "t": 3, "speed_mph": null}'], 1):
            conn.execute("INSERT INTO events (session_id, seq, t, type, state, data) "
                         "VALUES (?, ?, ?, 'x', 'backward', ?)", (sid, seq, float(seq), data))
    conn.commit()
    conn.close()


def assert_clean(result: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr


def test_no_stored_value_breaks_a_later_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    healthy_history(home)
    plant_bad_rows(home)
    assert_clean(vc("history", home=home))
    listed = vc("history", "--json", home=home)
    assert_clean(listed)
    assert '"total_s": Infinity' not in listed.stdout and "NaN" not in listed.stdout
    # every start runs recover_interrupted over the planted rows
    assert_clean(vc("demo", "--speed-up", "100000", home=home))
    assert_clean(vc("run", "--week", "1", "--speed-up", "100000", home=home,
                    stdin="yes\nyes\nyes\nstop\n"))
    # ... and a plan made from that history (the rows in the order they were recorded)
    assert_clean(vc("run", "--speed-up", "100000", home=home, stdin="yes\nyes\nyes\nstop\n"))
    again = vc("history", "--json", home=home)
    assert_clean(again)
    assert "Infinity" not in again.stdout and "NaN" not in again.stdout
    with HistoryDB.open(home) as db:
        assert all(s.status != "running" for s in db.sessions())
        # recovery rewrote the dead 'running' rows with believable totals; the two rows with
        # no readable start and the two finished/odd ones are still read as unknown
        assert db.unreadable_rows() == 4
    doctor = vc("doctor", "--no-render", home=home)
    assert "Traceback" not in doctor.stderr
    [line] = [x for x in doctor.stdout.splitlines() if x.split()[1:2] == ["history:"]]
    assert line.startswith("warn") and "impossible values" in line, line


# ---------------------------------------------------------------- read-only, full disk
def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A small file system of its own at ``folder`` (root only), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount") or not _mount(
            "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        pytest.skip("needs root and mount to make a read-only or full file system")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only_history(tmp_path: Path) -> Iterator[Path]:
    """A healthy history in a folder that cannot be written: chmod for a user, a read-only
    file system for root (whom permissions do not stop)."""
    home = tmp_path / "ro"
    if os.geteuid() != 0:
        healthy_history(home)
        home.chmod(0o555)
        try:
            yield home
        finally:
            home.chmod(0o755)
        return
    with tmpfs(home):
        healthy_history(home)
        assert _mount("-o", "remount,ro", str(home))
        yield home


def test_a_healthy_history_in_a_read_only_folder_is_not_called_damaged(tmp_path: Path) -> None:
    with read_only_history(tmp_path) as home:
        before = (home / DB_NAME).read_bytes()
        shown = vc("history", home=home)
        assert_clean(shown)
        assert "week 2" in shown.stdout
        for args in (("demo", "--speed-up", "100000"), ("run", "--week", "1")):
            result = vc(*args, home=home, stdin="stop\n")
            assert result.returncode != 0 and "Traceback" not in result.stderr
            [line] = result.stderr.strip().splitlines()
            assert "read-only" in line and "damaged" not in line and "unharmed" in line, line
        doctor = vc("doctor", "--no-render", home=home)
        [line] = [x for x in doctor.stdout.splitlines() if x.split()[1:2] == ["history:"]]
        assert line.startswith("FAIL") and "read-only" in line and "1 session" in line, line
        assert (home / DB_NAME).read_bytes() == before


@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_at_start_is_not_called_damaged(tmp_path: Path, existing: bool) -> None:
    with tmpfs(tmp_path / "full", "1m") as home:
        if existing:
            healthy_history(home)
        filler = home / "filler"
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        with contextlib.suppress(OSError), (home / "tiny").open("wb") as handle:
            while True:
                handle.write(b"\0" * 512)
                handle.flush()
        result = vc("demo", "--speed-up", "100000", home=home)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "damaged" not in line and "full" in line, result.stderr
        filler.unlink()
        (home / "tiny").unlink()
        assert_clean(vc("demo", "--speed-up", "100000", home=home))


def test_doctor_names_damaged_and_newer_histories(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / DB_NAME).write_bytes(b"SQLite format 3\0" + os.urandom(4000))
    newer = tmp_path / "newer"
    newer.mkdir()
    conn = sqlite3.connect(newer / DB_NAME)
    conn.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    for home, word, fix in ((damaged, "damaged", "move it aside"),
                            (newer, "newer-schema", "upgrade voicecoach")):
        before = (home / DB_NAME).read_bytes()
        doctor = vc("doctor", "--no-render", home=home)
        [line] = [x for x in doctor.stdout.splitlines() if x.split()[1:2] == ["history:"]]
        assert line.startswith("FAIL") and word in line and fix in line, line
        assert (home / DB_NAME).read_bytes() == before
