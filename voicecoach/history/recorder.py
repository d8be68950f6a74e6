"""Writes one session to the history as it happens: a listener for the coach's events."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
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
from voicecoach.history import dating, unwritten
from voicecoach.history.dating import CLOCK_SET_S, wall_now
from voicecoach.history.db import BUSY_TIMEOUT_MS, DB_NAME, HistoryDB
from voicecoach.history.faults import HistoryLocked
from voicecoach.history.health import write_lock_holder
from voicecoach.history.liveness import process_token
from voicecoach.history.rows import MAX_SPEED_MPH, SOURCES, SessionSummary, finite_or
from voicecoach.history.tally import Tally
from voicecoach.workout.plan import Plan

_LOGGER = logging.getLogger(__name__)

OUTCOMES = ("finished", "stopped", "interrupted")
#: Heartbeats are written at most this often (seconds of workout time and of wall time).
HEARTBEAT_S = 1.0


#: While a session runs, a write waits this long for another program's lock (ms) before the
#: event is kept in memory and retried at the next heartbeat: the coach must not freeze. Only
#: the first write that meets the lock waits: while the history is failing, events are only
#: kept, and the heartbeat's retry does not wait at all.
SESSION_BUSY_MS = 300
#: At the end (:meth:`SessionRecorder.close`), the last writes are tried this many times,
#: ``CLOSE_RETRY_S`` apart, each waiting for a lock as long as any opening, within one
#: :class:`Deadline`.
CLOSE_TRIES, CLOSE_RETRY_S = 4, 1.0
#: The longest the end of a program waits for another program's lock before it gives up
#: (seconds): every try waits as long as any opening (BUSY_TIMEOUT_MS), with a pause between
#: tries. It is one budget for every session whose end is still unwritten (the device loop
#: closes them all within one :class:`Deadline`), so the service's stop timeout must leave
#: it this long however many there are (voicecoach/systemd/voicecoach.service).
CLOSE_WORST_S = CLOSE_TRIES * BUSY_TIMEOUT_MS / 1000 + (CLOSE_TRIES - 1) * CLOSE_RETRY_S
#: Events kept in memory at most while the history cannot be written (a session has a few
#: hundred); beyond it the oldest unwritten ones are dropped (and counted).
MAX_PENDING = 20_000


#: Sessions of this process that are over but whose end the history has not taken yet
#: (:meth:`SessionRecorder.end` with another program holding it locked), in the order they
#: ended: a session planned meanwhile counts them as they ended (:func:`sessions_for_plan`).
_unwritten_ends: dict[SessionRecorder, None] = {}


class Deadline:
    """One time limit shared by several waits: the closes at the end of a program, which
    must all be over before the service's stop timeout, however many sessions are closed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def left(self) -> float:
        """Seconds still to spend (0 once it has passed)."""
        return max(0.0, self.at - self._clock())


