"""``voicecoach history``: table, JSON, CSV, PNG and its errors, on a real history file."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from history_helpers import record_finished

from voicecoach.cli import main
from voicecoach.events import (
    CueSpoken,
    DeviceProblem,
    PainReported,
    PhaseStarted,
    SessionEnded,
)
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder
from voicecoach.history.dating import EARLIEST_START
from voicecoach.history.plot import PLOT_HINT, PLOT_INSTALL, plot_series
from voicecoach.workout.plan import programme_week

REPO = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now().astimezone()


def record(db: HistoryDB, week: int, started: dt.datetime, backward_s: float, outcome: str,
           speeds: tuple[float, float], pain: bool = False, source: str = "run") -> None:
    """One session: a backward phase at ``speeds[0]`` then a change to ``speeds[1]``."""
    rec = SessionRecorder.open(db, programme_week(week), source, started_at=started)
    rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                              duration_s=backward_s, speed_mph=speeds[0],
                              min_speed_mph=speeds[0], max_speed_mph=speeds[1],
                              incline_pct=0.0))
    if pain:
        rec.on_event(PainReported(t=10.0, state="backward", phrase="knee hurts"))
    rec.on_event(CueSpoken(t=backward_s, state="backward", text="ok", kind="cue"))
    if outcome == "interrupted":
        rec.close("interrupted")
        return
    rec.on_event(SessionEnded(t=backward_s, state="done", outcome=outcome, backward_s=backward_s,
                              total_s=backward_s + 300, min_speed_mph=speeds[0],
                              max_speed_mph=speeds[1], summary=""))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Three sessions: 20 and 13 days ago (one with pain), and yesterday (stopped)."""
    with HistoryDB.open(tmp_path) as db:
        record(db, 1, NOW - dt.timedelta(days=20), 300, "finished", (0.5, 0.5))
        record(db, 2, NOW - dt.timedelta(days=13), 420, "finished", (0.8, 1.0), pain=True)
        record(db, 2, NOW - dt.timedelta(days=1), 150, "stopped", (0.8, 0.9))
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_lists_sessions_and_weekly_totals(data_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["date", "plan", "source", "min", "back", "speed", "mph",
                                "outcome", "pain"]
    rows = [line.split() for line in lines[1:4]]
    assert [r[2:] for r in rows] == [["week", "1", "run", "5.0", "0.5", "finished", "-"],
                                     ["week", "2", "run", "7.0", "0.8-1.0", "finished", "1"],
                                     ["week", "2", "run", "2.5", "0.8-0.9", "stopped", "-"]]
    assert rows[0][0] == (NOW - dt.timedelta(days=20)).strftime("%Y-%m-%d")
    weekly = lines[lines.index("") + 2:]
    assert sum(float(w.split()[2]) for w in weekly) == pytest.approx(14.5)
    assert sum(int(w.split()[1]) for w in weekly) == 3


def test_a_history_of_demo_sessions_only_says_why_it_totals_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HistoryDB.open(tmp_path) as db:
        record(db, 1, NOW - dt.timedelta(days=1), 300, "finished", (0.5, 0.8), source="demo")
    code, out, _ = cli(capsys, "--data-dir", str(tmp_path), "history")
    lines = out.splitlines()
    assert code == 0 and lines[1].split()[4] == "demo"
    assert lines[-2].split()[0] == "week"  # the totals' header, and no week under it
    assert "demo and replayed sessions are listed but not counted" in lines[-1]


def test_json_and_weeks_filter(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history", "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["status"] for s in data["sessions"]] == ["finished", "finished", "stopped"]
    assert [s["pain_reports"] for s in data["sessions"]] == [0, 1, 0]
    assert data["sessions"][1]["max_speed_mph"] == 1.0
    assert sum(w["sessions"] for w in data["weekly"]) == 3
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history", "--json", "--weeks", "2")
    assert [s["backward_s"] for s in json.loads(out)["sessions"]] == [420.0, 150.0]
    assert json.loads(out)["weeks_shown"] == 2


def test_export_csv(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.csv"
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "history", "--export", str(target))
    assert code == 0 and "wrote 3 sessions" in err
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["plan"], r["status"], r["backward_min"], r["pain_reports"]) for r in rows] == [
        ("week 1", "finished", "5.0", "0"), ("week 2", "finished", "7.0", "1"),
        ("week 2", "stopped", "2.5", "0")]
    assert dt.datetime.fromisoformat(rows[2]["started_at"]).date() == (
        NOW - dt.timedelta(days=1)).date()


def test_plot_writes_a_png(data_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the 'test' or 'plot' extra) is not "
                        "installed")
    target = tmp_path / "progress.png"
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "history", "--plot", str(target))
    assert code == 0, err
    blob = target.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000


