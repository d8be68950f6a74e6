"""A second voicecoach on a data folder another one holds (a serve started by hand while the
systemd unit runs one): refused in one line naming the holder, the first left undisturbed; a
killed holder blocks nothing (history.session_lock)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from config_helpers import empty_config
from conftest import REPO
from fake_sounddevice import FakeSoundDevice, device
from replay_helpers import start_wav

from voicecoach import cli
from voicecoach.doctor import OK, check_history
from voicecoach.history import session_lock
from voicecoach.history.session_lock import SESSION_LOCK, holder, one_session_at_a_time


def _env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECOACH_")}
    env.update(VOICECOACH_HOME=str(home), VOICECOACH_CONFIG=empty_config(tmp_path))
    return env


def _voicecoach(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicecoach", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


@contextmanager
def _serving(env: dict[str, str], wav: Path) -> Iterator[subprocess.Popen[str]]:
    """A real ``voicecoach serve`` replaying ``wav`` at real-time pace, once it listens; it
    is stopped with SIGTERM afterwards (unless the test killed it) and must exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "voicecoach", "serve", "--engine",
                             "pocketsphinx", "--audio-in", str(wav), "--realtime"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # in the child's own time: no wall-clock threshold
            if "listening; say 'start'" in line:
                break
        else:
            pytest.fail(f"serve ended before it listened: {proc.wait()}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    if proc.returncode != -signal.SIGKILL:
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def _until(proc: subprocess.Popen[str], text: str) -> None:
    """Read the serve's printed events until one holds ``text``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    pytest.fail(f"serve ended before {text!r}")


def _recorded(home: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The history's sessions (source, status) and every event, read without writing."""
    with sqlite3.connect(f"file:{home / 'history.sqlite3'}?mode=ro", uri=True) as conn:
        sessions = list(conn.execute("SELECT id, source, status FROM sessions ORDER BY id"))
        events = list(conn.execute("SELECT session_id, seq, t, type, state, data FROM events "
                                   "ORDER BY session_id, seq"))
    return sessions, events


def _refusal(pid: int, home: Path) -> str:
    return (f"voicecoach: error: another voicecoach (serve, pid {pid}) is using the workout "
            f"history in {home}; stop it first (Ctrl-C where it runs, or kill {pid}) or give "
            "another --data-dir.")


def test_a_second_serve_is_refused_in_one_line_and_the_first_session_records_on(
        tmp_path: Path) -> None:
    """A serve started by hand while one runs (mid-session here) says who holds the history
    and how to stop it, in one line, and exits 2 before opening anything; the first one's
    session goes on and is recorded to its end, nothing of it changed."""
    home = tmp_path / "home"
    env = _env(tmp_path, home)
    with _serving(env, start_wav(tmp_path / "start.wav", 120.0, start_at=1.0)) as first:
        _until(first, "idle -> briefing")  # the first one's session is running
        before = _recorded(home)
        second = _voicecoach(env, "serve", "--engine", "pocketsphinx", "--audio-in",
                             str(start_wav(tmp_path / "short.wav", 1.0)))
        assert second.returncode == 2, second.stderr
        assert second.stderr.splitlines() == [_refusal(first.pid, home)]
        assert second.stdout == ""  # nothing said over the first one's session
        sessions, events = _recorded(home)  # the first one writes on meanwhile
        assert sessions == before[0] == [(1, "serve", "running")]  # nothing marked or added
        assert events[:len(before[1])] == before[1]
        assert first.poll() is None
    sessions, events = _recorded(home)
    assert [row[1:] for row in sessions] == [("serve", "stopped")]  # ended by SIGTERM
    assert events[:len(before[1])] == before[1]  # its events kept, and its end written after
    assert len(events) > len(before[1])


def test_run_demo_and_start_beside_a_listening_serve_are_refused_naming_it(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """While a serve listens (no session yet), a typed run, the demo and start would take the
    history, the microphone and the treadmill from under it (and its next "start" would be
    told the history cannot be opened): each is refused in one line naming the serve, and
    start opens no sound device."""
    env = _env(tmp_path, home)
    with _serving(env, start_wav(tmp_path / "silence.wav", 600.0)) as first:
        line = _refusal(first.pid, home)
        demo = _voicecoach(env, "demo", "--speed-up", "1000")
        assert (demo.returncode, demo.stderr.splitlines()) == (2, [line])
        typed = _voicecoach(env, "run", "--week", "1", stdin="stop\n")
        assert (typed.returncode, typed.stderr.splitlines()) == (2, [line])
        sd = FakeSoundDevice([device("USB mic", 1, 0), device("USB speaker", 0, 2)])
        monkeypatch.setitem(sys.modules, "sounddevice", sd)
        monkeypatch.setenv("VOICECOACH_CONFIG", env["VOICECOACH_CONFIG"])
        assert cli.main(["start"]) == 2
        assert capsys.readouterr().err.splitlines() == [line]
        assert sd.streams == []
    assert _recorded(home) == ([], [])  # none of them recorded anything


def test_doctor_names_a_serve_at_work_and_a_killed_one_blocks_nothing(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """doctor calls a history a serve holds ok and names the serve; once that serve is
    killed (SIGKILL: nothing of it runs to clear its name), doctor names nobody and the next
    serve starts as if the folder were free, and clears its name when it ends."""
    env = _env(tmp_path, home)
    with _serving(env, start_wav(tmp_path / "silence.wav", 600.0)) as first:
        [check] = check_history(home)
        assert check.status == OK
        assert check.detail.endswith(f"; in use by voicecoach serve, pid {first.pid}")
        first.kill()
        first.wait()
    assert f'"pid": {first.pid}' in (home / SESSION_LOCK).read_text()  # its name is left
    [check] = check_history(home)
    assert (check.status, "in use" in check.detail) == (OK, False)
    assert cli.main(["serve", "--engine", "pocketsphinx", "--audio-in",
                     str(start_wav(tmp_path / "short.wav", 1.0))]) == 0
    assert "another voicecoach" not in capsys.readouterr().err
    assert (home / SESSION_LOCK).read_text() == ""
    assert holder(home) is None


def test_a_name_left_by_a_gone_holder_is_nobody(tmp_path: Path) -> None:
    """A lock file naming a process that is gone, in this version's words or an older one's
    (a bare pid), or a pid now reused by another process (its start token differs), names no
    holder and stops nobody."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / SESSION_LOCK
    for text in (str(gone.pid),
                 f'{{"pid": {gone.pid}, "command": "serve", "token": "", "unit": ""}}',
                 f'{{"pid": {os.getpid()}, "command": "serve", "token": "x:1", "unit": ""}}',
                 "not a name"):
        lock.write_text(text)
        assert holder(tmp_path) is None, text
        with one_session_at_a_time(tmp_path, "run"):
            assert holder(tmp_path) == session_lock.Holder(os.getpid(), "run", microphone=True)
        assert holder(tmp_path) is None


def test_the_refusal_says_how_the_holder_is_stopped() -> None:
    """The fix named fits the holder: its systemd unit, a serve started by hand, a session
    to end, or nobody named (in the moment before a new holder writes its name)."""
    folder = Path("/data")
    busy = session_lock.DataFolderBusy
    assert busy(folder, session_lock.Holder(7, "serve", "voicecoach")).one_line() == (
        "another voicecoach (serve, pid 7) is using the workout history in /data; stop it "
        "first (sudo systemctl stop voicecoach) or give another --data-dir.")
    assert "(Ctrl-C where it runs, or kill 7)" in busy(folder, session_lock.Holder(7, "serve")
                                                         ).one_line()
    assert busy(folder, session_lock.Holder(7, "demo")).one_line().endswith(
        "; let its session end first (say or type stop) or give another --data-dir.")
    assert busy(folder, None).one_line() == (
        "another voicecoach is using the workout history in /data; stop it first or give "
        "another --data-dir.")


# -- enroll and listen on the microphone beside a serve --------------------------------------
_HOLD = """
import sys
from pathlib import Path
from voicecoach.history.session_lock import one_session_at_a_time
with one_session_at_a_time(Path(sys.argv[1]), "serve"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def _held_by_the_unit(env: dict[str, str], home: Path) -> Iterator[subprocess.Popen[str]]:
    """A serve's hold on ``home`` as the systemd unit takes it (systemd sets INVOCATION_ID
    for a unit's processes): the real lock, taken in a child process, until its stdin ends."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(home)], cwd=REPO,
                            env={**env, "INVOCATION_ID": "0123"}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.stdin.close()
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0


def _takes(root: Path) -> Path:
    """Recordings to enroll from: two takes of stop and of yes."""
    fixtures = REPO / "audio_fixtures" / "commands" / "joe"
    for command, clip in (("stop", "stop__stop"), ("yes", "yes__yes")):
        (root / command).mkdir(parents=True)
        for speed in ("normal", "slow"):
            (root / command / f"{speed}.wav").write_bytes(
                (fixtures / speed / f"{clip}.wav").read_bytes())
    return root


def _enrollments(home: Path) -> dict[str, bytes]:
    folder = home / "enrollment"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()} if folder.is_dir() else {}


def test_enroll_beside_a_serve_is_refused_and_files_and_its_unused_microphone_are_heard(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """While a serve listens, enrolling (spoken, from recordings, or forgetting) would write
    the enrollments it reads: each is refused in one line naming the serve and what to do,
    exit 2, before any sound device is opened or any enrollment written; listening to a file
    is heard beside it, and so is listening on the microphone, which this serve (replaying
    files, as tests do) does not use. Beside a serve on the microphone a microphone listen is
    refused: test_listen_on_the_microphone_is_refused_only_by_a_holder_that_uses_it."""
    env = _env(tmp_path, home)
    monkeypatch.setenv("VOICECOACH_CONFIG", env["VOICECOACH_CONFIG"])
    (home / "enrollment").mkdir(parents=True)
    (home / "enrollment" / "ann.npz").write_bytes(b"ann's enrollment")  # only compared
    before = _enrollments(home)
    sd = FakeSoundDevice([device("USB speakerphone", 1, 2)])
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    with _serving(env, start_wav(tmp_path / "silence.wav", 600.0)) as first:
        stop = f"voicecoach: error: another voicecoach (serve, pid {first.pid}) is using the " \
               f"workout history in {home}; stop it first (Ctrl-C where it runs, or kill " \
               f"{first.pid})"
        for args in (["enroll", "--user", "bob", "--from", str(_takes(tmp_path / "takes"))],
                     ["enroll", "--user", "bob", "--commands", "stop"],
                     ["enroll", "--forget", "--user", "ann"]):
            assert cli.main(args) == 2, args
            assert capsys.readouterr().err.splitlines() == [
                f"{stop}, enroll, then start it again."], args
        assert sd.streams == [] and sd.outputs == []  # the microphone and speaker left alone
        spoken = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
        assert cli.main(["listen", "--engine", "pocketsphinx", str(spoken)]) == 0
        out, err = capsys.readouterr()
        assert [(line.split()[0], line.split()[3]) for line in out.splitlines()] == [
            (f"{spoken}:", "stop")]
        assert "another voicecoach" not in err
        from voicecoach.audio.wav import read_wav_16k

        monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(
            [device("USB speakerphone", 1, 2)], audio=read_wav_16k(spoken), interrupt_after=True))
        assert cli.main(["listen", "--engine", "pocketsphinx"]) == 0
        out, err = capsys.readouterr()
        assert [line.split()[2] for line in out.splitlines()] == ["stop"]
        assert "another voicecoach" not in err
        assert first.poll() is None
    assert _enrollments(home) == before


def test_beside_the_unit_enroll_says_stop_it_enroll_and_start_it_again(
        tmp_path: Path, home: Path) -> None:
    """The systemd unit's serve holding the folder: enroll, a real process, says the two
    systemctl commands around it, exit 2, and writes nothing."""
    env = _env(tmp_path, home)
    with _held_by_the_unit(env, home) as unit:
        found = holder(home)
        assert found is not None and found.unit  # named by its systemd unit
        done = _voicecoach(env, "enroll", "--from", str(_takes(tmp_path / "takes")))
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"voicecoach: error: another voicecoach (serve, pid {unit.pid}) is using the "
            f"workout history in {home}; stop it first (sudo systemctl stop {found.unit}), "
            f"enroll, then start it again (sudo systemctl start {found.unit})."]
        assert done.stdout == ""
    assert _enrollments(home) == {}


def test_listen_on_the_microphone_holds_the_folder_against_a_serve(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The other way round: a serve started while listen hears the microphone is refused in
    one line naming the listen and how to end it; the listen hears on."""
    env = _env(tmp_path, home)
    monkeypatch.setenv("VOICECOACH_CONFIG", env["VOICECOACH_CONFIG"])
    from voicecoach.audio.wav import read_wav_16k

    spoken = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
    sd = FakeSoundDevice([device("USB Mic")], audio=read_wav_16k(spoken), interrupt_after=True)
    opened = sd.RawInputStream
    second: list[subprocess.CompletedProcess[str]] = []

    def opening(**kwargs: Any) -> Any:  # a serve starting as the microphone opens
        second.append(_voicecoach(env, "serve", "--engine", "pocketsphinx", "--audio-in",
                                  str(start_wav(tmp_path / "short.wav", 1.0))))
        return opened(**kwargs)
    monkeypatch.setattr(sd, "RawInputStream", opening)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    assert cli.main(["listen", "--engine", "pocketsphinx"]) == 0
    out, _ = capsys.readouterr()
    assert [line.split()[2] for line in out.splitlines()] == ["stop"]
    [serve] = second
    assert serve.returncode == 2
    pid = os.getpid()
    assert serve.stderr.splitlines() == [
        f"voicecoach: error: another voicecoach (listen, pid {pid}) is using the workout "
        f"history in {home}; stop it first (Ctrl-C where it runs, or kill {pid}) or give "
        "another --data-dir."]
    assert holder(home) is None  # let go at the end


# -- listen on the microphone beside a holder that does not use it ---------------------------
def test_a_typed_run_leaves_the_microphone_to_listen_and_its_session_records_on(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run driven from the keyboard holds the data folder (its history, its treadmill) but
    not the microphone: a listen on the microphone beside it is heard (it was refused as
    beside a serve), the run keeps the folder (listen takes nothing of it), and its session
    goes on to its end and is recorded as it would be alone."""
    env = _env(tmp_path, home)
    monkeypatch.setenv("VOICECOACH_CONFIG", env["VOICECOACH_CONFIG"])
    run = subprocess.Popen([sys.executable, "-m", "voicecoach", "run", "--week", "1"],
                           cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdin is not None and run.stdout is not None
    try:
        for line in run.stdout:  # the coach asks its first safety question: the folder is held
            if "Say yes or no." in line:
                break
        else:
            pytest.fail(f"the run ended before it asked: {run.wait()}")
        from voicecoach.audio.wav import read_wav_16k

        spoken = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
        sd = FakeSoundDevice([device("USB Mic")], audio=read_wav_16k(spoken),
                             interrupt_after=True)
        monkeypatch.setitem(sys.modules, "sounddevice", sd)
        assert cli.main(["listen", "--engine", "pocketsphinx"]) == 0
        out, err = capsys.readouterr()
        assert [line.split()[2] for line in out.splitlines()] == ["stop"]
        assert "another voicecoach" not in err
        found = holder(home)
        assert found is not None and (found.pid, found.command) == (run.pid, "run")
        rest, run_err = run.communicate("stop\n", timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, run_err
    assert "session stopped" in rest
    sessions, _events = _recorded(home)
    assert [row[1:] for row in sessions] == [("run", "stopped")]
    assert holder(home) is None


_HOLD_AS = """
import fcntl, json, os, sys
from voicecoach.history.liveness import process_token
handle = open(sys.argv[1], "a+", encoding="utf-8")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
pid = os.getpid()
text = sys.argv[2].replace("PID", str(pid)).replace("TOKEN", process_token(pid))
handle.seek(0)
handle.truncate()
handle.write(text)
handle.flush()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("written", "heard", "named"), [
    # this version's holders say whether they use the microphone
    ('{"pid": PID, "command": "run", "token": "TOKEN", "unit": "", "microphone": false}',
     True, ""),
    ('{"pid": PID, "command": "serve", "token": "TOKEN", "unit": "", "microphone": true}',
     False, "serve, pid PID"),
    # an older version's lock file does not say: taken as using it (the safe side)
    ('{"pid": PID, "command": "run", "token": "TOKEN", "unit": ""}', False, "run, pid PID"),
    ("PID", False, "pid PID"),
], ids=["run-without-mic", "serve-with-mic", "older-json", "older-bare-pid"])
def test_listen_on_the_microphone_is_refused_only_by_a_holder_that_uses_it(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], written: str, heard: bool, named: str) -> None:
    """What the holder's lock file says about itself decides: a holder that does not use the
    microphone lets a microphone listen be heard beside it; one that uses it, or does not
    say (a lock file of an older version, JSON or a bare pid), refuses it in one line, exit
    2, before the microphone is opened. The holder's lock file is left as it was."""
    env = _env(tmp_path, home)
    monkeypatch.setenv("VOICECOACH_CONFIG", env["VOICECOACH_CONFIG"])
    home.mkdir(parents=True)
    from voicecoach.audio.wav import read_wav_16k

    spoken = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
    sd = FakeSoundDevice([device("USB Mic")], audio=read_wav_16k(spoken), interrupt_after=True)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_AS, str(home / SESSION_LOCK), written],
                            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "held\n"
        lock = (home / SESSION_LOCK).read_text()
        code = cli.main(["listen", "--engine", "pocketsphinx"])
        out, err = capsys.readouterr()
        assert (home / SESSION_LOCK).read_text() == lock
    finally:
        proc.stdin.close()
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
    if heard:
        assert code == 0
        assert [line.split()[2] for line in out.splitlines()] == ["stop"]
        assert "another voicecoach" not in err
        return
    name = named.replace("PID", str(proc.pid))
    assert (code, out) == (2, "")
    assert err.splitlines()[0].startswith(
        f"voicecoach: error: another voicecoach ({name}) is using the workout history in "
        f"{home}; ")
    assert err.splitlines()[0].endswith(", or give listen WAV files instead of the microphone.")
    assert len(err.splitlines()) == 1
    assert sd.streams == []  # the microphone was not opened
