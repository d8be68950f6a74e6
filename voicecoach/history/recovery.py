"""Sessions whose process died while they ran: marked interrupted, their totals recomputed;
and, where the history cannot be written just now, shown so without writing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from voicecoach.history.liveness import pid_alive
from voicecoach.history.rows import (
    MAX_INCLINE_PCT,
    SessionSummary,
    finite_or,
    logged_end,
    parse_moment,
    safe_tally,
    speed_or_none,
)

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)

#: The running sessions of this host (rows from schema v1 have no host: taken to be from it).
_RUNNING_SQL = ("SELECT id, pid, proc_token, started_at, last_t FROM sessions "
                "WHERE status = 'running' AND host IN (?, '')")


@dataclass(frozen=True)
class Recovered:
    """How a session cut off ends, from what it logged: the values its row is given."""

    status: str
    ended_at: datetime | None
    backward_s: float
    total_s: float
    min_speed_mph: float | None
    max_speed_mph: float | None
    backward_speed_mph: float | None
    belt_speed_mph: float | None
    belt_max_speed_mph: float | None
    belt_incline_pct: float | None
    belt_distance_m: float | None
    #: Whether it had logged its own end (a row set back to 'running' by hand, or a crash
    #: between the two writes): its own figures stand.
    had_ended: bool


def owner_gone(pid: object, token: object) -> bool:
    """Whether the process that wrote a 'running' row (on this host) has died: its pid is
    gone, or now another process's (history/liveness.py)."""
    return not pid_alive(int(finite_or(pid, 0, 0, 2**31) or 0), str(token or ""))


def recovered(started: object, last_t: object, events: list[dict[str, Any]]) -> Recovered:
    """The end of a session cut off, worked out from its start, its last heartbeat and its
    events. Whatever a crash or an older version left in the row, this must not fail: a value
    that is not a believable number of seconds counts as unknown."""
    tally = safe_tally(events)
    stored = finite_or(last_t, 0.0) or 0.0
    tally.advance(stored)
    total = max(finite_or(tally.last_t, 0.0) or 0.0, stored)
    backward = min(finite_or(tally.backward_s, 0.0) or 0.0, total)
    status = "interrupted"
    ended_event = logged_end(events)
    if ended_event is not None:
        status = ended_event[0]
        total = ended_event[2] or total
        backward = min(ended_event[1], total)
    began = parse_moment(started)
    try:
        ended = (began + timedelta(seconds=total)) if began else None
    except OverflowError:  # a start near the year 9999, or an absurd length
        ended = None
    return Recovered(
        status, ended, backward, total, speed_or_none(tally.min_speed_mph),
        speed_or_none(tally.max_speed_mph), speed_or_none(tally.mean_backward_speed_mph),
        speed_or_none(tally.belt_speed_mph), speed_or_none(tally.belt_max_mph),
        finite_or(tally.belt_incline_pct, None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT),
        finite_or(tally.belt_distance_m, None, 0.0, 1e7), ended_event is not None)


def recover_interrupted(db: HistoryDB) -> list[int]:
    """Mark sessions left 'running' by a process on this host that has died as
    interrupted, with their totals recomputed from the events they logged."""
    if db.read_only:
        return []
    with db.lock:
        dead = [row for row in db.query(_RUNNING_SQL, (db.host,))
                if owner_gone(row[1], row[2])]
        for sid, _pid, _token, started, last_t in dead:
            end = recovered(started, last_t, db.events(sid))
            with db.transaction() as conn:
                conn.execute(
                    "UPDATE sessions SET status = ?, ended_at = ?, backward_s = ?,"
                    " total_s = ?, min_speed_mph = ?, max_speed_mph = ?,"
                    " backward_speed_mph = ?, belt_speed_mph = ?, belt_max_speed_mph = ?,"
                    " belt_incline_pct = ?, belt_distance_m = ?"
                    " WHERE id = ? AND status = 'running'",
                    (end.status,
                     end.ended_at.isoformat(timespec="seconds") if end.ended_at else None,
                     end.backward_s, end.total_s, end.min_speed_mph, end.max_speed_mph,
                     end.backward_speed_mph, end.belt_speed_mph, end.belt_max_speed_mph,
                     end.belt_incline_pct, end.belt_distance_m, sid))
            if not end.had_ended:
                _LOGGER.warning("history: session %d was cut off after %.0f s; marked "
                                "interrupted", sid, end.total_s)
            else:
                _LOGGER.warning("history: session %d had ended (%s) but was still marked "
                                "running; its own figures are kept", sid, end.status)
        return [row[0] for row in dead]


def as_recovered(db: HistoryDB, sessions: list[SessionSummary]) -> list[SessionSummary]:
    """``sessions`` with each one left 'running' by a process on this host that has died
    shown as :func:`recover_interrupted` will mark it, read without writing: where the
    history cannot be marked just now (another program holds it, it is read-only, the disk
    is full) a session cut off is not shown as still running. A session whose process lives
    (or of another host, which cannot be told) stays running."""
    running = {s.id for s in sessions if s.status == "running"}
    if not running:
        return sessions
    ends: dict[int, Recovered] = {}
    for sid, pid, token, started, last_t in db.query(_RUNNING_SQL, (db.host,)):
        if sid in running and owner_gone(pid, token):
            ends[sid] = recovered(started, last_t, db.events(sid))
    return [cut_off(s, ends[s.id]) if s.id in ends else s for s in sessions]


def cut_off(summary: SessionSummary, end: Recovered) -> SessionSummary:
    """``summary`` with the end its row is given when it is marked (:func:`recovered`)."""
    # read back as the row stores it (to the second)
    ended = parse_moment(end.ended_at.isoformat(timespec="seconds")) if end.ended_at else None
    return replace(summary, status=end.status, ended_at=ended,
                   backward_s=end.backward_s, total_s=end.total_s,
                   min_speed_mph=end.min_speed_mph, max_speed_mph=end.max_speed_mph,
                   backward_speed_mph=end.backward_speed_mph,
                   belt_speed_mph=end.belt_speed_mph,
                   belt_max_speed_mph=end.belt_max_speed_mph,
                   belt_incline_pct=end.belt_incline_pct, belt_distance_m=end.belt_distance_m)
