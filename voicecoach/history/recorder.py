"""Writes one session to the history as it happens: a listener for the coach's events."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from voicecoach.errors import VoicecoachError
from voicecoach.events import (
    CommandHeard,
    CommandRefused,
    Event,
    PainReported,
    PhaseStarted,
    SessionEnded,
)
from voicecoach.history.db import HistoryDB
from voicecoach.history.liveness import process_token
from voicecoach.history.summary import MAX_SPEED_MPH, SOURCES, finite_or
from voicecoach.history.tally import Tally
from voicecoach.workout.plan import Plan

_LOGGER = logging.getLogger(__name__)

OUTCOMES = ("finished", "stopped", "interrupted")
#: Heartbeats are written at most this often (seconds of workout time and of wall time).
HEARTBEAT_S = 1.0


class SessionRecorder:
    """Records a session: the row exists from :meth:`open`, each event is committed the moment
    it arrives (so a crash or power cut loses at most the event being written), and
    :class:`SessionEnded` or :meth:`close` sets how it ended.

    ``on_event`` never raises: a full disk must not stop a workout. The first failure is
    logged and kept in :attr:`problem`; later events are still tried.
    """

    def __init__(self, db: HistoryDB, session_id: int, started_at: datetime,
                 wall_clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.session_id = session_id
        self.started_at = started_at
        self.tally = Tally()
        self.seq = 0
        self.outcome = ""
        self.closed = False
        self.problem: Exception | None = None
        self._beat_t = self._beat_wall = float("-inf")
        self._wall_clock = wall_clock

    @classmethod
    def open(cls, db: HistoryDB, plan: Plan, source: str, *,
             started_at: datetime | None = None, notes: str = "",
             wall_clock: Callable[[], float] = time.monotonic) -> SessionRecorder:
        """Create the session row at once (status 'running', this process's pid and host).
        ``started_at`` defaults to now; ``wall_clock`` paces :meth:`heartbeat`."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        started = (started_at or datetime.now()).astimezone()
        backward = [p for p in plan.phases if p.kind == "backward"]
        all_notes = "\n".join([*plan.notes, *([notes] if notes else [])])
        pid = os.getpid()
        with db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO sessions (started_at, plan, week, source, status, pid, host,"
                " proc_token, notes, planned_backward_s, speed_mph, incline_pct)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (started.isoformat(timespec="seconds"), plan.name, plan.week, source, pid,
                 db.host, process_token(pid), all_notes, plan.backward_s,
                 backward[0].speed_mph if backward else None,
                 backward[0].incline_pct if backward else None))
            session_id = int(cursor.lastrowid or 0)
        _LOGGER.info("history: session %d started (%s, %s)", session_id, plan.name, source)
        return cls(db, session_id, started, wall_clock)

    # ------------------------------------------------------------------ events
    def on_event(self, event: Event) -> None:
        """Listener for the coach: write ``event`` (and what it means) in one transaction."""
        if self.closed:
            _LOGGER.debug("history: event after close ignored: %s", event.type.value)
            return
        try:
            self._write(event)
        except (VoicecoachError, OSError, sqlite3.Error) as exc:
            if self.problem is None:
                _LOGGER.error("history: cannot record session %d: %s", self.session_id, exc)
            self.problem = exc

    def _write(self, event: Event) -> None:
        data = event.to_dict()
        self.tally.feed(data)
        self.seq += 1
        sid = self.session_id
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO events (session_id, seq, t, type, state, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (sid, self.seq, event.t, event.type.value, event.state,
                 json.dumps(data, ensure_ascii=False, default=str)))
            if isinstance(event, PhaseStarted):
                conn.execute(
                    "INSERT INTO phases (session_id, idx, kind, t, duration_s, speed_mph,"
                    " min_speed_mph, max_speed_mph, incline_pct) VALUES (?,?,?,?,?,?,?,?,?)",
                    (sid, event.index, event.kind, event.t, event.duration_s, event.speed_mph,
                     event.min_speed_mph, event.max_speed_mph, event.incline_pct))
            elif isinstance(event, CommandHeard):
                conn.execute(
                    "INSERT INTO commands (session_id, t, command, phrase, source, accepted,"
                    " confidence) VALUES (?, ?, ?, ?, ?, 1, ?)",
                    (sid, event.t, event.command, event.phrase, event.source, event.confidence))
            elif isinstance(event, CommandRefused):
                conn.execute(
                    "INSERT INTO commands (session_id, t, command, accepted, reason)"
                    " VALUES (?, ?, ?, 0, ?)", (sid, event.t, event.command, event.reason))
            elif isinstance(event, PainReported):
                conn.execute("INSERT INTO pain_reports (session_id, t, state, phrase)"
                             " VALUES (?, ?, ?, ?)", (sid, event.t, event.state, event.phrase))
            if isinstance(event, SessionEnded) and not self.outcome:
                self._finish(conn, event.outcome, event.t, event)
            else:
                conn.execute("UPDATE sessions SET last_t = ?, backward_s = ?, total_s = ?"
                             " WHERE id = ?", (*self._progress(), sid))

    def _finish(self, conn: Any, outcome: str, t: float, ended: SessionEnded | None) -> None:
        if outcome not in OUTCOMES:
            _LOGGER.warning("history: unknown outcome %r recorded as interrupted", outcome)
            outcome = "interrupted"
        tally = self.tally
        backward, total = tally.backward_s, max(t, tally.last_t)
        lo, hi = tally.min_speed_mph, tally.max_speed_mph
        if ended is not None:  # the coach's own figures win when it gives them
            backward, total = ended.backward_s, ended.total_s or total
            lo = ended.min_speed_mph or lo
            hi = ended.max_speed_mph or hi
        # Only believable numbers are stored: a later start must never trip over this row.
        total = finite_or(total, 0.0) or 0.0
        backward = min(finite_or(backward, 0.0) or 0.0, total)
        lo, hi = finite_or(lo, None, 0, MAX_SPEED_MPH), finite_or(hi, None, 0, MAX_SPEED_MPH)
        # A sped-up session (the demo) ran its workout seconds in less wall time: it ended
        # now, never in the future.
        end = min(self.started_at + timedelta(seconds=total), datetime.now().astimezone())
        conn.execute(
            "UPDATE sessions SET status = ?, ended_at = ?, backward_s = ?, total_s = ?,"
            " last_t = ?, min_speed_mph = ?, max_speed_mph = ?, backward_speed_mph = ?,"
            " belt_speed_mph = ?, belt_max_speed_mph = ?, belt_incline_pct = ?,"
            " belt_distance_m = ? WHERE id = ?",
            (outcome, end.isoformat(timespec="seconds"), backward, total, total, lo, hi,
             finite_or(tally.mean_backward_speed_mph, None, 0, MAX_SPEED_MPH),
             finite_or(tally.belt_speed_mph, None, 0, MAX_SPEED_MPH),
             finite_or(tally.belt_max_mph, None, 0, MAX_SPEED_MPH),
             finite_or(tally.belt_incline_pct, None, -100, 100),
             finite_or(tally.belt_distance_m, None, 0, 1e7), self.session_id))
        self.outcome = outcome
        _LOGGER.info("history: session %d %s after %.0f s (%.0f s backward)",
                     self.session_id, outcome, total, backward)

    def _progress(self) -> tuple[float, float, float]:
        """(last_t, backward_s, total_s) as stored: believable numbers only."""
        last = finite_or(self.tally.last_t, 0.0) or 0.0
        return last, min(finite_or(self.tally.backward_s, 0.0) or 0.0, last), last

    def heartbeat(self, t: float) -> None:
        """Call on every coach tick: stores the workout time (at most once per HEARTBEAT_S of
        workout time and of wall time), so a crash between two events loses seconds, not
        the minute until the next cue. Never raises."""
        wall = self._wall_clock()
        if (self.closed or self.outcome or t - self._beat_t < HEARTBEAT_S
                or wall - self._beat_wall < HEARTBEAT_S):
            return
        self._beat_t, self._beat_wall = t, wall
        self.tally.advance(t)
        try:
            with self.db.transaction() as conn:
                conn.execute("UPDATE sessions SET last_t = ?, backward_s = ?, total_s = ?"
                             " WHERE id = ?", (*self._progress(), self.session_id))
        except VoicecoachError as exc:
            if self.problem is None:
                _LOGGER.error("history: cannot record session %d: %s", self.session_id, exc)
            self.problem = exc

    # ------------------------------------------------------------------ ending
    def close(self, outcome: str = "interrupted") -> None:
        """Stop recording. If no SessionEnded was recorded, the session ends as ``outcome``
        (the SIGTERM path passes "stopped"). Safe to call more than once."""
        if self.closed:
            return
        if not self.outcome:
            try:
                with self.db.transaction() as conn:
                    self._finish(conn, outcome, self.tally.last_t, None)
            except VoicecoachError as exc:
                _LOGGER.error("history: cannot close session %d: %s", self.session_id, exc)
                self.problem = self.problem or exc
        self.closed = True

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Ctrl-C or a SIGTERM handler's sys.exit: the user or the system asked us to stop.
        asked = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        self.close("stopped" if asked else "interrupted")
