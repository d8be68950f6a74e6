"""What the device-fault tests (test_loop_faults.py, test_listen_faults.py) read back: the
recogniser they run, the history's sessions and device problems, and the fault log lines."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from voicecoach.device import loop_faults
from voicecoach.grammar import load_grammar
from voicecoach.settings import SpeechSettings


def pocketsphinx() -> Any:
    from voicecoach.listening.engines import make_recogniser

    # faults are under test here, not recognition: pocketsphinx hears the fixture voice's
    # briefing answers reliably (as in test_treadmill_replay)
    return make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))


def sessions(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "history.sqlite3") as db:
        return list(db.execute("SELECT source, status FROM sessions ORDER BY id"))


def problems(home: Path) -> list[tuple[int, dict[str, Any]]]:
    with sqlite3.connect(home / "history.sqlite3") as db:
        rows = db.execute("SELECT session_id, data FROM events WHERE type = 'device_problem' "
                          "ORDER BY session_id, seq")
        return [(sid, json.loads(data)) for sid, data in rows]


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == loop_faults.__name__ and r.levelno >= logging.WARNING]


def no_traceback_above_debug(caplog: pytest.LogCaptureFixture, err: str) -> None:
    assert "Traceback" not in err
    loud = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]
    assert loud == []
