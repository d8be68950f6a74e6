"""Issue 12's lock-outs, each reproduced through the real CLI: none stops a user for good."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from config_helpers import empty_config
from conftest import REPO

from voicecoach import cli
from voicecoach.audio.wav import write_wav
from voicecoach.commands._common import Terminated, stopped_by_sigterm
from voicecoach.commands.serve import NEEDS_A_PERSON
from voicecoach.device.loop import NO_HISTORY_SPEECH, AudioClock, DeviceLoop
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import grammar_dir, load_grammar
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder
from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, load_clip
from voicecoach.listening.engines import make_recogniser
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.workout.plan import programme_week


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VOICECOACH_") or k == "VOICECOACH_UNIT"}  # not /etc's unit
    env.update(VOICECOACH_HOME=str(home), VOICECOACH_CONFIG=empty_config(home.parent),
               **extra)
    return env


def damage(home: Path) -> bytes:
    home.mkdir(parents=True, exist_ok=True)
    blob = b"SQLite format 3\0" + bytes(range(256)) * 40
    (home / DB_NAME).write_bytes(blob)
    return blob


# ---------------------------------------------------------------- SIGTERM during run
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: SSH closed
def test_sigterm_during_run_records_the_session_as_stopped(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "voicecoach", "run", "--week", "1"],
                            cwd=REPO, env=child_env(home), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    for line in proc.stdout:  # the session row exists once the briefing has begun
        if "briefing" in line:
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"voicecoach: terminated ({sig.name}); the session was recorded as stopped")
    with HistoryDB.open(home) as db:
        assert [(s.source, s.status) for s in db.sessions()] == [("run", "stopped")]


class _NoWrites:
    """The history's connection on a disk that has failed: every write is refused."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.split()[0].upper() in ("BEGIN", "INSERT", "UPDATE"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


@pytest.mark.parametrize("writable", [True, False])
def test_the_sigterm_line_says_whether_the_session_was_recorded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], writable: bool) -> None:
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(1), "run")
        rec._sleep = lambda s: None  # its retries, without the waits
        real = db.conn
        if not writable:
            db.conn = _NoWrites(real)  # type: ignore[assignment]
        with pytest.raises(Terminated), stopped_by_sigterm(lambda: [rec]):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler raises at the next bytecode; never reached
                time.sleep(0.05)
        db.conn = real
        assert rec.incomplete is not writable
    last = capsys.readouterr().err.strip().splitlines()[-1]
    if writable:
        assert last == "voicecoach: terminated (SIGTERM); the session was recorded as stopped"
        with HistoryDB.open(tmp_path) as db:
            assert [s.status for s in db.sessions()] == ["stopped"]
    else:  # kept beside the history (history/unwritten.py), merged at the next opening
        assert rec.kept_in is not None
        assert f"it is kept in {rec.kept_in} and added to the history at its next" in last
        with HistoryDB.open(tmp_path) as db:
            assert [s.status for s in db.sessions()] == ["stopped"]
        assert not rec.kept_in.exists()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_the_terminated_line_names_the_signal_the_exit_carries(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: signal.Signals) -> None:
    """The signal's name is the one :class:`Terminated` was raised for (its ``signum``), its
    exit code 128 + its number; raised here by hand, no signal sent."""
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, programme_week(1), "run")
        with pytest.raises(Terminated) as ended, stopped_by_sigterm(lambda: [rec]):
            raise Terminated(sig)
    assert ended.value.signum is sig and ended.value.code == 128 + sig
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"voicecoach: terminated ({sig.name}); the session was recorded as stopped")