class SessionRecorder:
    """Records a session: the row exists from :meth:`open`, each event is committed the moment
    it arrives (so a crash or power cut loses at most the event being written), and
    :class:`SessionEnded` or :meth:`close` sets how it ended. A history another program holds
    locked does not hold the start up: the row then waits in memory with the events
    (``session_id`` is 0 meanwhile) and is written first by the first write that gets the
    lock, at the latest by :meth:`close`.

    ``on_event`` never raises: a full disk or a locked file must not stop a workout. An event
    that cannot be written is kept in memory, in order, and written by the next heartbeat
    once the disk allows (later events are only kept meanwhile); the first failure is logged
    and ``on_problem`` (if set) is called once, to tell the user. :attr:`incomplete` says
    whether anything was still unwritten when the recorder closed (the command's exit code
    says so).

    A session that ends while the history cannot take the rest is either closed by
    :meth:`close`, which waits for it (the end of a program), or ended by :meth:`end`, which
    does not: the rest is written by the next :meth:`heartbeat` that can, and the record is
    complete when :attr:`closed` (the device loop, which must go on hearing while another
    program holds the history).
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
        self.on_problem: Callable[[Exception], None] | None = None
        #: How the recorder logs a failure; the CLI, which prints its own one line, lowers it.
        self.log_level = logging.ERROR
        self.told = False
        self.dropped = 0
        self._pending: list[tuple[int, Event, dict[str, Any]]] = []
        self._telling = False
        self._beat_t = self._beat_wall = float("-inf")
        self._wall_clock = wall_clock
        self._opened_wall = wall_clock()
        #: Whether the start was read from the wall clock (a start given by the caller stands).
        self.clock_start = False
        self._sleep: Callable[[float], None] = time.sleep
        #: The session's row while it is not written yet (its INSERT's values).
        self._row: tuple[Any, ...] | None = None
        #: Its INSERT's values, kept (:meth:`summary`).
        self._columns: tuple[Any, ...] = (started_at.isoformat(timespec="seconds"), "", None,
                                          "run", 0, db.host, "", "", None, None, None, "", None)
        self._closing = False
        #: How the session ended, once :meth:`end` said it was over (None: it is not).
        self._ended: str | None = None
        self._wait_ms: int | None = None
        #: The deadline :meth:`close` keeps (None: its own, CLOSE_WORST_S from the close): the
        #: device loop gives every record it closes at its end the same one.
        self.close_by: Deadline | None = None
        self._close_ms = BUSY_TIMEOUT_MS
        #: The side file an end given up at :meth:`close` is kept in (history/unwritten.py;
        #: None: none, or it could not be written either, then ``_aside_problem`` says why).
        self.kept_in: Path | None = None
        self._aside = False
        self._aside_problem: Exception | None = None
        self._set_wait()

    @classmethod
    def open(cls, db: HistoryDB, plan: Plan, source: str, *,
             started_at: datetime | None = None, notes: str = "",
             wall_clock: Callable[[], float] = time.monotonic) -> SessionRecorder:
        """Create the session row at once (status 'running', this process's pid and host),
        or, when another program holds the history locked, as soon as it lets go (waiting
        for it no longer than any write of a session does). ``started_at`` defaults to now;
        ``wall_clock`` paces :meth:`heartbeat`."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        started = (started_at or wall_now()).astimezone()
        # where in this boot a start read from the wall clock was: it is dated again if the
        # clock is set later in the boot (history/dating.py); a start given by the caller stands
        boot_id, boot_s = dating.boot_now() if started_at is None else ("", None)
        backward = [p for p in plan.phases if p.kind == "backward"]
        all_notes = "\n".join([*plan.notes, *([notes] if notes else [])])
        pid = os.getpid()
        recorder = cls(db, 0, started, wall_clock)
        recorder.clock_start = started_at is None
        recorder._row = recorder._columns = (
            started.isoformat(timespec="seconds"), plan.name, plan.week, source, pid, db.host,
            process_token(pid), all_notes, plan.backward_s,
            backward[0].speed_mph if backward else None,
            backward[0].incline_pct if backward else None, boot_id, boot_s if boot_id else None)
        try:
            recorder._write_row()
        except HistoryLocked as exc:  # kept with the events; anything else refuses the start
            recorder._failed(exc)
        return recorder

    def _write_row(self) -> None:
        """Insert the session's row if it is still only in memory; first what the opening
        left undone when it met another program's lock (HistoryDB.tidy_owed), so that a
        session an exit kept beside the history is merged before this one, as it was walked
        before it, and this boot's sessions are dated again while it lasts."""
        if self._row is None:
            return
        if self.db.tidy_owed:
            self.db.tidy()
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO sessions (started_at, plan, week, source, status, pid, host,"
                " proc_token, notes, planned_backward_s, speed_mph, incline_pct, boot_id,"
                " boot_s) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._row)
            self.session_id = int(cursor.lastrowid or 0)
        self.db.writing.add(self.session_id)
        _LOGGER.log(logging.DEBUG if self._aside else logging.INFO,
                    "history: session %d started (%s, %s)", self.session_id, self._row[1],
                    self._row[3])
        self._row = None

    @property
    def _name(self) -> str:
        return f"session {self.session_id}" if self._row is None else "the new session"

    def _set_wait(self) -> None:
        """How long the next write waits for another program's lock: SESSION_BUSY_MS; not at
        all while the history is failing (a write met the lock already: only the heartbeat
        retries, and it must not freeze the coach each second); at close as long as any
        opening (BUSY_TIMEOUT_MS), or what is left of the close's deadline if less."""
        ms = (self._close_ms if self._closing else 0 if self.problem is not None
              else SESSION_BUSY_MS)
        if ms != self._wait_ms:
            self.db.busy_timeout(ms)
            self._wait_ms = ms

    @property
    def pending(self) -> int:
        """Events not yet written (kept in memory)."""
        return len(self._pending)

    @property
    def incomplete(self) -> bool:
        """Whether the history lacks part of this session (events, or how it ended)."""
        return (bool(self._pending) or self.dropped > 0 or self._row is not None
                or (self.closed and not self.outcome))

    # ------------------------------------------------------------------ events
    def on_event(self, event: Event) -> None:
        """Listener for the coach: write ``event`` (and what it means) in one transaction;
        when that fails, keep it to write later."""
        if self.closed or self._ended is not None:
            _LOGGER.debug("history: event after close ignored: %s", event.type.value)
            return
        data = event.to_dict()
        self.tally.feed(data)
        self.seq += 1
        self._pending.append((self.seq, event, data))
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
        if self.problem is None:  # while failing, kept for the heartbeat (or close) to retry
            self._flush()
        self._tell()

    def _flush(self) -> bool:
        """Write the row (if not yet) and the events kept so far, in order; False (and kept)
        when the disk says no."""
        self._set_wait()
        written = 0
        if self._row is not None:
            try:
                self._write_row()
            except (VoicecoachError, OSError, sqlite3.Error) as exc:
                self._failed(exc)
                return False
            written += 1
        while self._pending:
            seq, event, data = self._pending[0]
            try:
                self._write(seq, event, data)
            except (VoicecoachError, OSError, sqlite3.Error) as exc:
                self._failed(exc)
                return False
            self._pending.pop(0)
            written += 1
        if self.problem is not None and written and not self._aside:
            _LOGGER.warning("history: %s is being written again (%d events kept "
                            "meanwhile)", self._name, written)
            self.problem = None
            self._set_wait()
        return True

    def _failed(self, exc: Exception) -> None:
        if self.problem is None and not self._aside:
            _LOGGER.log(self.log_level, "history: cannot record %s now (kept in memory, "
                        "retried): %s", self._name, exc)
        self.problem = exc

    def _tell(self) -> None:
        """Tell the user once per session (outside any write: telling emits an event)."""
        if self.problem is None or self.told or self._telling or self.on_problem is None:
            return
        self.told = self._telling = True
        try:
            self.on_problem(self.problem)
        finally:
            self._telling = False

    def _sid(self) -> int:
        """This session's id, followed into a file that replaced the history (call inside a
        transaction: that is where a replacement is taken)."""
        self.session_id = self.db.renumbered.get(self.session_id, self.session_id)
        return self.session_id

    def _write(self, seq: int, event: Event, data: dict[str, Any]) -> None:
        ended = ""
        with self.db.transaction() as conn:
            sid = self._sid()
            conn.execute(
                "INSERT OR REPLACE INTO events (session_id, seq, t, type, state, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (sid, seq, event.t, event.type.value, event.state,
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
                ended = self._finish(conn, event.outcome, event.t, event)
            else:
                conn.execute("UPDATE sessions SET last_t = ?, backward_s = ?, total_s = ?"
                             " WHERE id = ?", (*self._progress(), sid))
        if ended:
            self.outcome = ended

    def _finish(self, conn: Any, outcome: str, t: float, ended: SessionEnded | None) -> str:
        """Set how the session ended, in ``conn``'s transaction; returns the outcome stored
        (the caller keeps it once the transaction has committed)."""
        self._sid()
        if outcome not in OUTCOMES:
            _LOGGER.warning("history: unknown outcome %r recorded as interrupted", outcome)
            outcome = "interrupted"
        tally = self.tally
        backward, total, lo, hi = self._end_figures(t, ended)
        now = wall_now()
        began = self._start_at_end(now)
        if began != self.started_at:
            _LOGGER.log(logging.DEBUG if self._aside else logging.WARNING,
                        "history: the clock was set during session %d (by %+.0f s); its "
                        "start is recorded as %s", self.session_id,
                        (began - self.started_at).total_seconds(),
                        began.isoformat(timespec="seconds"))
            self.started_at = began
            conn.execute("UPDATE sessions SET started_at = ? WHERE id = ?",
                         (began.isoformat(timespec="seconds"), self.session_id))
        # A sped-up session (the demo) ran its workout seconds in less wall time: it ended
        # now, never in the future.
        end = min(self.started_at + timedelta(seconds=total), now)
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
        _LOGGER.log(logging.DEBUG if self._aside else logging.INFO,
                    "history: session %d %s after %.0f s (%.0f s backward)",
                    self.session_id, outcome, total, backward)
        return outcome

    def _start_at_end(self, now: datetime) -> datetime:
        """The session's start as its end stores it, the wall clock reading ``now``: when the
        clock was set during the session (the start read from it and the time that passed
        disagree by more than CLOCK_SET_S), the later reading is the one to trust (NTP), so
        the start is worked back from it by the time that passed; else the start as read."""
        elapsed = finite_or(self._wall_clock() - self._opened_wall, 0.0, 0.0, 1e7) or 0.0
        began = now - timedelta(seconds=elapsed)
        if self.clock_start and abs((began - self.started_at).total_seconds()) > CLOCK_SET_S:
            return began
        return self.started_at

    def _end_figures(self, t: float, ended: SessionEnded | None
                     ) -> tuple[float, float, float | None, float | None]:
        """(backward_s, total_s, min and max speed) of a session that ended at ``t``, as
        stored: the coach's own figures when ``ended`` gives them, else the tally's; only
        believable numbers (a later start must never trip over this row)."""
        tally = self.tally
        backward, total = tally.backward_s, max(t, tally.last_t)
        lo, hi = tally.min_speed_mph, tally.max_speed_mph
        if ended is not None:  # the coach's own figures win when it gives them
            backward, total = ended.backward_s, ended.total_s or total
            lo = ended.min_speed_mph or lo
            hi = ended.max_speed_mph or hi
        total = finite_or(total, 0.0) or 0.0
        backward = min(finite_or(backward, 0.0) or 0.0, total)
        return (backward, total, finite_or(lo, None, 0, MAX_SPEED_MPH),
                finite_or(hi, None, 0, MAX_SPEED_MPH))

    def summary(self) -> SessionSummary:
        """The session as the history will read it once its end is written (its status
        'running' while it runs): what a plan made meanwhile counts
        (:func:`sessions_for_plan`). Its id is 0 while its row is not written."""
        (started, plan, week, source, _pid, _host, _token, notes, planned, speed, incline,
         boot_id, boot_s) = self._columns
        ended = next((e for _seq, e, _data in reversed(self._pending)
                      if isinstance(e, SessionEnded)), None)
        status = (self.outcome or (ended.outcome if ended is not None else None)
                  or self._ended or "running")
        if status not in OUTCOMES and status != "running":
            status = "interrupted"
        started = self.started_at
        if status == "running":
            backward, total, _last = self._progress()
            lo = hi = end = None
        else:  # dated as its end will store it (_finish), not only as the clock said then
            now = wall_now()
            backward, total, lo, hi = self._end_figures(self.tally.last_t, ended)
            started = self._start_at_end(now)
            end = min(started + timedelta(seconds=total), now)
        tally = self.tally
        return SessionSummary(
            self.session_id if self._row is None else 0, started, plan, week, source,
            status, end, backward, total, lo, hi, planned, speed, incline,
            finite_or(tally.mean_backward_speed_mph, None, 0, MAX_SPEED_MPH),
            tally.pain_reports, notes,
            belt_speed_mph=finite_or(tally.belt_speed_mph, None, 0, MAX_SPEED_MPH),
            belt_max_speed_mph=finite_or(tally.belt_max_mph, None, 0, MAX_SPEED_MPH),
            belt_incline_pct=finite_or(tally.belt_incline_pct, None, -100, 100),
            belt_distance_m=finite_or(tally.belt_distance_m, None, 0, 1e7),
            boot_id=boot_id or "", boot_s=boot_s if boot_id else None)

    def _progress(self) -> tuple[float, float, float]:
        """(last_t, backward_s, total_s) as stored: believable numbers only."""
        last = finite_or(self.tally.last_t, 0.0) or 0.0
        return last, min(finite_or(self.tally.backward_s, 0.0) or 0.0, last), last

    def heartbeat(self, t: float) -> None:
        """Call on every coach tick: stores the workout time (at most once per HEARTBEAT_S of
        workout time and of wall time), so a crash between two events loses seconds, not
        the minute until the next cue; events kept in memory are retried first. Never
        raises. After :meth:`end`, it writes what the end left, once per HEARTBEAT_S of the
        caller's time (each try fails at once while the history is held), until
        :attr:`closed`."""
        if self._ended is not None:
            if not self.closed and t - self._beat_t >= HEARTBEAT_S:
                self._beat_t = t
                if self._write_end(self._ended):
                    self._close_now()
            return
        wall = self._wall_clock()
        if (self.closed or self.outcome or t - self._beat_t < HEARTBEAT_S
                or wall - self._beat_wall < HEARTBEAT_S):
            return
        self._beat_t, self._beat_wall = t, wall
        self.tally.advance(t)
        if not self._flush():
            self._tell()
            return
        try:
            with self.db.transaction() as conn:
                conn.execute("UPDATE sessions SET last_t = ?, backward_s = ?, total_s = ?"
                             " WHERE id = ?", (*self._progress(), self._sid()))
        except (VoicecoachError, OSError, sqlite3.Error) as exc:
            self._failed(exc)
            self._tell()

    # ------------------------------------------------------------------ ending
    def end(self, outcome: str = "interrupted") -> bool:
        """The session is over (no event follows; if no SessionEnded was recorded it ends as
        ``outcome``): what is still unwritten is written now if the history takes it, waiting
        for a lock no longer than any write of a session; otherwise it is left to
        :meth:`heartbeat`, which does not wait, or to :meth:`close`, which does. Returns
        whether the record is complete (then :attr:`closed`)."""
        if self.closed:
            return not self.incomplete
        if self._ended is None:
            self._ended = outcome
        if not self._write_end(self._ended):
            _unwritten_ends[self] = None  # a plan made meanwhile counts it as it ended
            return False
        self._close_now()
        return True

    def _write_end(self, outcome: str) -> bool:
        """One try at the end's writes: the events kept, then how the session ended; False
        (all kept) when the history does not take them."""
        self._set_wait()
        if not self._flush():
            return False
        if self.outcome:
            return True
        try:
            with self.db.transaction() as conn:
                stored = self._finish(conn, outcome, self.tally.last_t, None)
        except (VoicecoachError, OSError, sqlite3.Error) as exc:
            self._failed(exc)
            return False
        self.outcome = stored
        return True

    def close(self, outcome: str = "interrupted") -> None:
        """Stop recording. If no SessionEnded was recorded, the session ends as ``outcome``
        (the SIGTERM path passes "stopped"; after :meth:`end`, as that said). What is still
        unwritten is tried up to CLOSE_TRIES times, waiting for locks as long as any opening
        does, but never past :attr:`close_by` (by default CLOSE_WORST_S from now): once it
        has passed, one more try that does not wait, then it is given up (one log line says
        what is lost) and written instead into a side file that nobody else holds, merged into
        the history at its next opening (:meth:`_keep_aside`); :attr:`incomplete` says if the
        history lacks it. Safe to call more than once."""
        if self.closed:
            return
        if self._ended is None:
            self._ended = outcome
        outcome = self._ended
        deadline = self.close_by or Deadline(CLOSE_WORST_S)
        self._closing = True
        for attempt in range(CLOSE_TRIES):
            if attempt:
                pause = min(CLOSE_RETRY_S, deadline.left())
                if pause <= 0:
                    break
                self._sleep(pause)
            self._close_ms = int(min(BUSY_TIMEOUT_MS, deadline.left() * 1000))
            if self._write_end(outcome) or deadline.left() <= 0:
                break
        if self._row is not None or self._pending or not self.outcome:
            self.kept_in = self._keep_aside(outcome)
        self._close_now()

    def _keep_aside(self, outcome: str) -> Path | None:
        """Write what the history did not take (the row if it never reached it, the events
        kept, the end) into a new side file beside it (history/unwritten.py), as the history
        would have held it; never waits (nobody else knows the file). It is written under a
        part name no reader lists and renamed into place once complete, so no opening or read
        meets it half-written (empty, or its schema without the session, was 'cannot be read
        ... move it aside' for a good file). The recorder is left as
        it was (the history still lacks the session). Returns the file, or None when it
        cannot be written either (then nothing of it is left)."""
        db, sid, row, pending = self.db, self.session_id, self._row, list(self._pending)
        outcome_was, problem, wait_ms = self.outcome, self.problem, self._wait_ms
        try:
            part, conn = unwritten.create(db.path, None if row is not None else sid)
        except (OSError, sqlite3.Error) as exc:
            self._aside_problem = exc
            return None
        self.db, self._row, self._wait_ms = HistoryDB(part, conn), self._columns, None
        self._aside = True
        try:
            kept = self._write_end(outcome)
            self._aside_problem = None if kept else self.problem
        finally:
            self.db.close()
            self.db, self.session_id, self._row, self._pending = db, sid, row, pending
            self.outcome, self.problem, self._wait_ms, self._aside = (outcome_was, problem,
                                                                      wait_ms, False)
        if kept:  # complete: only now under a side file's name (never seen half-written)
            try:
                return unwritten.publish(part, db.path)
            except OSError as exc:
                self._aside_problem = exc
        with contextlib.suppress(OSError):
            part.unlink()
        return None

    def _close_now(self) -> None:
        self.closed = True
        self.db.writing.discard(self.session_id)
        _unwritten_ends.pop(self, None)
        if self.incomplete:
            # given up: what is lost, in the log, with the figures a person would need
            summary = self.summary()
            lost = len(self._pending) + self.dropped
            if self._row is not None:
                what = (f"the session started {summary.started_at.isoformat(timespec='seconds')}"
                        f" could not be written at all ({lost} events)")
            elif self.kept_in is not None:
                what = (f"session {self.session_id} could not be written in full ({lost} events"
                        + ("" if self.outcome else ", nor how it ended") + ")")
            else:
                what = (f"session {self.session_id} could not be written in full ({lost} events"
                        + ("" if self.outcome else ", nor how it ended") + "; `voicecoach "
                        "history` shows it as interrupted, from what reached the disk)")
            if self.kept_in is not None:
                _LOGGER.warning("history: %s: %s; it is kept in %s, and merged into the "
                                "history at its next opening; it ended %s after %.0f s (%.0f s "
                                "backward)", what, self.problem, self.kept_in, summary.status,
                                summary.total_s, summary.backward_s)
                return
            if self._aside_problem is not None:
                what += f", nor kept beside it ({self._aside_problem})"
            _LOGGER.log(self.log_level, "history: %s; it ended %s after %.0f s (%.0f s "
                        "backward): %s", what, summary.status, summary.total_s,
                        summary.backward_s, self.problem)

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Ctrl-C or a SIGTERM handler's sys.exit: the user or the system asked us to stop.
        asked = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        self.close("stopped" if asked else "interrupted")


def tidy_unless_locked(db: HistoryDB) -> None:
    """What an opening does (:meth:`HistoryDB.tidy`: sessions kept beside the history merged,
    sessions cut off earlier marked as interrupted, this boot's sessions dated again) unless
    another program holds the history locked: then it is owed (``db.tidy_owed``) rather than
    hold up the start of a session, and done once the lock is let go, just before the
    session's row is written (:meth:`SessionRecorder._write_row`)."""
    db.busy_timeout(0)
    try:
        db.tidy()
    except HistoryLocked as exc:
        db.tidy_owed = True
        _LOGGER.info("history: sessions kept beside the history are merged, and sessions cut "
                     "off earlier marked and dated again, once it is let go (%s)",
                     exc.one_line())
    finally:
        db.busy_timeout(BUSY_TIMEOUT_MS)  # reads wait as in any opening


def tidy_if_let_go(data_dir: Path) -> bool:
    """What an opening does (:meth:`HistoryDB.tidy`) if no other program holds the history
    locked now, without waiting for one that does: False while it is held (try again later:
    the device loop does, at its heartbeats, after a start-up that met the lock), True once
    done, or once it fails for another reason (said in the log; every opening tries
    again). Never raises."""
    path = Path(data_dir) / DB_NAME
    if write_lock_holder(path, 0.0):
        return False
    try:
        with HistoryDB.open(data_dir, recover=False) as db:
            db.busy_timeout(0)
            db.tidy()
    except HistoryLocked:  # taken again between the look and the tidy
        return False
    except (VoicecoachError, OSError, sqlite3.Error) as exc:
        _LOGGER.warning("history: sessions cut off earlier are marked at the next opening "
                        "(%s)", exc.one_line() if isinstance(exc, VoicecoachError) else exc)
        return True
    _LOGGER.info("history: %s is let go; sessions cut off earlier are marked, and dated "
                 "again, now", path)
    return True

def sessions_for_plan(db: HistoryDB) -> list[SessionSummary]:
    """``db``'s sessions as a plan must see them: a session of this process that is over but
    whose end the history has not taken yet (another program holds it locked) as it ended,
    with its figures, not as 'running' (which no plan counts) or missing (its row not written
    yet, placed after every written one)."""
    sessions = {s.id: s for s in db.sessions()}
    here = Path(db.path).resolve()
    top = max(sessions, default=0)
    for recorder in list(_unwritten_ends):
        if recorder.closed or Path(recorder.db.path).resolve() != here:
            continue
        summary = recorder.summary()
        if summary.id not in sessions or summary.id == 0:
            top += 1
            summary = replace(summary, id=top)
        sessions[summary.id] = summary
    return list(sessions.values())
