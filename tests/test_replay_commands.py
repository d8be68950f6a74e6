"""`run --audio-in` and `serve --audio-in` replay through the one device loop: same WAV, same session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES
from replay_helpers import start_wav

from voicecoach import cli
from voicecoach.commands.run import INPUT_ENDED
from voicecoach.history import HistoryDB

#: A recorded stream: "start workout" at 5 s, then commands under belt noise (stop at 65 s).
STREAM = FIXTURES / "streams" / "stream_c.wav"


def _replay(command: str, wav: Path, home: Path,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = cli.main(["--data-dir", str(home), command, "--week", "1", "--engine",
                     "pocketsphinx", "--audio-in", str(wav)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _states(lines: list[str]) -> list[str]:
    return [line.split("] ", 1)[1] for line in lines if "] state: " in line]


def _row(home: Path) -> tuple[Any, ...]:
    with HistoryDB.open(home) as db:
        [session] = db.sessions()
        events = db.events(session.id)
    return (session.plan, session.status, session.backward_s, session.total_s,
            [(e["type"], e.get("state"), e["t"]) for e in events])


def test_run_and_serve_replay_one_wav_as_the_same_session(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_code, run_out, run_err = _replay("run", STREAM, tmp_path / "run", capsys)
    serve_code, serve_out, _ = _replay("serve", STREAM, tmp_path / "serve", capsys)
    assert run_code == serve_code == 0, run_err
    # run stops after its one session; serve listens on to the end of the file
    states = _states(run_out)
    assert states[0] == "state: idle -> briefing (start)"  # it waited for "start", as serve
    assert _states(serve_out)[:len(states)] == states
    session = [line for line in run_out if "session " in line]
    assert session == [line for line in serve_out if "session " in line] and len(session) == 1
    run_row, serve_row = _row(tmp_path / "run"), _row(tmp_path / "serve")
    assert run_row == serve_row
    assert run_row[0] == "week 1" and run_row[1] in ("stopped", "finished")
    assert run_row[4][0][2] >= 5.0  # the session began at the spoken "start", not at 0
    with HistoryDB.open(tmp_path / "run") as db:
        assert [s.source for s in db.sessions()] == ["replay"]  # a replay counts for nothing


def test_run_replay_that_ends_in_the_briefing_stops_the_session_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _replay("run", start_wav(tmp_path / "start.wav", 12.0, 1.0), tmp_path / "h",
                             capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == INPUT_ENDED and "Traceback" not in err
    assert "state: briefing -> stopped (stop)" in _states(out)
    assert _row(tmp_path / "h")[1] == "stopped"


def test_run_replay_without_start_runs_no_session(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = start_wav(tmp_path / "quiet.wav", 2.0)
    code, out, err = _replay("run", wav, tmp_path / "h", capsys)
    assert code == 1 and out == []
    assert err.strip().splitlines()[-1] == (
        f"voicecoach: {wav} ended before 'start' was heard; no session was run")
    with HistoryDB.open(tmp_path / "h") as db:
        assert db.sessions() == []