# ---------------------------------------------------------------- a damaged history on the device
def test_serve_with_a_damaged_history_says_so_and_is_not_restarted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blob = damage(home)
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.zeros(16000 * 3, dtype=np.float32))
    result = subprocess.run([sys.executable, "-m", "voicecoach", "serve", "--engine",
                             "pocketsphinx", "--audio-in", str(wav)], cwd=REPO,
                            env=child_env(home), capture_output=True, text=True, timeout=120)
    assert result.returncode == NEEDS_A_PERSON, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "damaged" in line and "move it aside" in line and "Traceback" not in line
    assert (home / DB_NAME).read_bytes() == blob
    unit = subprocess.run([sys.executable, "-m", "voicecoach", "serve", "--print-unit"],
                          cwd=REPO, env=child_env(home), capture_output=True, text=True,
                          timeout=60).stdout
    assert f"RestartPreventExitStatus={NEEDS_A_PERSON}" in unit


def test_the_spoken_history_problem_holds_no_command_phrase() -> None:
    for path in sorted(grammar_dir().glob("*.json")):
        assert load_grammar(path=path).command_phrases_in(NO_HISTORY_SPEECH) == []


def test_a_history_that_breaks_mid_day_is_said_aloud_and_the_loop_listens_on(
        tmp_path: Path) -> None:
    """The history is damaged after serve started: "start" gets the spoken problem, no
    session, no exit; a later "start", after the file was moved aside, runs a session."""
    settings = Settings(data_dir=tmp_path / "home", speech=SpeechSettings(engine="pocketsphinx"))
    grammar = load_grammar("en")
    recogniser = make_recogniser(settings.speech, grammar)
    clock = AudioClock()
    speaker = EchoWavSpeaker(None, clock=clock)
    start = load_clip("start", "start")
    start.at_s = 1.0
    again = load_clip("start", "start")
    again.at_s = 20.0
    room = ClosedLoopSource(speaker, 40.0, echo_gain_db=-200.0, clips=[start, again])
    blob = damage(settings.data_dir)

    def open_session(plan: object) -> object:
        from voicecoach.commands._common import recorded_session

        return recorded_session(settings, None, "serve")

    moved = []

    def react(t: float) -> None:  # the user moves the damaged file aside, as told
        if t >= 15.0 and not moved:
            moved.append(t)
            (settings.data_dir / DB_NAME).rename(settings.data_dir / "broken.sqlite3")

    room.react = react
    sources = iter([room])
    loop = DeviceLoop(settings, grammar, recogniser, speaker, lambda: next(sources, None),
                      open_session, clock=clock)  # type: ignore[arg-type]
    loop.run()
    said = [iv.text for iv in speaker.speaking_intervals()]
    assert said[0] == NO_HISTORY_SPEECH
    assert (settings.data_dir / "broken.sqlite3").read_bytes() == blob
    with HistoryDB.open(settings.data_dir) as db:
        assert [s.source for s in db.sessions()] == ["serve"]  # the second start worked