def test_a_session_a_fault_of_voicecoach_ended_is_listed_as_a_device_fault(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A session ended by a fault inside voicecoach (device/loop_faults.py: stored as stopped,
    the fault a DeviceProblem in its events) is listed, totalled and exported as walked, its
    outcome "device fault" in the table (it read "stopped", as if the user had ended it) and
    its part in --json and --export; a stopped session without one stays "stopped"."""
    with HistoryDB.open(data_dir) as db:
        rec = SessionRecorder.open(db, programme_week(2), "serve", started_at=NOW)
        rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                                  duration_s=420.0, speed_mph=0.8, min_speed_mph=0.8,
                                  max_speed_mph=1.0, incline_pct=0.0))
        rec.on_event(PainReported(t=10.0, state="backward", phrase="knee hurts"))
        rec.on_event(DeviceProblem(t=90.0, state="backward", device="recogniser",
                                   problem="internal fault in the recogniser: ValueError: nan",
                                   extra={"at": "decide.py:12"}))
        rec.end("stopped")
        rec.close()
        # one in the cool-down, every backward block walked: it counts for progression
        # (test_progression.py), and is still shown as the device's fault
        rec = SessionRecorder.open(db, programme_week(2), "serve",
                                   started_at=NOW + dt.timedelta(minutes=30))
        for index, (kind, t, length) in enumerate((("backward", 0.0, 420.0),
                                                   ("cooldown", 420.0, 120.0))):
            rec.on_event(PhaseStarted(t=t, state=kind, index=index, kind=kind,
                                      duration_s=length, speed_mph=0.8, min_speed_mph=0.8,
                                      max_speed_mph=1.0, incline_pct=0.0))
        rec.on_event(DeviceProblem(t=450.0, state="cooldown", device="duplex gate",
                                   problem="internal fault in the duplex gate: ValueError: nan",
                                   extra={"at": "duplex.py:140"}))
        rec.end("stopped")
        rec.close()
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:6]]
    assert [r[2:] for r in rows[2:]] == [
        ["week", "2", "run", "2.5", "0.8-0.9", "stopped", "-"],
        ["week", "2", "serve", "1.5", "0.8", "device", "fault", "1"],
        ["week", "2", "serve", "7.0", "0.8", "device", "fault", "-"]]
    weekly = out.splitlines()[out.splitlines().index("") + 2:]
    assert sum(int(w.split()[1]) for w in weekly) == 5
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history", "--json")
    sessions = json.loads(out)["sessions"]
    assert [(s["status"], s["fault"], s["fault_phase"], s["pain_reports"])
            for s in sessions[2:]] == [
        ("stopped", None, None, 0), ("stopped", "recogniser", "backward", 1),
        ("stopped", "duplex gate", "cooldown", 0)]
    target = tmp_path / "out.csv"
    cli(capsys, "--data-dir", str(data_dir), "history", "--export", str(target))
    with target.open(newline="", encoding="utf-8") as handle:
        assert [(r["status"], r["fault"], r["fault_phase"])
                for r in csv.DictReader(handle)][2:] == [
            ("stopped", "", ""), ("stopped", "recogniser", "backward"),
            ("stopped", "duplex gate", "cooldown")]


def wrong_clock_history(folder: Path) -> list[int]:
    """Five finished sessions, in this recorded order: 20 days ago, one dated 2030 (a clock set
    ahead), 13 days ago, one dated 1970 (a clock never set), yesterday. Their ids."""
    dates = [NOW - dt.timedelta(days=20), dt.datetime(2030, 6, 1, 9, tzinfo=dt.timezone.utc),
             NOW - dt.timedelta(days=13), dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.timezone.utc),
             NOW - dt.timedelta(days=1)]
    with HistoryDB.open(folder) as db:
        return [record_finished(db, 2, 300.0 + 60 * i, started=when)
                for i, when in enumerate(dates)]


def test_plot_leaves_sessions_of_unknown_date_off_the_date_axis(tmp_path: Path) -> None:
    """The 1970 and 2030 sessions are not drawn at their wrong dates (the axis spanned sixty
    years, every real session a sliver); the three dated ones are, in order, and the two left
    out are counted with the reason."""
    ids = wrong_clock_history(tmp_path)
    with HistoryDB.open_file(tmp_path / DB_NAME, read_only_ok=True) as db:
        sessions = db.sessions()
    series = plot_series(sessions)
    assert [s.id for s in series.dated] == [ids[0], ids[2], ids[4]]
    assert all(EARLIEST_START <= s.started_at <= NOW for s in series.dated)
    assert series.left_out == 2
    assert series.note() == ("2 sessions of unknown date left out: the clock was wrong when "
                             "they were recorded")


def test_plot_of_a_history_with_a_wrong_clock_is_written_and_says_what_it_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the 'test' or 'plot' extra) is not "
                        "installed")
    data = tmp_path / "data"
    wrong_clock_history(data)
    target = tmp_path / "progress.png"
    code, out, err = cli(capsys, "--data-dir", str(data), "history", "--plot", str(target))
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert err.splitlines() == [
        f"plotted 3 sessions to {target}; 2 sessions of unknown date left out: the clock was "
        "wrong when they were recorded (`voicecoach history` lists them in order)"]
    assert out.count("date unknown") == 2  # the table still lists them, in their place


def test_plot_of_sessions_all_of_unknown_date_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the 'test' or 'plot' extra) is not "
                        "installed")
    with HistoryDB.open(tmp_path / "data") as db:
        record_finished(db, 1, 300.0, started=dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
    target = tmp_path / "progress.png"
    code, _, err = cli(capsys, "--data-dir", str(tmp_path / "data"), "history", "--plot",
                       str(target))
    assert code == 2 and not target.exists() and "Traceback" not in err
    assert err.count("\n") == 1 and "no session to plot has a known date" in err


def test_plot_without_matplotlib_is_one_line(data_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.dates"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    target = tmp_path / "progress.png"
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "history", "--json", "--plot",
                       str(target))
    assert code == 2 and not target.exists()
    assert err.count("\n") == 1
    assert PLOT_HINT in err
    assert f"needs: {PLOT_INSTALL}" in (REPO / "README.md").read_text()  # the same command


def test_no_history_yet_creates_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "history")  # VOICECOACH_HOME from the fixture
    assert code == 0 and out.startswith("No sessions recorded")
    assert not (home / DB_NAME).exists()


@pytest.mark.parametrize("weeks", ["abc", "0", "-2", "1.5"])
def test_bad_weeks_value(data_dir: Path, weeks: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--data-dir", str(data_dir), "history", f"--weeks={weeks}")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "--weeks" in err and "Traceback" not in err


def test_corrupt_database_is_one_line_from_the_real_cli(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "voicecoach", "--data-dir", str(tmp_path),
                           "history"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "move it aside" in proc.stderr
    assert path.read_bytes() == before


def test_export_to_a_missing_folder_is_one_line(data_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nowhere" / "out.csv"
    code, out, err = cli(capsys, "--data-dir", str(data_dir), "history", "--export", str(target))
    assert code != 0 and err.count("\n") == 1 and str(target) in err
    assert "does not exist" in err
    assert out == "", "checked before the table is printed, so the output is the error alone"


@pytest.mark.parametrize("flag", ["--export", "--plot"])
def test_a_destination_that_is_a_folder_is_one_line_before_any_output(
        data_dir: Path, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--data-dir", str(data_dir), "history", flag, str(tmp_path))
    assert code != 0 and out == "" and err.count("\n") == 1
    assert "is a folder, not a file" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--export", "--plot"])
@pytest.mark.parametrize("name", [DB_NAME, DB_NAME + "-wal", "session.lock", "link"])
def test_the_history_itself_is_never_a_destination(data_dir: Path, tmp_path: Path, flag: str,
                                                   name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = data_dir / DB_NAME
    before = db.read_bytes()
    target = data_dir / name
    if name == "link":
        target = tmp_path / "history-link.csv"
        target.symlink_to(db)
    code, out, err = cli(capsys, "--data-dir", str(data_dir), "history", flag, str(target))
    assert code != 0 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "voicecoach's own data" in err and "give another file name" in err
    assert db.read_bytes() == before
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "history", "--json")
    assert code == 0 and json.loads(out)["sessions"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("flag", ["--export", "--plot"])
def test_a_full_disk_is_one_line_that_says_the_disk_is_full(
        data_dir: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    if flag == "--plot":
        pytest.importorskip("matplotlib", reason="matplotlib (the 'test' or 'plot' extra) is "
                            "not installed")
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "history", flag, "/dev/full")
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "/dev/full" in err and "free some space" in err
    assert "writable" not in err, "a full disk is not a permission problem"


def test_a_plot_of_a_kind_matplotlib_cannot_write_is_one_line(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the 'test' or 'plot' extra) is not "
                        "installed")
    target = tmp_path / "progress.foo"
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "history", "--plot", str(target))
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert ".foo" in err and "progress.png" in err and not target.exists()


@pytest.mark.parametrize("flag", ["--export", "--plot"])
def test_a_destination_inside_a_file_is_one_line_that_says_so(
        data_dir: Path, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    code, out, err = cli(capsys, "--data-dir", str(data_dir), "history", flag,
                         str(a_file / "out.png"))
    assert code != 0 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "is a file, not a folder" in err and "does not exist" not in err
    assert a_file.read_text(encoding="utf-8") == "mine"
