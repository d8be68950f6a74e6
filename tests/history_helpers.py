"""Sessions recorded into a real history for the history tests: one walked by the coach
(:func:`recorded_run`), one finished in a few events (:func:`record_finished`), a Pi's
clocks moved by hand (:class:`Device`), and the real device loop over a room whose history
another program can hold locked (:class:`HeldRoom`)."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from workout_helpers import Run

from voicecoach.events import CueSpoken, Event, PhaseStarted, SessionEnded
from voicecoach.grammar import load_grammar
from voicecoach.history import DB_NAME, HistoryDB, SessionRecorder, dating, session_writer
from voicecoach.history import recorder as recorder_module
from voicecoach.workout.plan import programme_week


def recorded_run(data: Path) -> tuple[Run, HistoryDB, SessionRecorder]:
    """A week-1 session being recorded into ``data``'s history by the coach's own events and
    heartbeats (the recorder's wall clock counts one second a call)."""
    plan = programme_week(1)
    db = HistoryDB.open(data)
    db.conn.execute("PRAGMA synchronous = OFF")  # no fsync per heartbeat: these test logic
    wall = itertools.count()
    recorder = SessionRecorder.open(db, plan, "run", wall_clock=lambda: float(next(wall)))
    run = Run(plan)
    run.coach.listeners.append(recorder.on_event)
    run.coach.tick_hooks.append(recorder.heartbeat)
    return run, db, recorder


def record_finished(db: HistoryDB, week: int, backward_s: float, *,
                    started: dt.datetime | None = None,
                    speeds_mph: tuple[float, float, float] = (0.8, 0.8, 1.0),
                    close: bool = True) -> int:
    """One finished session of ``week`` with ``backward_s`` walked, started at ``started`` (as
    the clock said then; None: now); ``speeds_mph``: the block's speed, its lowest and highest
    allowed (the ending reports the first two)."""
    speed, low, high = speeds_mph
    rec = SessionRecorder.open(db, programme_week(week), "run", started_at=started)
    rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                              duration_s=backward_s, speed_mph=speed, min_speed_mph=low,
                              max_speed_mph=high, incline_pct=0.0))
    rec.on_event(CueSpoken(t=backward_s, state="backward", text="ok", kind="cue"))
    rec.on_event(SessionEnded(t=backward_s, state="done", outcome="finished",
                              backward_s=backward_s, total_s=backward_s, min_speed_mph=speed,
                              max_speed_mph=speed, summary=""))
    if close:
        rec.close()
    return rec.session_id


class Device:
    """A Pi's clocks, moved by hand: the wall clock (set by NTP when the test says so) and
    the seconds since boot, which only go forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, wall: dt.datetime,
                 boot_id: str = "boot-1") -> None:
        self.wall, self.since_boot, self.boot_id = wall, 40.0, boot_id
        monkeypatch.setattr(dating, "wall_now", lambda: self.wall)
        monkeypatch.setattr(recorder_module, "wall_now", lambda: self.wall)
        monkeypatch.setattr(session_writer, "wall_now", lambda: self.wall)
        monkeypatch.setattr(dating, "boot_now", lambda: (self.boot_id, self.since_boot))

    def wait(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.since_boot += seconds

    def monotonic(self) -> float:
        return self.since_boot


class HeldRoom:
    """The real device loop (pocketsphinx, a serve session per "start") over a quiet room in
    which ``words`` are said at their audio times, recording into ``data``'s history, with
    ``other``, another program's connection to that history, to hold its write lock."""

    def __init__(self, data: Path, words: Sequence[tuple[str, float]], seconds: float) -> None:
        from voicecoach.device.loop import AudioClock
        from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, load_clip
        from voicecoach.settings import Settings, SpeechSettings

        self.settings = Settings(data_dir=data, speech=SpeechSettings(engine="pocketsphinx"))
        HistoryDB.open(data).close()
        self.other = sqlite3.connect(data / DB_NAME, isolation_level=None)
        self.clips = [load_clip(word, word) for word, _at in words]
        for clip, (_word, at_s) in zip(self.clips, words, strict=True):
            clip.at_s = at_s
        self.clock = AudioClock()
        self.speaker = EchoWavSpeaker(None, clock=self.clock)
        self.room = ClosedLoopSource(self.speaker, seconds, echo_gain_db=-200.0, clips=self.clips)
        self.recorders: list[SessionRecorder] = []
        self.events: list[Event] = []

    @contextmanager
    def open_session(self, plan: object) -> Iterator[tuple[object, SessionRecorder]]:
        from voicecoach.commands._common import recorded_session

        with recorded_session(self.settings, None, "serve") as (chosen, recorder):
            self.recorders.append(recorder)
            yield chosen, recorder

    def run(self, react: Callable[[float], None], **options: Any) -> None:
        """Run the loop (given ``options`` too) to the room's end, ``react`` called with the
        audio time as it goes; the other program's connection is closed after."""
        from voicecoach.device.loop import DeviceLoop
        from voicecoach.listening.engines import make_recogniser

        self.room.react = react
        sources = iter([self.room])
        loop = DeviceLoop(self.settings, load_grammar("en"),
                          make_recogniser(self.settings.speech, load_grammar("en")),
                          self.speaker, lambda: next(sources, None),  # type: ignore[arg-type]
                          self.open_session,  # type: ignore[arg-type]
                          listeners=[self.events.append], clock=self.clock, **options)
        loop.run()
        self.other.close()


def a_process_gone() -> tuple[int, str]:
    """The pid and start token of a real process that has ended (as a device cut off by a
    power cut or a kill leaves its session)."""
    import subprocess
    import sys

    from voicecoach.history.liveness import process_token

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        token = process_token(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    return child.pid, token


def cut_off_mid_walk(db: HistoryDB, walked_s: float) -> tuple[SessionRecorder, int]:
    """A week-2 session in ``db`` that logged its backward block and a cue ``walked_s`` in, then
    was cut off (no end): its row owned by a real process that has ended. Its recorder and
    that process's pid."""
    rec = SessionRecorder.open(db, programme_week(2), "run")
    rec.on_event(PhaseStarted(t=0.0, state="backward", index=1, kind="backward",
                              duration_s=300.0, speed_mph=0.9, min_speed_mph=0.8,
                              max_speed_mph=1.0, incline_pct=0.0))
    rec.on_event(CueSpoken(t=walked_s, state="backward", text="ok", kind="cue"))
    pid, token = a_process_gone()
    db.conn.execute("UPDATE sessions SET pid = ?, proc_token = ? WHERE id = ?",
                    (pid, token, rec.session_id))
    return rec, pid
