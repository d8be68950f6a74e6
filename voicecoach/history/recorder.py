"""Writes one session to the history as it happens: a listener for the coach's events (the
writes themselves: history/session_writer.py), its heartbeats, its end, and the end of a
program that gives up an end the history does not take to a side file."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from voicecoach.errors import VoicecoachError
from voicecoach.events import SessionEnded
from voicecoach.history import dating, parts
from voicecoach.history.dating import wall_now
from voicecoach.history.db import BUSY_TIMEOUT_MS, DB_NAME, HistoryDB
from voicecoach.history.faults import HistoryLocked
from voicecoach.history.health import write_lock_holder
from voicecoach.history.liveness import process_token
from voicecoach.history.rows import MAX_SPEED_MPH, SOURCES, SessionSummary, finite_or
from voicecoach.history.session_writer import OUTCOMES, SessionWriter, said
from voicecoach.workout.plan import Plan

_LOGGER = logging.getLogger(__name__)

#: Heartbeats are written at most this often (seconds of workout time and of wall time).
HEARTBEAT_S = 1.0


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


class SessionRecorder(SessionWriter):
    """Records a session: the row exists from :meth:`open`, each event is committed the moment
    it arrives (so a crash or power cut loses at most the event being written), and
    :class:`SessionEnded` or :meth:`close` sets how it ended. A history another program holds
    locked does not hold the start up: the row then waits in memory with the events
    (``session_id`` is 0 meanwhile) and is written first by the first write that gets the
    lock, at the latest by :meth:`close`.

    ``on_event`` and :meth:`heartbeat` never raise: a full disk, a locked file, a bug in
    writing (SessionWriter._failed) or in the bookkeeping (an event's ``to_dict``, the tally:
    SessionWriter._bug, the event recorded all the same) must not stop a workout. An event
    that cannot be written is kept in memory, in order, and written by the next heartbeat
    once the disk allows (later events are only kept meanwhile); the first failure is logged
    (a bug: each new one, at ERROR) and ``on_problem`` (if set) is called once, to tell the
    user (if telling raises, one ERROR line: SessionWriter._tell). :attr:`incomplete` says
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
        super().__init__(db, session_id, started_at, wall_clock)
        self._beat_t = self._beat_wall = float("-inf")
        self._sleep: Callable[[float], None] = time.sleep
        #: The deadline :meth:`close` keeps (None: its own, CLOSE_WORST_S from the close): the
        #: device loop gives every record it closes at its end the same one.
        self.close_by: Deadline | None = None
        #: The side file an end given up at :meth:`close` is kept in (history/unwritten.py;
        #: None: none, or it could not be written either, then ``_aside_problem`` says why).
        self.kept_in: Path | None = None
        self._aside_problem: Exception | None = None

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
            boot_id=boot_id or "", boot_s=boot_s if boot_id else None, fault=tally.fault,
            last_phase=tally.fault_phase if tally.fault else tally.phase_kind)

    def _summary_or_none(self, doing: str, then: str) -> SessionSummary | None:
        """:meth:`summary`, or None when a bug in it raises: one ERROR line (``doing``, ``then``:
        SessionWriter._bug), for the close and the next plan, which go on without it."""
        try:
            return self.summary()
        except Exception as exc:  # noqa: BLE001 - figures for a line or a plan, never the end
            self._bug(exc, then, doing)
            return None

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
        try:
            self.tally.advance(t)
        except Exception as exc:  # noqa: BLE001 - the figures are the history's, not the walk's
            self._bug(exc, "its events are recorded all the same; the session's figures may "
                      "fall short")
        if not self._try_flush():
            self._tell()
            return
        try:
            with self.db.transaction() as conn:
                conn.execute("UPDATE sessions SET last_t = ?, backward_s = ?, total_s = ?"
                             " WHERE id = ?", (*self._progress(), self._sid()))
        except Exception as exc:  # noqa: BLE001 - kept and retried, never the walk's end
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

    def close(self, outcome: str = "interrupted") -> None:
        """Stop recording. If no SessionEnded was recorded, the session ends as ``outcome``
        (the SIGTERM path passes "stopped"; after :meth:`end`, as that said). What is still
        unwritten is tried up to CLOSE_TRIES times, waiting for locks as long as any opening
        does, but never past :attr:`close_by` (by default CLOSE_WORST_S from now): once it
        has passed, one more try that does not wait, then it is given up (one log line says
        what is lost) and written instead into a side file that nobody else holds, merged into
        the history at its next opening (:meth:`_keep_aside`), whatever made the writes fail,
        a bug in them included; :attr:`incomplete` says if the history lacks it. Safe to call
        more than once."""
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
            if self._try_end(outcome) or deadline.left() <= 0:
                break
        if self._row is not None or self._pending or not self.outcome:
            self.kept_in = self._keep_aside(outcome)
        self._close_now()

    def _try_end(self, outcome: str) -> bool:
        """:meth:`_write_end` at the end of a program: a bug outside its writes is kept like
        one inside them (:meth:`_failed`), so what it held still goes into a side file."""
        try:
            return self._write_end(outcome)
        except Exception as exc:  # noqa: BLE001 - kept aside, never lost for a bug
            self._failed(exc)
            return False

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
            part, conn = parts.create(db.path, None if row is not None else sid)
        except Exception as exc:  # noqa: BLE001 - said in the close's one line
            self._aside_problem = exc
            return None
        self.db, self._row, self._wait_ms = HistoryDB(part, conn), self._columns, None
        self._aside = True
        try:
            kept = self._try_end(outcome)
            self._aside_problem = None if kept else self.problem
        finally:
            self.db.close()
            self.db, self.session_id, self._row, self._pending = db, sid, row, pending
            self.outcome, self.problem, self._wait_ms, self._aside = (outcome_was, problem,
                                                                      wait_ms, False)
        if kept:  # complete: only now under a side file's name (never seen half-written)
            try:
                return parts.publish(part, db.path)
            except Exception as exc:  # noqa: BLE001 - said in the close's one line
                self._aside_problem = exc
        with contextlib.suppress(OSError):
            part.unlink()
        return None

    def _close_now(self) -> None:
        self.closed = True
        self.db.writing.discard(self.session_id)
        _unwritten_ends.pop(self, None)
        if self.incomplete:
            # given up: what is lost, in the log, with the figures a person would need (when
            # a bug keeps them from being read, the line goes without them)
            summary = self._summary_or_none(
                "closing", "the line saying what is given up goes without its figures")
            ended = ("its figures could not be read" if summary is None else
                     f"it ended {summary.status} after {summary.total_s:.0f} s "
                     f"({summary.backward_s:.0f} s backward)")
            started = self.started_at if summary is None else summary.started_at
            lost = len(self._pending) + self.dropped
            problem = self.problem if self.problem is None else said(self.problem)
            if self._row is not None:
                what = (f"the session started {started.isoformat(timespec='seconds')}"
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
                                "history at its next opening; %s", what, problem, self.kept_in,
                                ended)
                return
            if self._aside_problem is not None:
                what += f", nor kept beside it ({said(self._aside_problem)})"
            _LOGGER.log(self.log_level, "history: %s; %s: %s", what, ended, problem)

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
    yet, placed after every written one). One whose figures a bug keeps from being read is
    left as the history holds it (one ERROR line for the recorder, however often planned): a
    plan is still made."""
    sessions = {s.id: s for s in db.sessions()}
    here = Path(db.path).resolve()
    top = max(sessions, default=0)
    for recorder in list(_unwritten_ends):
        if recorder.closed or Path(recorder.db.path).resolve() != here:
            continue
        summary = recorder._summary_or_none(
            "planning from", "the next session is planned from what the history holds of it")
        if summary is None:
            continue
        if summary.id not in sessions or summary.id == 0:
            top += 1
            summary = replace(summary, id=top)
        sessions[summary.id] = summary
    return list(sessions.values())
