"""The writing half of a session's record (history/recorder.py's SessionRecorder): its row,
each event in its own transaction as it comes, and its end, with what the history does not
take (a full disk, another program's lock) kept in memory, in order, to write later."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from voicecoach.errors import VoicecoachError, describe, where_raised
from voicecoach.events import (
    CommandHeard,
    CommandRefused,
    Event,
    PainReported,
    PhaseStarted,
    SessionEnded,
)
from voicecoach.history.dating import CLOCK_SET_S, wall_now
from voicecoach.history.db import BUSY_TIMEOUT_MS, HistoryDB
from voicecoach.history.faults import is_lock
from voicecoach.history.rows import MAX_SPEED_MPH, finite_or
from voicecoach.history.tally import Tally

_LOGGER = logging.getLogger(__name__)

OUTCOMES = ("finished", "stopped", "interrupted")
#: While a session runs, a write waits this long for another program's lock (ms) before the
#: event is kept in memory and retried at the next heartbeat: the coach must not freeze. Only
#: the first write that meets the lock waits: while the history is failing, events are only
#: kept, and the heartbeat's retry does not wait at all.
SESSION_BUSY_MS = 300
#: Events kept in memory at most while the history cannot be written (a session has a few
#: hundred); beyond it the oldest unwritten ones are dropped (and counted).
MAX_PENDING = 20_000
#: The failures the history answers for itself (a lock, a read-only folder, a full disk, an I/O
#: error). Any other exception in a write is a bug in writing it, kept and retried the same way
#: (:meth:`SessionWriter._failed`): a bug in the history must not end a walk.
EXPECTED = (VoicecoachError, OSError, sqlite3.Error)


def said(exc: BaseException) -> str:
    """``exc`` as the history's lines say it: an expected failure (EXPECTED) by its message, a
    bug by its type, message and where it was raised."""
    if isinstance(exc, EXPECTED):
        return str(exc)
    return f"{describe(exc)} (at {where_raised(exc)})"


class SessionWriter:
    """Writes one session's row, events and end (see :class:`SessionRecorder`, which adds
    its start, heartbeats and the end of a program): each event committed the moment it
    arrives; one the history does not take is kept in memory, in order, and written first by
    the next write that gets through."""

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
        #: The unexpected exceptions logged so far (SessionWriter._bug): each once.
        self._bugs: set[str] = set()
        self._wall_clock = wall_clock
        self._opened_wall = wall_clock()
        #: Whether the start was read from the wall clock (a start given by the caller stands).
        self.clock_start = False
        #: The session's row while it is not written yet (its INSERT's values).
        self._row: tuple[Any, ...] | None = None
        #: Its INSERT's values, kept (:meth:`summary`).
        self._columns: tuple[Any, ...] = (started_at.isoformat(timespec="seconds"), "", None,
                                          "run", 0, db.host, "", "", None, None, None, "", None)
        self._closing = False
        #: How the session ended, once :meth:`end` said it was over (None: it is not).
        self._ended: str | None = None
        self._wait_ms: int | None = None
        self._close_ms = BUSY_TIMEOUT_MS
        #: Whether this is the end being written into a side file (SessionRecorder._keep_aside).
        self._aside = False
        self._set_wait()

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
        when that fails, keep it to write later. Never raises: a bug in the bookkeeping
        (``to_dict``, the tally) is one ERROR line (:meth:`_bug`) and the event is recorded
        all the same, with what can be read of it."""
        if self.closed or self._ended is not None:
            _LOGGER.debug("history: event after close ignored: %s", event.type.value)
            return
        try:
            data = event.to_dict()
        except Exception as exc:  # noqa: BLE001 - a bug in an event must not lose it
            self._bug(exc, "the event is recorded with its fields as they are")
            try:
                data = _as_it_is(event)
            except Exception as again:  # noqa: BLE001 - nothing of it can be read: said
                self._bug(again, "the event cannot be recorded")
                return
        try:
            self.tally.feed(data)
        except Exception as exc:  # noqa: BLE001 - the figures are the history's, not the walk's
            self._bug(exc, "the event is recorded all the same; the session's figures may "
                      "miss it")
        self.seq += 1
        self._pending.append((self.seq, event, data))
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
        if self.problem is None:  # while failing, kept for the heartbeat (or close) to retry
            self._try_flush()
        self._tell()

    def _try_flush(self) -> bool:
        """:meth:`_flush`, with a bug outside its writes (waiting for locks) kept and retried
        like one inside them (:meth:`_failed`): never raises."""
        try:
            return self._flush()
        except Exception as exc:  # noqa: BLE001 - kept and retried, never the walk's end
            self._failed(exc)
            return False

    def _flush(self) -> bool:
        """Write the row (if not yet) and the events kept so far, in order; False (and kept)
        when the disk says no."""
        self._set_wait()
        written = 0
        if self._row is not None:
            try:
                self._write_row()
            except Exception as exc:  # noqa: BLE001 - kept and retried, never the walk's end
                self._failed(exc)
                return False
            written += 1
        while self._pending:
            seq, event, data = self._pending[0]
            try:
                self._write(seq, event, data)
            except Exception as exc:  # noqa: BLE001 - kept and retried, never the walk's end
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
        """A write failed: what it held stays in memory, for the next heartbeat (or close) to
        retry. The first failure while the history takes writes is logged; an unexpected
        exception (a bug: not one of EXPECTED) is one ERROR line the first time it is met,
        whatever came before, its traceback at DEBUG. KeyboardInterrupt and SystemExit are
        never caught."""
        if not isinstance(exc, EXPECTED):
            self._bug(exc, "kept in memory and tried again")
        elif self.problem is None and not self._aside:
            # a lock another program holds lets go by itself and loses nothing: a warning,
            # not an error (a full disk or an I/O error needs a person: log_level)
            level = min(self.log_level, logging.WARNING) if is_lock(exc) else self.log_level
            _LOGGER.log(level, "history: cannot record %s now (kept in memory, "
                        "retried): %s", self._name, exc)
        self.problem = exc

    def _bug(self, exc: Exception, then: str, doing: str = "recording") -> None:
        """An unexpected exception in recording the session (writing it, or its bookkeeping:
        ``to_dict``, the tally; ``doing``: what, for the log, when it was something else):
        one ERROR line the first time it is met (``then``: what becomes of what it held),
        the traceback at DEBUG; never a fault of the workout."""
        line = said(exc)
        if line in self._bugs or self._aside:
            return
        self._bugs.add(line)
        _LOGGER.error("history: a fault while %s %s: %s; %s; not a fault of the workout",
                      doing, self._name, line, then)
        _LOGGER.debug("the history fault's traceback:", exc_info=exc)

    def _tell(self) -> None:
        """Tell the user once per session (outside any write: telling emits an event). Never
        raises: telling that fails (the coach's ``say``, the speaker, a bug in it) is one
        ERROR line, its traceback at DEBUG, and not tried again; the recording goes on, and
        the walk too (this runs inside the coach's listeners and tick hooks)."""
        if self.problem is None or self.told or self._telling or self.on_problem is None:
            return
        self.told = self._telling = True
        try:
            self.on_problem(self.problem)
        except Exception as exc:  # noqa: BLE001 - telling of the history must not end the walk
            _LOGGER.error("history: a fault while telling the user that %s cannot be recorded "
                          "now: %s (at %s); not told again, the session is still recorded; not "
                          "a fault of the workout", self._name, describe(exc), where_raised(exc))
            _LOGGER.debug("the history fault's traceback:", exc_info=exc)
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

    def _progress(self) -> tuple[float, float, float]:
        """(last_t, backward_s, total_s) as stored: believable numbers only."""
        last = finite_or(self.tally.last_t, 0.0) or 0.0
        return last, min(finite_or(self.tally.backward_s, 0.0) or 0.0, last), last

    def _write_end(self, outcome: str) -> bool:
        """One try at the end's writes: the events kept, then how the session ended; False
        (all kept) when the history does not take them."""
        self._set_wait()
        if not self._try_flush():
            return False
        if self.outcome:
            return True
        try:
            with self.db.transaction() as conn:
                stored = self._finish(conn, outcome, self.tally.last_t, None)
        except Exception as exc:  # noqa: BLE001 - kept and retried, never the walk's end
            self._failed(exc)
            return False
        self.outcome = stored
        return True


def _as_it_is(event: Event) -> dict[str, Any]:
    """An event as ``to_dict`` gives it, its fields as they are (not copied): for one whose
    ``to_dict`` raised (the history stores what JSON cannot hold as text)."""
    data: dict[str, Any] = {"type": event.type.value}
    data.update((f.name, getattr(event, f.name)) for f in dataclasses.fields(event))
    return data