# ---------------------------------------------------------------- config and environment
def test_config_show_with_a_missing_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert cli.main(["config", "show", "--config", str(missing)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"config file {missing} does not exist" in line and "config init" in line
    assert cli.main(["config", "init", "--config", str(missing)]) == 0  # init makes it
    assert cli.main(["config", "show", "--config", str(missing)]) == 0


@pytest.mark.parametrize(("name", "suggestion"), [
    ("VOICECOACH_SPEECH_ENGIN", "VOICECOACH_SPEECH_ENGINE"),
    ("VOICECOACH_HOEM", "VOICECOACH_HOME"),
    ("VOICECOACH_COACH_TOPSPEED_MPH", "VOICECOACH_COACH_TOP_SPEED_MPH"),
    ("VOICECOACH_WHATEVER", "VOICECOACH_<SECTION>_<KEY>"),
])
def test_a_misspelled_variable_is_one_line(tmp_path: Path, name: str, suggestion: str) -> None:
    for args in (("config", "show"), ("demo", "--speed-up", "100000"), ("history",)):
        result = subprocess.run([sys.executable, "-m", "voicecoach", *args], cwd=REPO,
                                env=child_env(tmp_path / "home", **{name: "vosk"}),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert name in line and suggestion in line
    assert not (tmp_path / "home").exists()


def test_known_variables_are_accepted(tmp_path: Path) -> None:
    from voicecoach.config import load_config

    loaded = load_config(tmp_path / "none.toml", environ={
        "VOICECOACH_SPEECH_RATE": "170", "VOICECOACH_HOME": str(tmp_path),
        "VOICECOACH_GRAMMARS": str(grammar_dir()), "VOICECOACH_CACHE": str(tmp_path)})
    assert loaded.settings.speech.rate == 170
    with pytest.raises(VoicecoachError, match="VOICECOACH_SPEECH_RAT is not"):
        load_config(tmp_path / "none.toml", environ={"VOICECOACH_SPEECH_RAT": "170"})


# ---------------------------------------------------------------- quiet output
def test_diagram_writes_nothing_to_stderr() -> None:
    for args in (["diagram"], ["diagram", "--internal"]):
        result = subprocess.run([sys.executable, "-m", "voicecoach", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == ""
        assert result.stdout.startswith("---")


def test_help_shows_each_default_once(capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.cli import COMMAND_MODULES

    for name in ("", *COMMAND_MODULES):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"] if name else ["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for chunk in text.split("--")[1:]:
            assert chunk.lower().count("default:") <= 1, (name, chunk)


def test_no_sqlite_side_files_are_left_by_a_read(tmp_path: Path) -> None:
    """history and doctor only read: no -wal/-shm appear beside a damaged file."""
    home = tmp_path / "home"
    damage(home)
    for args in (("history",), ("doctor", "--no-render")):
        subprocess.run([sys.executable, "-m", "voicecoach", *args], cwd=REPO,
                       env=child_env(home), capture_output=True, text=True, timeout=120)
    assert sorted(p.name for p in home.iterdir()) == [DB_NAME]
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(home / DB_NAME).execute("SELECT * FROM sessions").fetchall()


def test_doctor_notices_missing_grammars(tmp_path: Path) -> None:
    empty = tmp_path / "no-grammars"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "voicecoach", "doctor", "--no-render"],
                            cwd=tmp_path, env=child_env(tmp_path / "home",
                                                        VOICECOACH_GRAMMARS=str(empty)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.split()[1:2] == ["grammars:"]]
    assert line.startswith("FAIL") and "no grammar files" in line and "reinstall" in line


@pytest.mark.parametrize("ending", [KeyboardInterrupt, Terminated])
def test_typed_run_ending_under_a_session_stops_the_belt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: type[BaseException]) -> None:
    """Ctrl-C or SIGTERM under a typed session with a driven belt: the belt is stopped (and the
    link closed) before the program ends, not left running."""
    import voicecoach.commands.run as run_command
    from voicecoach.cli import main
    from voicecoach.treadmill.ftms import Op
    from voicecoach.treadmill.sim import SimTreadmill

    links: list[SimTreadmill] = []
    real_init = SimTreadmill.__init__

    def remember(self: SimTreadmill, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        links.append(self)

    def walk_then_end(coach: Any, grammar: Any, clock: Any, stream: Any) -> str:
        coach.begin(0.0)
        t = 0.0
        for said, phrase in [("yes", "yes")] * 3 + [("yes", "ready")]:
            t += 2.0
            coach.tick(t)
            coach.command(said, t, phrase=phrase, source="typed")
        for _ in range(60):
            t += 0.1
            coach.tick(t)
        assert links[0].model.speed_kmh > 0.5, "the belt must be moving when it ends"
        raise ending() if ending is KeyboardInterrupt else ending(signal.SIGTERM)

    monkeypatch.setattr(SimTreadmill, "__init__", remember)
    monkeypatch.setattr(run_command, "run_typed", walk_then_end)
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VOICECOACH_CONFIG", str(empty_config(tmp_path)))
    try:
        code = main(["run", "--week", "1", "--treadmill", "sim"])
    except ending as exc:   # SIGTERM's unwinding leaves main; Ctrl-C is answered by main
        code = exc.code if isinstance(exc, SystemExit) else None
    assert code == (130 if ending is KeyboardInterrupt else 143)
    assert links and links[0].log.of(Op.STOP_PAUSE), "no stop was written"
